"""Reading a face/AU dataset: our layout (aus.csv) or the official one (a folder of crops + a legacy pickle)."""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..aus import ALL_AUS, AU_SCALE, SIX_AUS
from ..errors import CdanError
from .formats import load_legacy_pickle
from .layout import AUS_CSV, IMAGES, assign_splits

log = logging.getLogger(__name__)

__all__ = ["DatasetIndex", "FaceAUDataset", "Record", "load_dataset", "read_image_rgb", "IMAGE_EXTS"]

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
_SPLIT_DIRS = ("train", "test")


@dataclass
class Record:
    """One face: `au` is float [K] on the 0-5 scale in the index's AU order (None when unknown)."""

    name: str
    path: Path
    au: np.ndarray | None
    split: str
    label: str | None = None


@dataclass
class DatasetIndex:
    """A loaded dataset. `skipped` lists (image or name, reason) for entries left out while loading."""

    root: Path
    aus: tuple[str, ...]
    records: list[Record]
    skipped: list[tuple[str, str]] = field(default_factory=list)

    @property
    def train(self) -> list[Record]:
        return [r for r in self.records if r.split == "train"]

    @property
    def test(self) -> list[Record]:
        return [r for r in self.records if r.split == "test"]

    @property
    def labels(self) -> list[str]:
        """Sorted distinct class labels (empty when the dataset has none)."""
        return sorted({r.label for r in self.records if r.label is not None})

    def __len__(self) -> int:
        return len(self.records)


def _select(
    have: Sequence[str], want: Sequence[str] | None, where: Path
) -> tuple[tuple[str, ...], list[int]]:
    if want is None:
        return tuple(have), list(range(len(have)))
    missing = [a for a in want if a not in have]
    if missing:
        raise CdanError(f"{where} has no {', '.join(missing)} (it has {', '.join(have)})")
    return tuple(want), [list(have).index(a) for a in want]


def _load_ours(root: Path, aus: Sequence[str] | None) -> DatasetIndex:
    csv_path = root / AUS_CSV
    try:
        with open(csv_path, newline="", encoding="utf-8") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as e:
        raise CdanError(f"cannot read {csv_path}: {e}") from None
    if not rows:
        raise CdanError(f"{csv_path} is empty")
    header = [h.strip() for h in rows[0]]
    if "name" not in header:
        raise CdanError(f"{csv_path} has no 'name' column")
    au_cols = [h for h in header if h.startswith("AU") and h[2:].isdigit()]
    if not au_cols:
        raise CdanError(f"{csv_path} has no AU columns")
    names, idx = _select(au_cols, aus, csv_path)
    col = {h: i for i, h in enumerate(header)}
    au_idx = [col[au_cols[i]] for i in idx]
    records: list[Record] = []
    skipped: list[tuple[str, str]] = []
    for line, row in enumerate(rows[1:], start=2):
        if not row or not any(x.strip() for x in row):
            continue
        if len(row) != len(header):
            skipped.append((f"line {line}", f"{len(row)} fields, header has {len(header)}"))
            continue
        name = row[col["name"]].strip()
        path = root / IMAGES / f"{name}.png"
        split = row[col["split"]].strip() if "split" in col else "train"
        label = row[col["label"]].strip() if "label" in col else ""
        try:
            au = np.array([float(row[i]) for i in au_idx], dtype=np.float64)
        except ValueError:
            au = None
        if au is None or not np.all(np.isfinite(au)):
            skipped.append((name, "no AU values"))
            continue
        if not path.is_file():
            skipped.append((name, "image missing"))
            continue
        if split not in _SPLIT_DIRS:
            skipped.append((name, f"unknown split {split!r}"))
            continue
        records.append(Record(name=name, path=path, au=au, split=split, label=label or None))
    return DatasetIndex(root=root, aus=names, records=records, skipped=skipped)


