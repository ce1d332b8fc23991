"""Figures for runs, reconstructions and patterns.

matplotlib is used through its Agg canvas (`matplotlib.figure.Figure` + `FigureCanvasAgg`), imported inside
the functions, so no global backend is switched and nothing needs a display. Every file is written
atomically. Images are numpy uint8 [H,W,3] RGB (`*_u8`) unless said otherwise.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CdanError
from ..utils import atomic_path

log = logging.getLogger(__name__)

__all__ = [
    "HeatmapRow",
    "as_rgb_u8",
    "heatmap_over_face",
    "read_stats",
    "save_heatmap_figure",
    "save_image_grid",
    "save_loss_curves",
    "save_png",
    "save_rec_grid",
    "smooth",
]

# stats.jsonl keys that are bookkeeping, not losses.
NON_LOSS_KEYS = frozenset({"step", "epoch", "img_per_s", "lr", "time", "seconds", "elapsed", "rank"})


# --------------------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------------------


def _figure(width_in: float, height_in: float):
    """A matplotlib Figure on an Agg canvas (no pyplot, no global backend change)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width_in, height_in), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _save_figure(fig, out_png: str | os.PathLike, dpi: int = 100) -> Path:
    out = Path(out_png)
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=dpi)
    return out


def save_png(path: str | os.PathLike, image_u8: np.ndarray) -> Path:
    """Write uint8 [H,W] (grey) or [H,W,3] (RGB) as a PNG, atomically."""
    from PIL import Image

    arr = np.asarray(image_u8)
    if arr.dtype != np.uint8:
        raise ValueError(f"save_png needs uint8, got {arr.dtype}")
    if arr.ndim == 3 and arr.shape[2] == 1:
        arr = arr[..., 0]
    path = Path(path)
    with atomic_path(path) as tmp:
        Image.fromarray(arr).save(tmp, format="PNG")
    return path


def as_rgb_u8(image: np.ndarray) -> np.ndarray:
    """Grey [H,W] / [H,W,1], RGB or RGBA [H,W,3|4], uint8 or float in [0,1] -> uint8 [H,W,3]."""
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        arr = np.floor(np.clip(np.nan_to_num(arr.astype(np.float64)), 0.0, 1.0) * 255.0 + 0.5).astype(
            np.uint8
        )
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an image [H,W], [H,W,1], [H,W,3] or [H,W,4], got shape {arr.shape}")
    if arr.shape[2] == 1:
        arr = np.repeat(arr, 3, axis=2)
    return np.ascontiguousarray(arr[..., :3])


