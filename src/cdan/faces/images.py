"""Robust reading of photos and videos for `cdan prepare`.

Every problem with one input raises `UnreadableInput` whose message is a one-line reason; the caller records
it as a skip and moves on. Images come back as uint8 [H,W,3] RGB whatever their mode: grey, palette, CMYK,
alpha (composited on white), 16-bit (scaled to 8 bits), EXIF-rotated (transposed upright). A pixel limit
guards against decompression bombs.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

__all__ = [
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "VIDEO_EXTENSIONS",
    "UnreadableInput",
    "is_image_path",
    "is_video_path",
    "iter_video_frames",
    "read_image",
    "to_rgb_u8",
]

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".jfif"}
)
VIDEO_EXTENSIONS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"})
# Images above this many pixels are refused ("image too large"): 64 MP, about 8000 x 8000.
MAX_PIXELS = 64_000_000


class UnreadableInput(Exception):
    """One input cannot be used. str(exc) is a one-line reason, recorded as a skip."""


def is_image_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def is_video_path(path: str | os.PathLike) -> bool:
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def to_rgb_u8(img) -> np.ndarray:
    """A PIL image of any mode -> uint8 [H,W,3] RGB (alpha composited on white, 16/32-bit scaled)."""
    from PIL import Image

    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(img, dtype=np.float64)
        if mode == "F":
            lo, hi = float(np.nanmin(arr)), float(np.nanmax(arr))
            arr = (arr - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(arr)
        elif mode == "I":
            peak = float(arr.max()) if arr.size else 0.0
            arr = arr / (65535.0 if peak > 255 else 255.0) * 255.0
        else:
            arr = arr / 65535.0 * 255.0
        grey = np.clip(np.rint(np.nan_to_num(arr)), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(white, rgba)
    elif mode == "1":
        img = img.convert("L")
    out = np.asarray(img.convert("RGB"), dtype=np.uint8)
    return np.ascontiguousarray(out)


def read_image(path: str | os.PathLike, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Read one photo -> uint8 [H,W,3] RGB, upright (EXIF orientation applied).

    Raises UnreadableInput("...") for a missing, empty, truncated, non-image or too-large file.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as e:
        raise UnreadableInput(f"cannot open file: {e.strerror or e}") from None
    if size == 0:
        raise UnreadableInput("empty file (0 bytes)")
    try:
        with Image.open(path) as img:
            w, h = img.size  # from the header: checked before any pixel is decoded
            if w * h > max_pixels:
                raise UnreadableInput(f"image too large ({w}x{h} pixels, limit {max_pixels:,})")
            if w < 1 or h < 1:
                raise UnreadableInput(f"image has no pixels ({w}x{h})")
            img.load()
            img = ImageOps.exif_transpose(img)
            return to_rgb_u8(img)
    except UnreadableInput:
        raise
    except Image.DecompressionBombError:
        raise UnreadableInput(
            f"image too large (decompression bomb guard, limit {max_pixels:,} pixels)"
        ) from None
    except UnidentifiedImageError:
        raise UnreadableInput("not an image (unrecognised format)") from None
    except (OSError, SyntaxError, ValueError, EOFError, MemoryError, TypeError) as e:
        msg = " ".join(str(e).split()) or type(e).__name__
        if "truncated" in msg.lower():
            raise UnreadableInput(f"truncated image: {msg}") from None
        raise UnreadableInput(f"cannot decode image: {msg}") from None


def iter_video_frames(
    path: str | os.PathLike, every: int = 1, max_pixels: int = MAX_PIXELS
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield (frame_index, uint8 [H,W,3] RGB) for every `every`-th frame (0, every, 2*every, ...).

    Raises UnreadableInput when the file cannot be opened as a video or yields no frame at all.
    """
    import cv2

    if every < 1:
        raise ValueError("every must be >= 1")
    path = Path(path)
    if not path.is_file():
        raise UnreadableInput("cannot open file: not found")
    if path.stat().st_size == 0:
        raise UnreadableInput("empty file (0 bytes)")
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise UnreadableInput("cannot open video (unsupported or corrupt)")
        index = 0
        got_any = False
        while True:
            if index % every == 0:
                ok, frame = cap.read()
            else:
                ok = cap.grab()
                frame = None
            if not ok:
                break
            if frame is not None:
                if frame.ndim != 3 or frame.shape[0] * frame.shape[1] > max_pixels:
                    raise UnreadableInput(f"video frame too large or malformed (shape {frame.shape})")
                got_any = True
                yield index, np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            index += 1
        if not got_any:
            raise UnreadableInput("video has no readable frames")
    finally:
        cap.release()
