"""On-disk formats: the official AU pickle (`{stem: float64[K]}`) and OpenFace 2.x CSV output.

Legacy pickles are read with a restricted unpickler: it resolves only the few numpy globals that an
array needs and refuses every other global before anything runs, so a crafted pickle cannot execute code.
"""

from __future__ import annotations

import csv
import io
import logging
import os
import pickle
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import CdanError
from ..utils import write_bytes_atomic

log = logging.getLogger(__name__)

__all__ = [
    "OpenFaceTable",
    "load_legacy_pickle",
    "read_openface_csv",
    "read_openface_dir",
    "write_legacy_pickle",
]

# Largest legacy pickle we agree to read (the official one is 0.3 MB; 2 GB would be ~10 M faces).
_MAX_PICKLE_BYTES = 2 * 1024**3


# --------------------------------------------------------------------------------------------------------
# Legacy pickle
# --------------------------------------------------------------------------------------------------------


def _safe_codecs_encode(text: str, encoding: str = "utf-8", errors: str = "strict") -> bytes:
    """Python 3 protocol-2 pickles store `bytes` as `_codecs.encode(str, 'latin1')`. Text codecs only."""
    if not isinstance(text, str) or encoding.lower().replace("_", "-") not in {"latin1", "latin-1", "utf-8"}:
        raise pickle.UnpicklingError(f"refused _codecs.encode with encoding {encoding!r}")
    return text.encode(encoding, errors)


def _allowed_globals() -> dict[tuple[str, str], Any]:
    """(module, name) -> object for every global a numpy-array pickle legitimately needs."""
    try:  # numpy >= 2
        from numpy._core import multiarray as ma
        from numpy._core import numeric as nm
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray as ma
        from numpy.core import numeric as nm

    out: dict[tuple[str, str], Any] = {
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): _safe_codecs_encode,
    }
    for mod in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out[(mod, "_reconstruct")] = ma._reconstruct
        out[(mod, "scalar")] = ma.scalar
    if hasattr(nm, "_frombuffer"):  # protocol-5 pickles of arrays (the official affect_HaSa_au.pkl)
        for mod in ("numpy.core.numeric", "numpy._core.numeric"):
            out[(mod, "_frombuffer")] = nm._frombuffer
    return out


class _RestrictedUnpickler(pickle.Unpickler):
    """Resolves only the allow-listed numpy globals; everything else is refused before it can run."""

    def __init__(self, file, allowed: dict[tuple[str, str], Any]):
        super().__init__(file, encoding="latin1")
        self._allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        obj = self._allowed.get((module, name))
        if obj is None:
            raise _RefusedGlobal(f"{module}.{name}")
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise _RefusedGlobal(f"persistent id {pid!r}")


class _RefusedGlobal(pickle.UnpicklingError):
    pass


def _as_vector(key: Any, value: Any) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype.kind not in "biuf" or arr.ndim != 1:
        raise CdanError(
            f"entry {key!r} is not a 1-D numeric vector (got dtype {arr.dtype}, shape {tuple(arr.shape)})"
        )
    return arr.astype(np.float64)


