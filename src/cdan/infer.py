"""Reconstruction on a folder of faces: `cdan rec`.

For every input image `reconstruct` writes five images (one map per file; the official `--mode rec` wrote
torchvision grids of 4 per name):

    <stem>_xrec.png        M*x + (1-M)*C, RGB, clamped to [0,1]
    <stem>_mask_map.png    M, single-channel grey (L), in [0,1]
    <stem>_mask_input.png  M*x, RGB (the "parsed" face used by PR)
    <stem>_mask_color.png  (1-M)*C, RGB, clamped to [0,1]: C is in [-1,1] so this can be negative, and the
                           official code's torchvision.save_image clamped it the same way
    <stem>_color_map.png   C mapped from [-1,1] to [0,1] with (C+1)/2 (the official code saved C as is, so
                           save_image clamped away every negative value; we keep the whole range)

Quantisation is torchvision.save_image's: uint8 = floor(clamp(v, 0, 1) * 255 + 0.5).
Inputs are read as RGB (grey, palette, alpha, 16-bit and EXIF rotation handled) and resized to the model
resolution with PIL bilinear (antialiased when shrinking); `index.csv` records each original size.

Beside the images: `index.csv` (one row per input, including skipped ones) and `rec.json` (the run summary
and the encoding of every map).
"""

from __future__ import annotations

import csv
import io
import logging
import os
import time
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CdanError
from .models.layout import inference_layout
from .utils import write_bytes_atomic, write_json_atomic

log = logging.getLogger(__name__)

__all__ = [
    "IMAGE_EXTS",
    "OUTPUTS",
    "InputImage",
    "iter_images",
    "assign_stems",
    "load_input",
    "output_names",
    "read_index",
    "reconstruct",
    "to_u8",
]

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
# The five maps, in file-name order: suffix -> how the tensor is encoded in the file.
OUTPUTS: dict[str, str] = {
    "xrec": "RGB, M*x + (1-M)*C clamped to [0,1]",
    "mask_map": "grey (L), M in [0,1]",
    "mask_input": "RGB, M*x in [0,1]",
    "mask_color": "RGB, (1-M)*C clamped to [0,1] (negative values become 0, as torchvision.save_image did)",
    "color_map": "RGB, (C+1)/2: the tanh colour map C in [-1,1] mapped to [0,1]",
}
IMAGE_FORMATS = {"png": "PNG", "jpg": "JPEG"}
INDEX_CSV = "index.csv"
SUMMARY_JSON = "rec.json"
INDEX_COLUMNS = (
    "stem",
    "source",
    "orig_width",
    "orig_height",
    "resize",
    *OUTPUTS,
    "mask_mean",
    "status",
    "note",
)
RESIZE_METHOD = "bilinear-antialias"


@dataclass(frozen=True)
class InputImage:
    """One input file and the unique stem its outputs are named after."""

    source: Path
    stem: str