def _find_pickle(root: Path) -> Path:
    found = sorted(root.glob("*.pkl"))
    if not found:
        found = sorted(root.parent.glob("*.pkl"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise CdanError(
            f"{root} has no {AUS_CSV} and no *.pkl in it or next to it; pass the AU pickle with --pkl"
        )
    raise CdanError(
        f"several AU pickles beside {root} ({', '.join(p.name for p in found)}); choose one with --pkl"
    )


def _official_aus(k: int, aus: Sequence[str] | None, pkl: Path) -> tuple[str, ...]:
    if k == len(SIX_AUS):
        return SIX_AUS
    if k == len(ALL_AUS):
        return ALL_AUS
    if aus is not None and len(aus) == k:
        return tuple(aus)
    raise CdanError(
        f"{pkl} holds {k} AUs per face; expected 6 ({','.join(SIX_AUS)}) or 17 (OpenFace's), "
        "or pass the AU names in order"
    )


def _load_official(
    root: Path, pkl: Path | None, aus: Sequence[str] | None, test_fraction: float, seed: int
) -> DatasetIndex:
    pkl = Path(pkl) if pkl is not None else _find_pickle(root)
    table = load_legacy_pickle(pkl)
    k = len(next(iter(table.values())))
    have = _official_aus(k, aus, pkl)
    names, idx = _select(have, aus, pkl)
    files = sorted(
        p
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_EXTS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not files:
        raise CdanError(f"no images ({', '.join(IMAGE_EXTS)}) in {root}")
    ours = (root / AUS_CSV).is_file()
    skipped: list[tuple[str, str]] = []
    entries: list[tuple[str, Path, np.ndarray, str | None, str | None]] = []
    seen: set[str] = set()
    for p in files:
        rel = p.relative_to(root).parts
        name = p.stem
        fixed = rel[0] if len(rel) > 1 and rel[0] in _SPLIT_DIRS else None
        dirs = rel[1:-1] if fixed else rel[:-1]
        if ours and dirs[:1] == (IMAGES,):  # our layout read through its legacy pickle: no class folder
            dirs = dirs[1:]
        label = dirs[-1] if dirs else None
        if name in seen:
            skipped.append((str(p.relative_to(root)), "duplicate image stem"))
            continue
        au = table.get(name)
        if au is None:
            skipped.append((str(p.relative_to(root)), f"no AU entry in {pkl.name}"))
            continue
        seen.add(name)
        entries.append((name, p, au[idx], label, fixed))
    if skipped:
        log.warning("%d image(s) in %s skipped (e.g. %s: %s)", len(skipped), root, *skipped[0])
    free = [e for e in entries if e[4] is None]
    splits = dict(
        zip(
            (e[0] for e in free),
            assign_splits([e[0] for e in free], [e[3] for e in free], None, test_fraction, seed),
        )
    )
    records = [
        Record(name=n, path=p, au=a, split=fixed or splits[n], label=lab) for n, p, a, lab, fixed in entries
    ]
    return DatasetIndex(root=root, aus=names, records=records, skipped=skipped)


def load_dataset(
    path: str | os.PathLike,
    pkl: str | os.PathLike | None = None,
    aus: Sequence[str] | None = None,
    test_fraction: float = 0.2,
    seed: int = 0,
) -> DatasetIndex:
    """Load a dataset folder.

    Our layout (`aus.csv` present and no `pkl` given): the stored split is used (`test_fraction`/`seed`
    are ignored). Official layout: a folder of crops (flat, in class folders, or in `train/`/`test/`
    folders) plus a legacy pickle (`pkl`, else the only `*.pkl` in or next to the folder). Its AU order is
    SIX_AUS for K=6 and ALL_AUS for K=17; images with no AU row are skipped and listed in `skipped`; the
    split comes from `train/`/`test/` folders when present, else `assign_splits` stratified by class folder.
    aus: optional subset/order of AUs to keep. Records without AUs are never returned.
    """
    root = Path(path)
    if not root.exists():
        raise CdanError(f"dataset folder not found: {root}")
    if not root.is_dir():
        raise CdanError(f"dataset path is not a folder: {root}")
    if aus is not None:
        aus = tuple(aus)
    if pkl is None and (root / AUS_CSV).is_file():
        index = _load_ours(root, aus)
    else:
        index = _load_official(root, Path(pkl) if pkl is not None else None, aus, test_fraction, seed)
    if not index.records:
        raise CdanError(f"no usable faces in {root} ({len(index.skipped)} skipped)")
    log.info(
        "dataset %s: %d faces (%d train, %d test), %d skipped, AUs %s",
        root,
        len(index.records),
        len(index.train),
        len(index.test),
        len(index.skipped),
        ",".join(index.aus),
    )
    return index


# --------------------------------------------------------------------------------------------------------
# Torch dataset
# --------------------------------------------------------------------------------------------------------


def read_image_rgb(path: str | os.PathLike, size: int | None = None) -> np.ndarray:
    """Read any PIL-readable image as uint8 [H,W,3] RGB (optionally resized to size x size, bilinear+antialias).

    Handles grey, palette, CMYK, alpha (composited on white), 16-bit and float images, and EXIF rotation.
    """
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        im = ImageOps.exif_transpose(im)
        mode = im.mode
        if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
            arr = np.asarray(im, dtype=np.float64)
            if mode != "I" or arr.max(initial=0) > 255:
                arr = arr / 257.0
            im = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
        elif mode == "F":
            arr = np.asarray(im, dtype=np.float64)
            if arr.max(initial=0) <= 1.0:
                arr = arr * 255.0
            im = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
        if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
            im = im.convert("RGBA")
            bg = Image.new("RGBA", im.size, (255, 255, 255, 255))
            im = Image.alpha_composite(bg, im)
        if im.mode != "RGB":
            im = im.convert("RGB")
        if size is not None and im.size != (size, size):
            im = im.resize((size, size), Image.BILINEAR)
        return np.asarray(im, dtype=np.uint8).copy()


class FaceAUDataset(Dataset):
    """torch Dataset over records: item i -> {"image": float32 [3,size,size] in [0,1], "au": float32 [K]
    (au / au_scale), "index": i}. Images of another size are resized (bilinear, antialiased)."""

    def __init__(self, records: Sequence[Record], size: int = 112, au_scale: float = AU_SCALE):
        missing = [r.name for r in records if r.au is None]
        if missing:
            raise ValueError(
                f"{len(missing)} record(s) have no AU vector (e.g. {missing[0]}); filter them first"
            )
        self.records = list(records)
        self.size = int(size)
        self.au_scale = float(au_scale)
        if not math.isfinite(self.au_scale) or self.au_scale <= 0:
            raise ValueError("au_scale must be positive")

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        rec = self.records[i]
        from PIL import Image

        try:
            img_u8 = read_image_rgb(rec.path, self.size)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
            raise CdanError(f"cannot read image {rec.path}: {e}") from None
        image = torch.from_numpy(img_u8).permute(2, 0, 1).float().div_(255.0)
        au = torch.from_numpy(np.asarray(rec.au, dtype=np.float32) / np.float32(self.au_scale))
        return {"image": image.contiguous(), "au": au, "index": int(i)}
