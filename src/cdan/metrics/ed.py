"""ED, the Expression Distance: L2 between the AU vectors of a real image and its reconstruction.

As the official ACD_ED.py: raw AU intensities on OpenFace's 0-5 scale (not divided by 5), L2 per pair,
averaged over the pairs where both vectors exist. The AU vectors come from one AU backend run on both images
(`cdan.faces.au.get_backend`), or from OpenFace CSVs computed beforehand for both folders.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

from ..errors import CdanError

log = logging.getLogger(__name__)


def expression_distance(real_au: np.ndarray, fake_au: np.ndarray) -> float:
    """L2 distance between two AU vectors [K] (0-5 scale)."""
    a, b = np.asarray(real_au, np.float64), np.asarray(fake_au, np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"AU vectors must have the same shape [K], got {a.shape} and {b.shape}")
    return float(np.linalg.norm(a - b))


class PairAUSource(Protocol):
    """Gives the AU vectors (0-5, [K]) of a pair; None for a side without a face / without a row."""

    description: str

    def pair_aus(
        self, stem: str, real_u8: np.ndarray, fake_u8: np.ndarray
    ) -> tuple[np.ndarray | None, np.ndarray | None]: ...


def _clean(vec) -> np.ndarray | None:
    if vec is None:
        return None
    v = np.asarray(vec, dtype=np.float64).reshape(-1)
    return None if not np.all(np.isfinite(v)) else v


class BackendAUSource:
    """Runs one AU backend (see `cdan.faces.au.base.AUBackend`) on both images of each pair."""

    def __init__(self, backend, aus: Sequence[str]) -> None:
        self.backend = backend
        self.aus = tuple(aus)
        self.description = f"AU backend {getattr(backend, 'name', type(backend).__name__)}"

    def pair_aus(self, stem, real_u8, fake_u8):
        return self._estimate(stem, "real", real_u8), self._estimate(stem, "fake", fake_u8)

    def _estimate(self, stem: str, side: str, image_u8: np.ndarray) -> np.ndarray | None:
        try:
            return _clean(self.backend.estimate(image_u8, self.aus))
        except Exception as e:  # noqa: BLE001 - one failing image is a dropped pair, not a lost run
            log.warning("AU backend failed on the %s image of %s: %s", side, stem, e)
            return None


def load_backend(name: str):
    """`cdan.faces.au.get_backend(name)`, with any failure turned into a one-line CdanError."""
    try:
        from ..faces.au import get_backend
    except ImportError as e:
        raise CdanError(f"AU backends are not available ({e})") from None
    return get_backend(name)


def _strip_rec_suffix(stem: str) -> str:
    return stem[: -len("_xrec")] if stem.endswith("_xrec") else stem


class OpenFaceAUSource:
    """AU vectors read from OpenFace CSV folders, one CSV per image, matched by stem.

    A fake CSV named `<stem>_xrec.csv` (OpenFace run on `cdan rec` output) matches real `<stem>`.
    """

    def __init__(self, real_dir: str | Path, fake_dir: str | Path, aus: Sequence[str]) -> None:
        try:
            from ..data.formats import read_openface_dir
        except ImportError as e:
            raise CdanError(f"the OpenFace CSV reader is not available ({e})") from None
        self.aus = tuple(aus)
        for d in (real_dir, fake_dir):
            if not Path(d).is_dir():
                raise CdanError(f"OpenFace CSV folder not found: {d}")
        self.real = {k: _clean(v) for k, v in read_openface_dir(real_dir, self.aus).items()}
        self.fake = {
            _strip_rec_suffix(k): _clean(v) for k, v in read_openface_dir(fake_dir, self.aus).items()
        }
        if not self.real or not self.fake:
            empty = real_dir if not self.real else fake_dir
            raise CdanError(f"no OpenFace CSV with the AUs {', '.join(self.aus)} in {empty}")
        self.description = f"OpenFace CSVs ({len(self.real)} real, {len(self.fake)} fake)"

    def pair_aus(self, stem, real_u8, fake_u8):
        return self.real.get(stem), self.fake.get(stem)
