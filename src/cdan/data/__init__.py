"""Datasets: the on-disk layout, legacy/OpenFace formats, and loading for training.

`load_dataset` and `FaceAUDataset` import torch, so they are loaded on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .formats import (
    OpenFaceTable,
    load_legacy_pickle,
    read_openface_csv,
    read_openface_dir,
    write_legacy_pickle,
)
from .layout import DatasetWriter, assign_splits, label_from_path

if TYPE_CHECKING:
    from .dataset import DatasetIndex, FaceAUDataset, Record, load_dataset

__all__ = [
    "DatasetIndex",
    "DatasetWriter",
    "FaceAUDataset",
    "OpenFaceTable",
    "Record",
    "assign_splits",
    "label_from_path",
    "load_dataset",
    "load_legacy_pickle",
    "read_openface_csv",
    "read_openface_dir",
    "write_legacy_pickle",
]

_LAZY = {"DatasetIndex", "FaceAUDataset", "Record", "load_dataset"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from . import dataset

        return getattr(dataset, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
