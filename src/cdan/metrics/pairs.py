"""Pair real and generated images by file stem, and load them.

A fake folder is either a plain folder of images named like the real ones, or the output of `cdan rec`:
`<stem>_xrec.png` (the reconstruction, used as the fake) beside `<stem>_mask_map.png`,
`<stem>_mask_input.png`, `<stem>_mask_color.png` and `<stem>_color_map.png`. In the second case the
`_mask_input` map is kept with the pair for the parsing check (PR).

Unpaired files are counted, never fatal; no pair at all is a `CdanError`. When a fake's size differs from
its real image, `load_pair` resizes the fake to the real size (PIL bicubic) for the per-pair metrics.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CdanError

log = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")
# Files `cdan rec` writes for each input, by suffix. `_xrec` is the fake used for the metrics.
REC_SUFFIXES = ("_xrec", "_mask_map", "_mask_input", "_mask_color", "_color_map")


class ImageReadError(Exception):
    """An image file could not be decoded. The message is a one-line reason."""


@dataclass(frozen=True)
class Pair:
    """One real image, its generated counterpart and, for `cdan rec` output, its masked input."""

    stem: str
    real: Path
    fake: Path
    mask_input: Path | None = None


@dataclass
class PairSet:
    """The pairing of two folders. `pairs` are sorted by stem."""

    pairs: list[Pair]
    rec_layout: bool  # the fake folder holds `cdan rec` output
    unpaired_real: list[str] = field(default_factory=list)  # real stems with no fake
    unpaired_fake: list[str] = field(default_factory=list)  # fake stems with no real
    duplicates: list[str] = field(default_factory=list)  # files ignored because another had the same stem


@dataclass
class LoadedPair:
    """A pair in memory. Images are uint8 [H,W,3] RGB; `fake_u8` has the real image's size."""

    stem: str
    real_u8: np.ndarray
    fake_u8: np.ndarray  # resized to real_u8's size when needed
    fake_orig_u8: np.ndarray  # as stored (for Inception features, which resize on their own)
    mask_input_u8: np.ndarray | None = None  # resized to real_u8's size when needed
    resized: bool = False


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _index_by_stem(paths: Iterable[Path], duplicates: list[str]) -> dict[str, Path]:
    """{stem: path}. On a clash (a.png and a.jpg) the first by extension preference then name wins."""
    order = {ext: i for i, ext in enumerate(IMAGE_EXTENSIONS)}
    out: dict[str, Path] = {}
    for p in sorted(paths, key=lambda p: (p.stem, order.get(p.suffix.lower(), 99), p.name)):
        if p.stem in out:
            duplicates.append(p.name)
            log.warning("ignoring %s: %s has the same stem", p, out[p.stem].name)
            continue
        out[p.stem] = p
    return out


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside `folder` (not recursive), sorted. A missing folder is a CdanError."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CdanError(f"not a folder: {folder}")
    return sorted(p for p in folder.iterdir() if _is_image(p))


def pair_images(real: str | Path | Sequence[str | Path], fake_dir: str | Path) -> PairSet:
    """Pair the real images (a folder, or an explicit list of files) with the images in `fake_dir` by stem.

    If `fake_dir` holds any `<stem>_xrec.<ext>` file it is read as `cdan rec` output (see module docstring).
    Raises CdanError when no stem is shared.
    """
    duplicates: list[str] = []
    if isinstance(real, (str, Path)):
        real_paths = list_images(real)
        real_desc = str(real)
    else:
        real_paths = [Path(p) for p in real]
        missing = [str(p) for p in real_paths if not p.is_file()]
        if missing:
            raise CdanError(f"real image not found: {missing[0]}")
        real_desc = f"{len(real_paths)} listed files"
    real_by_stem = _index_by_stem(real_paths, duplicates)

    fake_paths = list_images(fake_dir)
    rec_layout = any(p.stem.endswith("_xrec") for p in fake_paths)
    mask_inputs: dict[str, Path] = {}
    if rec_layout:
        xrec = [p for p in fake_paths if p.stem.endswith("_xrec")]
        fake_by_stem = {s[: -len("_xrec")]: p for s, p in _index_by_stem(xrec, duplicates).items()}
        mi = [p for p in fake_paths if p.stem.endswith("_mask_input")]
        mask_inputs = {s[: -len("_mask_input")]: p for s, p in _index_by_stem(mi, duplicates).items()}
    else:
        fake_by_stem = _index_by_stem(fake_paths, duplicates)

    stems = sorted(set(real_by_stem) & set(fake_by_stem))
    if not stems:
        kind = "`cdan rec` output (<stem>_xrec)" if rec_layout else "images"
        raise CdanError(
            f"no image pairs: {len(real_by_stem)} real images ({real_desc}) and {len(fake_by_stem)} "
            f"fake {kind} in {fake_dir} share no file stem"
        )
    pairs = [Pair(s, real_by_stem[s], fake_by_stem[s], mask_inputs.get(s)) for s in stems]
    out = PairSet(
        pairs=pairs,
        rec_layout=rec_layout,
        unpaired_real=sorted(set(real_by_stem) - set(fake_by_stem)),
        unpaired_fake=sorted(set(fake_by_stem) - set(real_by_stem)),
        duplicates=duplicates,
    )
    if out.unpaired_real or out.unpaired_fake:
        log.info(
            "%d pairs; %d real and %d fake images have no partner",
            len(pairs),
            len(out.unpaired_real),
            len(out.unpaired_fake),
        )
    return out


def read_rgb_u8(path: str | Path) -> np.ndarray:
    """Decode an image file to uint8 [H,W,3] RGB (as torch-fidelity does: PIL `.convert("RGB")`).

    Raises ImageReadError with a one-line reason for unreadable files.
    """
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I;16L", "I"):
                # 16-bit grey: scale to 8 bits (PIL's convert("RGB") would clip instead).
                arr = np.asarray(img, dtype=np.float64)
                top = 65535.0 if arr.max() > 255 else 255.0
                grey = np.clip(np.round(arr / top * 255.0), 0, 255).astype(np.uint8)
                return np.repeat(grey[:, :, None], 3, axis=2)
            return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, ValueError, SyntaxError) as e:
        raise ImageReadError(f"cannot read image {path}: {e}") from None


def resize_u8(image_u8: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize uint8 [H,W,C] to [height,width,C] with PIL bicubic (antialiased when shrinking)."""
    from PIL import Image

    if image_u8.shape[:2] == (height, width):
        return image_u8
    return np.asarray(Image.fromarray(image_u8).resize((width, height), Image.BICUBIC), dtype=np.uint8)


def load_pair(pair: Pair, with_mask_input: bool = False) -> LoadedPair:
    """Read a pair from disk; the fake (and mask input) are resized to the real image's size if needed.

    Raises ImageReadError when a file cannot be decoded.
    """
    real_u8 = read_rgb_u8(pair.real)
    fake_orig = read_rgb_u8(pair.fake)
    h, w = real_u8.shape[:2]
    fake_u8 = resize_u8(fake_orig, h, w)
    mask_input_u8 = None
    if with_mask_input and pair.mask_input is not None:
        mask_input_u8 = resize_u8(read_rgb_u8(pair.mask_input), h, w)
    return LoadedPair(
        stem=pair.stem,
        real_u8=real_u8,
        fake_u8=fake_u8,
        fake_orig_u8=fake_orig,
        mask_input_u8=mask_input_u8,
        resized=fake_orig.shape[:2] != (h, w),
    )