def iter_images(
    path_or_dir: str | os.PathLike | Iterable[str | os.PathLike], recursive: bool = False
) -> list[Path]:
    """The image files to process, sorted.

    A folder gives its files with an image extension (png, jpg, jpeg, bmp, webp; any case), hidden files
    left out, subfolders only with `recursive`. A single file or a list of files is taken as given (a list
    keeps its order). Whether a file really decodes is checked later, when it is read (a recorded skip).
    Raises CdanError when the path does not exist or a folder holds no image.
    """
    if not isinstance(path_or_dir, str | os.PathLike):
        files = [Path(p) for p in path_or_dir]
        if not files:
            raise CdanError("no input images given")
        return files
    root = Path(path_or_dir)
    if root.is_file():
        return [root]
    if not root.is_dir():
        raise CdanError(f"image folder not found: {root}")
    pattern = root.rglob("*") if recursive else root.glob("*")
    files = sorted(
        (
            p
            for p in pattern
            if p.suffix.lower() in IMAGE_EXTS
            and not any(part.startswith(".") for part in p.relative_to(root).parts)
            and p.is_file()
        ),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    if not files:
        where = "under" if recursive else "in"
        raise CdanError(f"no images ({', '.join(IMAGE_EXTS)}) {where} {root}")
    return files


def assign_stems(files: Sequence[Path], root: Path | None = None) -> list[InputImage]:
    """Give every file a unique output stem.

    A file keeps its own stem when no other input has the same one (the usual case, so `cdan eval` can
    pair outputs with the originals by stem). Files that share a stem are named after their path relative
    to `root` (or to their common folder), with '/' replaced by '__' (`happy/a.jpg` -> `happy__a`); when
    that still clashes (`a.png` and `a.jpg` in one folder) the extension is appended (`a__jpg`), and any
    remaining clash gets `__2`, `__3`, ... in input order. Deterministic for a given set of inputs.
    """
    files = [Path(f) for f in files]
    if root is None and files:
        try:
            root = Path(os.path.commonpath([str(f.parent.absolute()) for f in files]))
        except ValueError:  # different drives
            root = None
    counts = Counter(f.stem for f in files)

    def rel_name(f: Path) -> str:
        try:
            rel = f.absolute().relative_to(root.absolute()) if root is not None else Path(f.name)
        except ValueError:
            rel = Path(f.name)
        return "__".join((*rel.parent.parts, rel.stem)) if rel.parent.parts else rel.stem

    first = [f.stem if counts[f.stem] == 1 else rel_name(f) for f in files]
    counts2 = Counter(first)
    second = [n if counts2[n] == 1 else f"{n}__{f.suffix.lstrip('.').lower()}" for n, f in zip(first, files)]
    taken: set[str] = set()
    out = []
    for f, name in zip(files, second):
        unique, k = name, 2
        while unique in taken:
            unique, k = f"{name}__{k}", k + 1
        taken.add(unique)
        out.append(InputImage(f, unique))
    return out


def output_names(stem: str, image_format: str = "png") -> dict[str, str]:
    """{map: file name} for one stem, e.g. {'xrec': 'a_xrec.png', ...}."""
    return {k: f"{stem}_{k}.{image_format}" for k in OUTPUTS}


def load_input(path: Path, size: int) -> tuple[np.ndarray, tuple[int, int]]:
    """Read an image as uint8 [size,size,3] RGB (PIL bilinear, antialiased) and return its original (w, h).

    Raises OSError/ValueError/SyntaxError (and PIL's DecompressionBombError) when it cannot be decoded.
    """
    from PIL import Image

    from .data.dataset import read_image_rgb

    img_u8 = read_image_rgb(path)  # any mode -> RGB, EXIF rotation applied
    h, w = img_u8.shape[:2]
    if (w, h) != (size, size):
        img_u8 = np.array(Image.fromarray(img_u8).resize((size, size), Image.BILINEAR), dtype=np.uint8)
    return img_u8, (w, h)


def to_u8(t):
    """float tensor [...] in [0,1] -> uint8 tensor, quantised as torchvision.save_image (clamp, *255, +0.5, floor)."""
    import torch

    return t.clamp(0, 1).mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8)


def _encode(arr_u8: np.ndarray, image_format: str) -> bytes:
    from PIL import Image

    im = Image.fromarray(arr_u8[..., 0] if arr_u8.shape[-1] == 1 else arr_u8)
    buf = io.BytesIO()
    if image_format == "jpg":
        im.save(buf, format="JPEG", quality=95)
    else:
        im.save(buf, format="PNG")
    return buf.getvalue()


def _mean_of_saved_mask(path: Path) -> float | None:
    from PIL import Image

    try:
        with Image.open(path) as im:
            return float(np.asarray(im.convert("L"), dtype=np.float64).mean() / 255.0)
    except (OSError, ValueError, SyntaxError):
        return None


def _write_index(out_dir: Path, rows: list[dict]) -> Path:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=INDEX_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if row.get(k) is None else row.get(k)) for k in INDEX_COLUMNS})
    path = out_dir / INDEX_CSV
    write_bytes_atomic(path, buf.getvalue().encode("utf-8"))
    return path


def read_index(out_dir: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a `cdan rec` folder's index.csv (all values as strings). CdanError when it is missing."""
    path = Path(out_dir) / INDEX_CSV
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))
    except OSError as e:
        raise CdanError(f"cannot read {path}: {e.strerror or e}") from None


