"""The "global patterns" of the paper: mean parsing masks per AU group and per expression class.

`compute_patterns` runs the model over a dataset split and averages the mask map M:
- per AU, over faces where the AU is active (intensity >= threshold; OpenFace's presence threshold 1.0 by
  default) and over the faces where it is not, plus their difference (active - inactive);
- per class label, when the dataset has labels;
- over all faces, with the mean input face as the background of every heatmap.
It also gives the parsing check PR per AU (`cdan.metrics.parsing`): KL(active || inactive) between the
HOG-difference distributions of the grey input (at model resolution) and the grey masked input M*x
(quantised to uint8 as `cdan rec` saves it). A group with no face is "n/a", never an error.

`write_patterns` writes patterns.png (one figure), one PNG per map, patterns.json and patterns.npz.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .aus import AU_ACTIVE_THRESHOLD
from .errors import CdanError
from .models.layout import inference_layout
from .utils import atomic_path, write_json_atomic

log = logging.getLogger(__name__)

__all__ = ["PatternResult", "compute_patterns", "select_records", "write_patterns"]

NA = "n/a"
SPLITS = ("test", "train", "all")
# Per-map PNGs are enlarged to at least this many pixels (the raw maps are in patterns.npz).
PNG_MIN_SIZE = 224


@dataclass
class PatternResult:
    """Mean maps, each float64 [R,R] (None when its group is empty), and their counts."""

    aus: tuple[str, ...]
    threshold: float
    split: str
    resolution: int
    n_faces: int
    mean_face: np.ndarray  # float64 [R,R,3] in [0,1]
    mean_mask: np.ndarray  # float64 [R,R], over all faces
    active: dict[str, np.ndarray | None]
    inactive: dict[str, np.ndarray | None]
    active_count: dict[str, int]
    inactive_count: dict[str, int]
    classes: dict[str, np.ndarray] = field(default_factory=dict)  # label -> mean mask
    class_count: dict[str, int] = field(default_factory=dict)
    pr: dict[str, float | None] = field(default_factory=dict)  # AU -> KL(active || inactive)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (image, reason)

    def diff(self, au: str) -> np.ndarray | None:
        """active - inactive mean mask [R,R], None when either group is empty."""
        a, b = self.active[au], self.inactive[au]
        return None if a is None or b is None else a - b

    def mean_face_u8(self) -> np.ndarray:
        """The mean input face as uint8 [R,R,3]."""
        return np.floor(np.clip(self.mean_face, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def select_records(dataset_index, split: str) -> list:
    """The records of 'test', 'train' or 'all'. CdanError for an unknown or empty split."""
    if split not in SPLITS:
        raise CdanError(f"unknown split {split!r} (choose {', '.join(SPLITS)})")
    records = (
        list(dataset_index.records)
        if split == "all"
        else [r for r in dataset_index.records if r.split == split]
    )
    if not records:
        raise CdanError(f"dataset {dataset_index.root} has no {split} faces (try --split all)")
    return records


def compute_patterns(
    model,
    dataset_index,
    split: str = "test",
    threshold: float = AU_ACTIVE_THRESHOLD,
    batch_size: int = 16,
    device: str = "cpu",
    progress: bool = True,
) -> PatternResult:
    """Run `model` over `dataset_index`'s split and average its mask maps per AU group and class.

    dataset_index: a `cdan.data.DatasetIndex` (AU vectors 0-5 in `dataset_index.aus` order). An AU is
    active on a face when its intensity >= `threshold`. Unreadable images are skipped and listed in
    `skipped`. Returns a PatternResult.
    """
    import torch
    from PIL import Image
    from tqdm import tqdm

    from .infer import load_input, to_u8
    from .metrics.parsing import ParsingKLAccumulator, hog_difference, rgb_to_grey_u8
    from .utils import resolve_device

    if batch_size < 1:
        raise CdanError("--batch-size must be at least 1")
    if not np.isfinite(threshold):
        raise CdanError("--threshold must be a finite number")
    records = select_records(dataset_index, split)
    aus = tuple(dataset_index.aus)
    k = len(aus)
    dev = resolve_device(device) if isinstance(device, str) else device
    model = inference_layout(model.to(dev)).eval()
    res = int(model.config.resolution)

    sum_face = np.zeros((res, res, 3))
    sum_mask = np.zeros((res, res))
    act_sum, inact_sum = np.zeros((k, res, res)), np.zeros((k, res, res))
    act_n, inact_n = np.zeros(k, dtype=np.int64), np.zeros(k, dtype=np.int64)
    cls_sum: dict[str, np.ndarray] = {}
    cls_n: dict[str, int] = {}
    pr_acc = ParsingKLAccumulator(aus, threshold)
    skipped: list[tuple[str, str]] = []
    n = 0
    t0 = time.perf_counter()
    bar = tqdm(total=len(records), desc="patterns", unit="img", dynamic_ncols=True, disable=not progress)
    try:
        for start in range(0, len(records), batch_size):
            imgs, recs = [], []
            for rec in records[start : start + batch_size]:
                try:
                    img_u8, _ = load_input(Path(rec.path), res)
                except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
                    reason = f"unreadable image: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                    log.warning("skipping %s: %s", rec.path, reason)
                    skipped.append((str(rec.path), reason))
                    bar.update(1)
                    continue
                imgs.append(img_u8)
                recs.append(rec)
            if not recs:
                continue
            batch_u8 = np.stack(imgs)  # [B,R,R,3]
            x = torch.from_numpy(batch_u8).permute(0, 3, 1, 2).float().div_(255.0).to(dev)
            with torch.inference_mode():
                out = model(x)
            masks = out.mask_map[:, 0].double().cpu().numpy()  # [B,R,R]
            parsed_u8 = to_u8(out.mask_input).permute(0, 2, 3, 1).cpu().numpy()  # [B,R,R,3]
            sum_face += x.double().cpu().numpy().transpose(0, 2, 3, 1).sum(axis=0)
            sum_mask += masks.sum(axis=0)
            n += len(recs)
            for i, rec in enumerate(recs):
                if rec.label is not None:
                    cls_sum.setdefault(rec.label, np.zeros((res, res)))
                    cls_sum[rec.label] += masks[i]
                    cls_n[rec.label] = cls_n.get(rec.label, 0) + 1
                au = None if rec.au is None else np.asarray(rec.au, dtype=np.float64)
                if au is None or au.shape != (k,) or not np.all(np.isfinite(au)):
                    continue  # no AU vector: counts for the mean face and class only
                on = au >= threshold
                act_sum[on] += masks[i]
                inact_sum[~on] += masks[i]
                act_n += on
                inact_n += ~on
                diff = hog_difference(rgb_to_grey_u8(batch_u8[i]), rgb_to_grey_u8(parsed_u8[i]))
                pr_acc.add(au, diff)
            bar.update(len(recs))
    finally:
        bar.close()
    if n == 0:
        raise CdanError(f"no readable image in the {split} split of {dataset_index.root}")
    log.info("patterns: %d faces in %.1f s", n, time.perf_counter() - t0)

    def mean(s: np.ndarray, c: int) -> np.ndarray | None:
        return s / c if c > 0 else None

    pr = pr_acc.per_au()
    return PatternResult(
        aus=aus,
        threshold=float(threshold),
        split=split,
        resolution=res,
        n_faces=n,
        mean_face=sum_face / n,
        mean_mask=sum_mask / n,
        active={a: mean(act_sum[j], int(act_n[j])) for j, a in enumerate(aus)},
        inactive={a: mean(inact_sum[j], int(inact_n[j])) for j, a in enumerate(aus)},
        active_count={a: int(act_n[j]) for j, a in enumerate(aus)},
        inactive_count={a: int(inact_n[j]) for j, a in enumerate(aus)},
        classes={c: cls_sum[c] / cls_n[c] for c in sorted(cls_sum)},
        class_count={c: cls_n[c] for c in sorted(cls_n)},
        pr={a: (None if v is None else float(v)) for a, v in pr.items()},
        skipped=skipped,
    )


def _safe_name(label: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("._") or "unnamed"


def _num(v: float | None, digits: int = 6) -> float | str:
    return NA if v is None or not np.isfinite(v) else round(float(v), digits)


def write_patterns(result: PatternResult, out_dir: str | os.PathLike, extra: dict | None = None) -> dict:
    """Write the figure, per-map PNGs, patterns.json and patterns.npz under `out_dir`.

    Mask heatmaps share one colour scale (min..max over every mean mask), difference heatmaps a symmetric
    one, so all PNGs are comparable; the scales are stored in patterns.json. Returns the JSON dict.
    """
    from .report.plots import HeatmapRow, heatmap_over_face, save_heatmap_figure, save_png

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    r = result
    face_u8 = r.mean_face_u8()
    masks = [
        m
        for m in (*r.active.values(), *r.inactive.values(), *r.classes.values(), r.mean_mask)
        if m is not None
    ]
    m_lo = float(min(m.min() for m in masks))
    m_hi = float(max(m.max() for m in masks))
    if m_hi <= m_lo:
        m_lo, m_hi = m_lo - 0.5e-3, m_hi + 0.5e-3
    diffs = [d for a in r.aus if (d := r.diff(a)) is not None]
    d_abs = float(max((np.abs(d).max() for d in diffs), default=0.0)) or 1e-3
    size = r.resolution * max(1, -(-PNG_MIN_SIZE // r.resolution))

    def png(name: str, m: np.ndarray, kind: str = "mask") -> str:
        lo, hi, cmap = (m_lo, m_hi, "jet") if kind == "mask" else (-d_abs, d_abs, "RdBu_r")
        save_png(out / name, heatmap_over_face(face_u8, m, lo, hi, cmap=cmap, alpha=0.55, size=size))
        return name

    files: dict[str, str] = {}
    per_au: dict[str, dict] = {}
    for a in r.aus:
        entry: dict = {
            "active": r.active_count[a],
            "inactive": r.inactive_count[a],
            "mean_mask_active": _num(None if r.active[a] is None else r.active[a].mean()),
            "mean_mask_inactive": _num(None if r.inactive[a] is None else r.inactive[a].mean()),
            "mean_mask_diff": _num(None if r.diff(a) is None else r.diff(a).mean()),
            "pr": _num(r.pr.get(a)),
            "files": {},
        }
        for kind, m in (("active", r.active[a]), ("inactive", r.inactive[a]), ("diff", r.diff(a))):
            if m is None:
                entry["files"][kind] = NA
                continue
            entry["files"][kind] = png(f"au_{a}_{kind}.png", m, "diff" if kind == "diff" else "mask")
        per_au[a] = entry
    per_class: dict[str, dict] = {}
    used: set[str] = set()
    for c, m in r.classes.items():
        name, k = f"class_{_safe_name(c)}", 2
        while name in used:
            name, k = f"class_{_safe_name(c)}_{k}", k + 1
        used.add(name)
        per_class[c] = {"count": r.class_count[c], "mean_mask": _num(m.mean()), "file": png(f"{name}.png", m)}
    files["mean_face"] = "mean_face.png"
    save_png(out / "mean_face.png", heatmap_over_face(face_u8, np.full(face_u8.shape[:2], np.nan), size=size))
    files["mean_mask"] = png("mean_mask.png", r.mean_mask)

    # The figure: AU rows (active / inactive / difference), then the overall mean and the classes.
    def panel(a: str, m: np.ndarray | None, count: int, word: str) -> tuple[str, np.ndarray | None]:
        return f"{a} {word} (n={count})", m

    rows = [
        HeatmapRow("active", [panel(a, r.active[a], r.active_count[a], "on") for a in r.aus]),
        HeatmapRow("inactive", [panel(a, r.inactive[a], r.inactive_count[a], "off") for a in r.aus]),
        HeatmapRow(
            "active − inactive",
            [(f"{a} diff, PR {_fmt_pr(r.pr.get(a))}", r.diff(a)) for a in r.aus],
            kind="diff",
        ),
    ]
    group_panels = [(f"all faces (n={r.n_faces})", r.mean_mask)] + [
        (f"{c} (n={r.class_count[c]})", m) for c, m in r.classes.items()
    ]
    width = max(len(r.aus), 4)
    for i in range(0, len(group_panels), width):
        rows.append(HeatmapRow("classes" if r.classes else "all", group_panels[i : i + width]))
    title = (
        f"Mean parsing masks M over the mean face: {r.n_faces} faces (split: {r.split}), "
        f"AU active when intensity ≥ {r.threshold:g}"
    )
    save_heatmap_figure(face_u8, rows, out / "patterns.png", title=title)
    files["figure"] = "patterns.png"

    # Raw maps.
    nan = np.full((r.resolution, r.resolution), np.nan)
    classes = list(r.classes)
    arrays = {
        "aus": np.array(r.aus),
        "mean_face": r.mean_face.astype(np.float32),
        "mean_mask": r.mean_mask.astype(np.float32),
        "active": np.stack([nan if r.active[a] is None else r.active[a] for a in r.aus]).astype(np.float32),
        "inactive": np.stack([nan if r.inactive[a] is None else r.inactive[a] for a in r.aus]).astype(
            np.float32
        ),
        "diff": np.stack([nan if (d := r.diff(a)) is None else d for a in r.aus]).astype(np.float32),
        "active_count": np.array([r.active_count[a] for a in r.aus], dtype=np.int64),
        "inactive_count": np.array([r.inactive_count[a] for a in r.aus], dtype=np.int64),
        "classes": np.array(classes, dtype=str),
        "class_masks": (
            np.stack([r.classes[c] for c in classes]).astype(np.float32)
            if classes
            else np.zeros((0, r.resolution, r.resolution), np.float32)
        ),
        "class_count": np.array([r.class_count[c] for c in classes], dtype=np.int64),
    }
    with atomic_path(out / "patterns.npz") as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **arrays)
    files["npz"] = "patterns.npz"

    prs = [v for v in r.pr.values() if v is not None]
    summary = {
        "split": r.split,
        "threshold": r.threshold,
        "resolution": r.resolution,
        "faces": r.n_faces,
        "mean_mask": _num(r.mean_mask.mean()),
        "aus": per_au,
        "classes": per_class,
        "pr_mean": _num(float(np.mean(prs)) if prs else None),
        "pr_definition": "KL(active || inactive) of HOG(grey input) - HOG(grey M*x), cdan.metrics.parsing",
        "color_scale": {
            "mask": [round(m_lo, 6), round(m_hi, 6)],
            "diff": [round(-d_abs, 6), round(d_abs, 6)],
        },
        "skipped": [{"image": s, "reason": why} for s, why in r.skipped],
        "files": files,
    }
    if extra:
        summary.update(extra)
    write_json_atomic(out / "patterns.json", summary)
    return summary


def _fmt_pr(v: float | None) -> str:
    return NA if v is None else f"{v:.3g}"


def pr_line(summary: dict, aus: Sequence[str] | None = None) -> str:
    """'AU01 0.12, AU04 n/a, ...' from a patterns.json dict."""
    names = aus or list(summary["aus"])
    parts = []
    for a in names:
        v = summary["aus"][a]["pr"]
        parts.append(f"{a} {v:.3g}" if isinstance(v, float) else f"{a} {v}")
    return ", ".join(parts)