def _resize_u8(image_u8: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """uint8 [H,W,3] -> [size[1], size[0], 3] (size is (w, h))."""
    from PIL import Image

    if image_u8.shape[1::-1] == tuple(size):
        return image_u8
    method = Image.NEAREST if nearest else Image.BILINEAR
    return np.asarray(Image.fromarray(image_u8).resize(size, method), dtype=np.uint8)


def _resize_float(arr: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """float [h,w] -> float32 [size[1], size[0]] (bilinear; NaN is kept where any neighbour is NaN)."""
    from PIL import Image

    a = np.asarray(arr, dtype=np.float32)
    if a.shape[::-1] == tuple(size):
        return a
    nan = ~np.isfinite(a)
    out = np.asarray(Image.fromarray(np.where(nan, 0.0, a).astype(np.float32)).resize(size, Image.BILINEAR))
    if nan.any():
        nan_r = np.asarray(Image.fromarray(nan.astype(np.float32)).resize(size, Image.BILINEAR)) > 0
        out = np.where(nan_r, np.nan, out)
    return out.astype(np.float32)


def _font(size: int):
    from PIL import ImageFont

    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: fixed bitmap font
        return ImageFont.load_default()


# --------------------------------------------------------------------------------------------------------
# Loss curves
# --------------------------------------------------------------------------------------------------------


def read_stats(stats_jsonl: str | os.PathLike) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """stats.jsonl -> (steps [T] sorted, {loss key: values [T]} with NaN where a row lacks the key).

    Lines that are not JSON objects with a numeric `step` (e.g. a half-written last line of a killed run)
    are skipped with a warning. When a step appears twice (a run resumed from an earlier checkpoint), the
    later line wins. Loss keys: every numeric key except bookkeeping ones (step, epoch, img_per_s, lr, ...).
    """
    path = Path(stats_jsonl)
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise CdanError(f"cannot read {path}: {e.strerror or e}") from None
    by_step: dict[float, dict] = {}
    bad = 0
    for line in lines:
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            bad += 1
            continue
        step = row.get("step") if isinstance(row, dict) else None
        if isinstance(step, bool) or not isinstance(step, int | float) or not math.isfinite(step):
            bad += 1
            continue
        by_step[float(step)] = row
    if bad:
        log.warning("%s: %d line(s) skipped (not a JSON object with a numeric step)", path, bad)
    steps = np.array(sorted(by_step), dtype=np.float64)
    keys = sorted(
        {
            k
            for row in by_step.values()
            for k, v in row.items()
            if k not in NON_LOSS_KEYS and isinstance(v, int | float) and not isinstance(v, bool)
        }
    )
    values = {
        k: np.array(
            [
                float(v)
                if isinstance(v := by_step[s].get(k), int | float) and not isinstance(v, bool)
                else np.nan
                for s in steps
            ],
            dtype=np.float64,
        )
        for k in keys
    }
    return steps, values


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over `window` points (fewer at the start); NaN points are ignored."""
    v = np.asarray(values, dtype=np.float64)
    ok = np.isfinite(v)
    csum = np.concatenate([[0.0], np.cumsum(np.where(ok, v, 0.0))])
    cnt = np.concatenate([[0], np.cumsum(ok)])
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(idx - max(1, int(window)), 0)
    n = cnt[idx] - cnt[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (csum[idx] - csum[lo]) / np.maximum(n, 1), np.nan)


def save_loss_curves(
    stats_jsonl: str | os.PathLike, out_png: str | os.PathLike, smooth_window: int | None = None
) -> Path:
    """Plot every loss key of a trainer's stats.jsonl against step: raw (thin) and smoothed (bold).

    One panel per key (sorted, so `d/*` then `g/*`). smooth_window: points in the trailing moving average
    (default: about 1/20 of the points, at most 50). Raises CdanError when the file has no usable row.
    """
    steps, values = read_stats(stats_jsonl)
    keys = [k for k, v in values.items() if np.isfinite(v).any()]
    if steps.size == 0 or not keys:
        raise CdanError(f"{stats_jsonl}: no loss values to plot")
    window = smooth_window or max(1, min(50, round(steps.size / 20)))
    ncols = min(3, len(keys))
    nrows = math.ceil(len(keys) / ncols)
    fig = _figure(4.2 * ncols, 2.6 * nrows + 0.4)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    for ax, k in zip(axes.flat, keys):
        v = values[k]
        ok = np.isfinite(v)
        ax.plot(steps[ok], v[ok], color="tab:blue", alpha=0.3, linewidth=0.8, label="raw")
        if window > 1:
            ax.plot(
                steps[ok], smooth(v[ok], window), color="tab:blue", linewidth=1.8, label=f"mean of {window}"
            )
        ax.set_title(k, fontsize=10)
        ax.grid(True, alpha=0.3)
        ax.tick_params(labelsize=8)
        ax.set_xlabel("step", fontsize=8)
    for ax in list(axes.flat)[len(keys) :]:
        ax.set_visible(False)
    if window > 1:
        axes.flat[0].legend(fontsize=7, loc="best")
    fig.suptitle(f"training losses ({Path(stats_jsonl).name}, {steps.size} log points)", fontsize=11)
    return _save_figure(fig, out_png)


# --------------------------------------------------------------------------------------------------------
# Image grids
# --------------------------------------------------------------------------------------------------------


def save_image_grid(
    rows: Sequence[Sequence[np.ndarray | None]],
    out_png: str | os.PathLike,
    row_labels: Sequence[str] | None = None,
    col_labels: Sequence[str] | None = None,
    *,
    scale: int = 1,
    pad: int = 4,
    font_size: int = 13,
) -> Path:
    """Lay images out in rows and write one PNG.

    rows[r][c]: uint8 [H,W,3] (grey, RGBA and float [0,1] images are converted) or None for an empty cell.
    Every cell has the size of the largest image (smaller ones are centred); `scale` enlarges every image
    by an integer factor (nearest neighbour, so pixels stay sharp). Labels go left of each row and above
    each column. Returns the path.
    """
    from PIL import Image, ImageDraw

    if not rows or not any(len(r) for r in rows):
        raise ValueError("save_image_grid needs at least one image")
    if row_labels is not None and len(row_labels) != len(rows):
        raise ValueError(f"{len(row_labels)} row labels for {len(rows)} rows")
    scale = max(1, int(scale))
    cells = [[None if im is None else as_rgb_u8(im) for im in r] for r in rows]
    if scale > 1:
        cells = [
            [None if im is None else np.repeat(np.repeat(im, scale, 0), scale, 1) for im in r] for r in cells
        ]
    imgs = [im for r in cells for im in r if im is not None]
    if not imgs:
        raise ValueError("save_image_grid needs at least one image")
    ch = max(im.shape[0] for im in imgs)
    cw = max(im.shape[1] for im in imgs)
    ncols = max(len(r) for r in cells)
    font = _font(font_size)
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))

    def text_w(s: str) -> int:
        return int(math.ceil(probe.textlength(s, font=font)))

    left = (max(text_w(s) for s in row_labels) + 2 * pad) if row_labels else 0
    top = (font_size + 2 * pad) if col_labels else 0
    width = left + ncols * (cw + pad) + pad
    height = top + len(cells) * (ch + pad) + pad
    canvas = np.full((height, width, 3), 255, dtype=np.uint8)
    for r, row in enumerate(cells):
        y0 = top + pad + r * (ch + pad)
        for c, im in enumerate(row):
            if im is None:
                continue
            x0 = left + pad + c * (cw + pad)
            oy, ox = (ch - im.shape[0]) // 2, (cw - im.shape[1]) // 2
            canvas[y0 + oy : y0 + oy + im.shape[0], x0 + ox : x0 + ox + im.shape[1]] = im
    out = Image.fromarray(canvas)
    draw = ImageDraw.Draw(out)
    if row_labels:
        for r, s in enumerate(row_labels):
            y = top + pad + r * (ch + pad) + ch // 2
            draw.text((pad, y), str(s), fill=(20, 20, 20), font=font, anchor="lm")
    if col_labels:
        for c, s in enumerate(list(col_labels)[:ncols]):
            s = str(s)
            limit = cw + pad
            while len(s) > 3 and text_w(s) > limit:
                s = s.rstrip("…")[:-1] + "…"
            x = left + pad + c * (cw + pad) + cw // 2
            draw.text((x, top // 2), s, fill=(20, 20, 20), font=font, anchor="mm")
    return save_png(out_png, np.asarray(out))


REC_ROWS = (
    ("input", None),
    ("reconstruction", "xrec"),
    ("mask M", "mask_map"),
    ("M·input", "mask_input"),
    ("(1-M)·C", "mask_color"),
    ("colour C", "color_map"),
)


def save_rec_grid(
    rec_dir: str | os.PathLike,
    out_png: str | os.PathLike,
    stems: Sequence[str] | None = None,
    max_images: int = 8,
    scale: int = 2,
) -> Path:
    """A grid of `cdan rec` output: rows input | reconstruction | mask | M·input | (1−M)·C | colour,
    one column per face. stems: which faces (default: the first `max_images` written ones in index.csv).
    The input row is read from each row's source and resized to the maps' size; a missing source leaves
    an empty cell.
    """
    from PIL import Image

    from ..infer import load_input, read_index

    rec_dir = Path(rec_dir)
    index = {r["stem"]: r for r in read_index(rec_dir) if r.get("status") in ("written", "existing")}
    chosen = list(stems) if stems is not None else list(index)[:max_images]
    chosen = [s for s in chosen if s in index]
    if not chosen:
        raise CdanError(f"{rec_dir}: no reconstructed image to show")

    def load(path: Path) -> np.ndarray | None:
        try:
            with Image.open(path) as im:
                return as_rgb_u8(np.asarray(im.convert("RGB")))
        except (OSError, ValueError, SyntaxError):
            return None

    rows: list[list[np.ndarray | None]] = [[] for _ in REC_ROWS]
    for stem in chosen:
        row = index[stem]
        maps = {key: load(rec_dir / row[key]) for _, key in REC_ROWS if key}
        size = next((m.shape[0] for m in maps.values() if m is not None), None)
        src = None
        if size is not None:
            try:
                src = load_input(Path(row["source"]), size)[0]
            except (OSError, ValueError, SyntaxError):
                src = None
        for r, (_, key) in enumerate(REC_ROWS):
            rows[r].append(src if key is None else maps[key])
    return save_image_grid(
        rows, out_png, row_labels=[lab for lab, _ in REC_ROWS], col_labels=chosen, scale=scale
    )


# --------------------------------------------------------------------------------------------------------
# Heatmaps
# --------------------------------------------------------------------------------------------------------


def heatmap_over_face(
    face_u8: np.ndarray,
    mask_float: np.ndarray,
    vmin: float | None = None,
    vmax: float | None = None,
    cmap: str = "jet",
    alpha: float = 0.5,
    size: int | None = None,
) -> np.ndarray:
    """Blend a colour-mapped map over a face -> uint8 [S,S,3] (S = `size`, else the face's size).

    face_u8: uint8 [H,W,3] (or grey). mask_float: float [h,w], resized to the face (bilinear) when needed.
    vmin/vmax: the colour scale (default: the map's own finite min/max). NaN pixels show the face only.
    """
    from matplotlib import colormaps

    face = as_rgb_u8(face_u8)
    if size is not None:
        face = _resize_u8(face, (int(size), int(size)))
    h, w = face.shape[:2]
    m = _resize_float(np.asarray(mask_float, dtype=np.float32), (w, h))
    finite = np.isfinite(m)
    lo = float(np.min(m[finite])) if vmin is None and finite.any() else (vmin if vmin is not None else 0.0)
    hi = float(np.max(m[finite])) if vmax is None and finite.any() else (vmax if vmax is not None else 1.0)
    norm = np.clip((m - lo) / (hi - lo), 0.0, 1.0) if hi > lo else np.full_like(m, 0.5)
    colours = colormaps[cmap](np.where(finite, norm, 0.0))[..., :3]
    a = np.where(finite, float(alpha), 0.0)[..., None]
    out = (1.0 - a) * (face.astype(np.float64) / 255.0) + a * colours
    return np.floor(np.clip(out, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


@dataclass
class HeatmapRow:
    """One row of `save_heatmap_figure`: panels are (title, map [h,w] or None for "n/a").

    kind 'mask' rows share one colour scale (min..max over all mask panels); 'diff' rows share a symmetric
    one (-a..a) with a diverging colour map.
    """

    label: str
    panels: list[tuple[str, np.ndarray | None]] = field(default_factory=list)
    kind: str = "mask"


def save_heatmap_figure(
    face_u8: np.ndarray,
    rows: Sequence[HeatmapRow],
    out_png: str | os.PathLike,
    title: str | None = None,
    cmap: str = "jet",
    diff_cmap: str = "RdBu_r",
    alpha: float = 0.55,
    panel_inches: float = 1.7,
) -> Path:
    """One figure: a grid of heatmaps over the same face, a colour bar per row. Returns the path."""
    from matplotlib.cm import ScalarMappable
    from matplotlib.colors import Normalize

    rows = [r for r in rows if r.panels]
    if not rows:
        raise ValueError("save_heatmap_figure needs at least one panel")

    def finite_values(kind: str) -> np.ndarray:
        vals = [
            np.asarray(m, np.float64).ravel()
            for r in rows
            if r.kind == kind
            for _, m in r.panels
            if m is not None
        ]
        v = np.concatenate(vals) if vals else np.zeros(0)
        return v[np.isfinite(v)]

    mv = finite_values("mask")
    m_lo, m_hi = (float(mv.min()), float(mv.max())) if mv.size else (0.0, 1.0)
    if m_hi <= m_lo:
        m_lo, m_hi = m_lo - 0.5e-3, m_hi + 0.5e-3
    dv = finite_values("diff")
    d_abs = float(np.abs(dv).max()) if dv.size else 0.0
    d_abs = d_abs if d_abs > 0 else 1e-3
    scales = {"mask": (m_lo, m_hi, cmap), "diff": (-d_abs, d_abs, diff_cmap)}

    ncols = max(len(r.panels) for r in rows)
    fig = _figure(panel_inches * ncols + 1.6, (panel_inches + 0.45) * len(rows) + (0.5 if title else 0.1))
    gs = fig.add_gridspec(len(rows), ncols + 1, width_ratios=[1.0] * ncols + [0.07])
    face = as_rgb_u8(face_u8)
    grey_face = np.repeat(np.round(face.mean(axis=2, keepdims=True)).astype(np.uint8), 3, axis=2)
    for r, row in enumerate(rows):
        lo, hi, cm = scales.get(row.kind, scales["mask"])
        for c in range(ncols):
            ax = fig.add_subplot(gs[r, c])
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if c >= len(row.panels):
                ax.set_visible(False)
                continue
            name, m = row.panels[c]
            if m is None:
                ax.imshow((grey_face * 0.35 + 160).astype(np.uint8))
                ax.text(0.5, 0.5, "n/a", ha="center", va="center", transform=ax.transAxes, fontsize=12)
            else:
                ax.imshow(heatmap_over_face(face, m, lo, hi, cmap=cm, alpha=alpha))
            ax.set_title(name, fontsize=8)
            if c == 0:
                ax.set_ylabel(row.label, fontsize=9)
        cax = fig.add_subplot(gs[r, ncols])
        fig.colorbar(ScalarMappable(Normalize(lo, hi), cm), cax=cax).ax.tick_params(labelsize=7)
    if title:
        fig.suptitle(title, fontsize=11)
    return _save_figure(fig, out_png, dpi=110)