def reconstruct(
    model,
    images_dir_or_list: str | os.PathLike | Iterable[str | os.PathLike],
    out_dir: str | os.PathLike,
    batch_size: int = 16,
    device: str = "cpu",
    image_format: str = "png",
    *,
    recursive: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    extra_summary: dict | None = None,
) -> dict:
    """Run `model` on every image and write its five maps, `index.csv` and `rec.json` under `out_dir`.

    model: a CDAN (forward(x [N,3,R,R] in [0,1]) -> CDANOutput). images_dir_or_list: a folder, one file or
    a list of files (see `iter_images`). Images whose five outputs all exist are skipped (status
    'existing') unless `overwrite`; unreadable files are skipped with the reason (status 'skipped').
    Every file is written atomically, so an interrupted run leaves whole files only and simply resumes.
    Returns the summary dict (also written to rec.json).
    """
    import torch
    from PIL import Image
    from tqdm import tqdm

    from .utils import resolve_device

    if image_format not in IMAGE_FORMATS:
        raise CdanError(f"unknown image format {image_format!r} (choose {', '.join(IMAGE_FORMATS)})")
    if batch_size < 1:
        raise CdanError("--batch-size must be at least 1")
    t0 = time.perf_counter()
    root = Path(images_dir_or_list) if isinstance(images_dir_or_list, str | os.PathLike) else None
    files = iter_images(images_dir_or_list, recursive=recursive)
    items = assign_stems(files, root if root is not None and root.is_dir() else None)
    renamed = sum(1 for it in items if it.stem != it.source.stem)
    if renamed:
        log.info("%d input(s) share a stem with another: named after their relative path", renamed)
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise CdanError(f"output path exists and is not a folder: {out}")
    out.mkdir(parents=True, exist_ok=True)

    dev = resolve_device(device) if isinstance(device, str) else device
    model = inference_layout(model.to(dev)).eval()
    res = int(model.config.resolution)

    rows: dict[str, dict] = {}
    todo: list[InputImage] = []
    for it in items:
        names = output_names(it.stem, image_format)
        row = {"stem": it.stem, "source": str(it.source), **names, "status": "pending"}
        rows[it.stem] = row
        if not overwrite and all((out / n).is_file() for n in names.values()):
            row.update(status="existing", mask_mean=_mean_of_saved_mask(out / names["mask_map"]))
            try:
                with Image.open(it.source) as im:
                    w, h = im.size
                row.update(
                    orig_width=w, orig_height=h, resize=RESIZE_METHOD if (w, h) != (res, res) else "none"
                )
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
                pass
        else:
            todo.append(it)
    n_existing = len(items) - len(todo)
    if n_existing:
        log.info(
            "%d image(s) already reconstructed in %s: skipped (use --overwrite to redo)", n_existing, out
        )

    written = 0
    skipped: list[tuple[str, str]] = []
    bar = tqdm(total=len(todo), desc="rec", unit="img", dynamic_ncols=True, disable=not progress or not todo)
    try:
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            batch_u8, ok = [], []
            for it in chunk:
                row = rows[it.stem]
                try:
                    img_u8, (w, h) = load_input(it.source, res)
                except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
                    reason = f"unreadable image: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                    log.warning("skipping %s: %s", it.source, reason)
                    skipped.append((str(it.source), reason))
                    row.update(status="skipped", note=reason)
                    for k in OUTPUTS:
                        row[k] = ""
                    bar.update(1)
                    continue
                row.update(
                    orig_width=w, orig_height=h, resize=RESIZE_METHOD if (w, h) != (res, res) else "none"
                )
                batch_u8.append(img_u8)
                ok.append(it)
            if not ok:
                continue
            x = torch.from_numpy(np.stack(batch_u8)).permute(0, 3, 1, 2).float().div_(255.0).to(dev)
            with torch.inference_mode():
                o = model(x)
            maps = {
                "xrec": to_u8(o.xrec),
                "mask_map": to_u8(o.mask_map),
                "mask_input": to_u8(o.mask_input),
                "mask_color": to_u8(o.mask_color),
                "color_map": to_u8((o.color_map + 1) / 2),
            }
            maps_np = {k: v.permute(0, 2, 3, 1).cpu().numpy() for k, v in maps.items()}
            mask_mean = o.mask_map.float().mean(dim=(1, 2, 3)).cpu().numpy()
            for i, it in enumerate(ok):
                row = rows[it.stem]
                for k in OUTPUTS:
                    write_bytes_atomic(out / row[k], _encode(maps_np[k][i], image_format))
                row.update(status="written", mask_mean=round(float(mask_mean[i]), 6))
                written += 1
                bar.update(1)
    finally:
        bar.close()
        index_path = _write_index(out, list(rows.values()))
    seconds = time.perf_counter() - t0
    summary = {
        "out": str(out),
        "index": str(index_path),
        "images": len(items),
        "written": written,
        "existing": n_existing,
        "skipped": len(skipped),
        "skipped_files": [{"source": s, "reason": r} for s, r in skipped],
        "renamed": renamed,
        "resolution": res,
        "resize": RESIZE_METHOD,
        "image_format": image_format,
        "quantisation": "uint8 = floor(clamp(v,0,1)*255 + 0.5) (torchvision.save_image)",
        "outputs": dict(OUTPUTS),
        "seconds": round(seconds, 3),
        "img_per_s": round(written / seconds, 3) if seconds > 0 else None,
    }
    if extra_summary:
        summary.update(extra_summary)
    write_json_atomic(out / SUMMARY_JSON, summary)
    return summary