def load_legacy_pickle(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read an official/GANimation AU pickle `{image stem: vector}` safely.

    Returns {stem: float64 [K]} with the same K for every entry (K=6: SIX_AUS order, K=17: ALL_AUS order).
    Python-2 pickles are decoded with latin1. Only dicts, lists/tuples, strings, numbers and numpy
    arrays/scalars are accepted; any other global raises CdanError naming it, and nothing is executed.
    """
    path = Path(path)
    if not path.is_file():
        raise CdanError(f"legacy pickle not found: {path}")
    size = path.stat().st_size
    if size == 0:
        raise CdanError(f"legacy pickle {path} is empty (0 bytes)")
    if size > _MAX_PICKLE_BYTES:
        raise CdanError(f"legacy pickle {path} is too large ({size} bytes)")
    data = path.read_bytes()
    try:
        obj = _RestrictedUnpickler(io.BytesIO(data), _allowed_globals()).load()
    except _RefusedGlobal as e:
        raise CdanError(
            f"refused to load {path}: it references {e}, which is not allowed in an AU pickle "
            "(only dicts, strings, numbers and numpy arrays are)"
        ) from None
    except (
        pickle.UnpicklingError,
        EOFError,
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        AttributeError,
    ) as e:
        raise CdanError(f"cannot read legacy pickle {path}: {type(e).__name__}: {e}") from None
    except MemoryError:
        raise CdanError(f"cannot read legacy pickle {path}: it asks for too much memory") from None
    if not isinstance(obj, dict):
        raise CdanError(
            f"legacy pickle {path} holds a {type(obj).__name__}, expected a dict {{stem: AU vector}}"
        )
    out: dict[str, np.ndarray] = {}
    dims: set[int] = set()
    for key, value in obj.items():
        if isinstance(key, bytes):
            key = key.decode("latin1")
        if not isinstance(key, str):
            raise CdanError(f"legacy pickle {path}: key {key!r} is not a string")
        vec = _as_vector(key, value)
        dims.add(vec.shape[0])
        out[key] = vec
    if not out:
        raise CdanError(f"legacy pickle {path} is an empty dict")
    if len(dims) != 1:
        raise CdanError(f"legacy pickle {path}: AU vectors have different lengths {sorted(dims)}")
    return out


def write_legacy_pickle(path: str | os.PathLike, mapping: dict[str, np.ndarray]) -> None:
    """Write `{stem: float64[K]}` as a protocol-2 pickle (readable by Python 2 and the official code), atomically."""
    clean: dict[str, np.ndarray] = {}
    for key, value in mapping.items():
        arr = np.asarray(value, dtype=np.float64)
        if arr.ndim != 1:
            raise ValueError(f"AU vector for {key!r} must be 1-D, got shape {arr.shape}")
        clean[str(key)] = np.ascontiguousarray(arr)
    write_bytes_atomic(path, pickle.dumps(clean, protocol=2))


# --------------------------------------------------------------------------------------------------------
# OpenFace CSV
# --------------------------------------------------------------------------------------------------------


@dataclass
class OpenFaceTable:
    """One OpenFace 2.x CSV: `columns` (stripped header names) and `data` float64 [N, C] (NaN if not a number).

    Works for image mode (`face, confidence, ...`), sequence mode (`frame, face_id, timestamp, confidence,
    success, ...`) and the older sequence layout (`frame, timestamp, confidence, success`, ", " separators).
    """

    columns: tuple[str, ...]
    data: np.ndarray
    path: Path | None = None

    def __post_init__(self) -> None:
        self._index = {c: i for i, c in enumerate(self.columns)}

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def has(self, column: str) -> bool:
        return column in self._index

    def column(self, name: str) -> np.ndarray:
        """float64 [N] values of one column (KeyError naming the file if absent)."""
        if name not in self._index:
            raise KeyError(f"column {name!r} not in {self.path or 'OpenFace table'}")
        return self.data[:, self._index[name]]

    @property
    def frames(self) -> np.ndarray | None:
        """int64 [N] frame numbers (sequence mode), else None."""
        return self.column("frame").astype(np.int64) if self.has("frame") else None

    @property
    def face_ids(self) -> np.ndarray | None:
        """int64 [N] face index: `face_id` (sequence mode) or `face` (image mode), else None (legacy)."""
        for name in ("face_id", "face"):
            if self.has(name):
                return self.column(name).astype(np.int64)
        return None

    @property
    def confidence(self) -> np.ndarray:
        """float64 [N] tracking confidence (NaN where the column is absent)."""
        return self.column("confidence") if self.has("confidence") else np.full(len(self), np.nan)

    @property
    def success(self) -> np.ndarray:
        """bool [N]: the `success` column (True everywhere when the column is absent, e.g. image mode)."""
        if not self.has("success"):
            return np.ones(len(self), dtype=bool)
        return self.column("success") > 0.5

    @property
    def available_aus(self) -> tuple[str, ...]:
        """AU names that have an intensity (`_r`) column, in file order (AU28 has only `_c`)."""
        return tuple(c[:-2] for c in self.columns if c.startswith("AU") and c.endswith("_r"))

    def aus(self, names: Sequence[str]) -> np.ndarray:
        """float32 [N, K] intensities (0-5) of `names`; a column of NaN for an AU without an `_r` column."""
        out = np.full((len(self), len(names)), np.nan, dtype=np.float32)
        for k, name in enumerate(names):
            col = f"{name}_r"
            if col in self._index:
                out[:, k] = self.data[:, self._index[col]]
        return out


def _to_float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return float("nan")


def read_openface_csv(path: str | os.PathLike) -> OpenFaceTable:
    """Parse any OpenFace 2.x CSV (header names and values are stripped of spaces). Bad file -> CdanError."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig", errors="strict")
    except (OSError, UnicodeDecodeError) as e:
        raise CdanError(f"cannot read OpenFace CSV {path}: {e}") from None
    rows = [r for r in csv.reader(io.StringIO(text)) if r and any(x.strip() for x in r)]
    if not rows:
        raise CdanError(f"OpenFace CSV {path} is empty")
    columns = tuple(c.strip() for c in rows[0])
    if not any(c.startswith("AU") for c in columns) or "confidence" not in columns:
        raise CdanError(
            f"{path} does not look like OpenFace output (no 'confidence' or AU columns in its header)"
        )
    width = len(columns)
    values = np.full((len(rows) - 1, width), np.nan, dtype=np.float64)
    for i, row in enumerate(rows[1:]):
        if len(row) != width:
            raise CdanError(
                f"OpenFace CSV {path}: line {i + 2} has {len(row)} fields, the header has {width}"
            )
        values[i] = [_to_float(x.strip()) for x in row]
    return OpenFaceTable(columns=columns, data=values, path=path)


def read_openface_dir(
    directory: str | os.PathLike,
    aus: Sequence[str],
    skipped: list[tuple[str, str]] | None = None,
) -> dict[str, np.ndarray]:
    """Every `*.csv` in `directory` -> {csv stem: float64 [K] AU vector in `aus` order}.

    Choice: each CSV contributes the first row whose `success` flag is set (image mode has no flag, so the
    first face OpenFace listed; sequence mode, the first tracked frame). This matches OpenFace's
    FaceLandmarkImg output of one CSV per image, as the official pipeline uses, and also serves ED (one CSV
    per real/generated image). AUs without an `_r` column come back as NaN. CSVs that cannot be read or have
    no successful row are left out, logged, and appended to `skipped` as (file name, reason) if given.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise CdanError(f"OpenFace CSV folder not found: {directory}")
    files = sorted(p for p in directory.glob("*.csv") if p.is_file())
    if not files:
        raise CdanError(f"no *.csv files in {directory}")
    out: dict[str, np.ndarray] = {}
    for f in files:
        reason = None
        try:
            table = read_openface_csv(f)
        except CdanError as e:
            reason = str(e)
        else:
            ok = np.flatnonzero(table.success)
            if ok.size == 0:
                reason = "no successfully tracked face in the CSV"
            else:
                out[f.stem] = table.aus(aus)[ok[0]].astype(np.float64)
        if reason is not None:
            log.warning("skipping %s: %s", f.name, reason)
            if skipped is not None:
                skipped.append((f.name, reason))
    return out
