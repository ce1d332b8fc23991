"""Evaluation metrics: a registry of named metrics and one entry point, `evaluate`.

    IS, FID, KID  realism (torch-fidelity InceptionV3 features; our statistics)   fid_is.py
    ACD           identity kept: dlib face embeddings, L2 per pair                   acd.py
    ED            expression kept: AU vectors, L2 per pair                           ed.py
    PSNR, SSIM    pixel agreement; LPIPS perceptual distance                         image.py
    PR            parsing check: HOG-difference KL between AU groups                 parsing.py

`evaluate(real, fake_dir, ...)` pairs images by stem (pairs.py), streams the pairs in batches through every
requested metric, and returns an `EvalResult`. A metric that cannot run (missing weights, no AU groups, no
parsed images...) is null in `.summary`, and `.unavailable` says why; every other metric still runs.
"""

from __future__ import annotations

import csv
import io
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..aus import SIX_AUS
from ..errors import CdanError
from .pairs import ImageReadError, LoadedPair, PairSet, load_pair, pair_images

log = logging.getLogger(__name__)

# name -> (title, better, description). The order is the report order.
METRICS: dict[str, tuple[str, str, str]] = {
    "is": ("IS", "higher", "Inception Score of the fakes (torch-fidelity InceptionV3 logits)"),
    "fid": ("FID", "lower", "Frechet Inception Distance, real vs fake (2048-D pool features)"),
    "kid": ("KID", "lower", "Kernel Inception Distance, real vs fake (unbiased cubic MMD^2)"),
    "acd": ("ACD", "lower", "Average Content Distance: L2 of dlib face embeddings per pair"),
    "ed": ("ED", "lower", "Expression Distance: L2 of AU vectors (0-5) per pair"),
    "psnr": ("PSNR", "higher", "peak signal-to-noise ratio in dB per pair"),
    "ssim": ("SSIM", "higher", "structural similarity per pair"),
    "lpips": ("LPIPS", "lower", "learned perceptual distance per pair"),
    "pr": ("PR", "higher", "parsing KL between AU-active and AU-inactive faces (mean over AUs)"),
}
ALL_METRICS: tuple[str, ...] = tuple(METRICS)
INCEPTION_METRICS = ("is", "fid", "kid")
PER_IMAGE_COLUMNS = ("stem", "real", "fake", "psnr", "ssim", "lpips", "acd", "ed")


def parse_metrics(spec: str | Sequence[str] | None) -> tuple[str, ...]:
    """'is,fid' or ['is', 'fid'] or None (all) -> names in registry order. Unknown names are a CdanError."""
    if spec is None:
        return ALL_METRICS
    names = [s.strip().lower() for s in (spec.split(",") if isinstance(spec, str) else spec) if s.strip()]
    if "all" in names:
        return ALL_METRICS
    bad = [n for n in names if n not in METRICS]
    if bad or not names:
        raise CdanError(f"unknown metric {', '.join(bad) or '(none)'}: choose from {', '.join(ALL_METRICS)}")
    return tuple(n for n in ALL_METRICS if n in names)


@dataclass
class AUTable:
    """AU intensities (0-5) of the real images, used to split them into AU groups for PR."""

    aus: tuple[str, ...]
    values: dict[str, np.ndarray]  # image stem -> float [K] in `aus` order

    @classmethod
    def from_dataset(cls, path: str | Path) -> AUTable:
        """From a dataset folder (our aus.csv layout, or official crops + legacy pickle)."""
        from ..data import load_dataset

        index = load_dataset(path)
        return cls(tuple(index.aus), {r.name: np.asarray(r.au, np.float64) for r in index.records})


@dataclass
class EvalResult:
    """What `evaluate` measured.

    summary: {metric: float or None} for every name in ALL_METRICS.
    unavailable: {metric: one-line reason} for each metric that is None.
    per_image: one dict per evaluated pair with PER_IMAGE_COLUMNS (None where not measured).
    counts: pairs, unreadable, unpaired_real, unpaired_fake, acd_dropped, ed_dropped, ...
    details: spreads (is_std, kid_std), PR per AU, which weights / backends were used.
    """

    summary: dict[str, float | None]
    unavailable: dict[str, str]
    per_image: list[dict[str, Any]]
    counts: dict[str, int]
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: the nine metric keys, then `unavailable`, `counts` and `details`."""
        out: dict[str, Any] = {k: _finite(self.summary.get(k)) for k in ALL_METRICS}
        out["unavailable"] = dict(self.unavailable)
        out["counts"] = dict(self.counts)
        out["details"] = self.details
        return out

    def markdown(self) -> str:
        """A Markdown table (metric | value | note), then one line of counts."""
        lines = ["| metric | value | note |", "|---|---:|---|"]
        for key in ALL_METRICS:
            title, better, _ = METRICS[key]
            value = self.summary.get(key)
            if value is None:
                reason = self.unavailable.get(key, "")
                if reason == NOT_REQUESTED:
                    continue
                lines.append(f"| {title} | unavailable | {reason.replace('|', '/')} |")
                continue
            lines.append(f"| {title} ({better} is better) | {value:.4f} | {self._note(key)} |")
        c = self.counts
        lines.append("")
        parts = [f"pairs: {c.get('evaluated', 0)}"]
        for k in ("unreadable", "unpaired_real", "unpaired_fake", "resized", "acd_dropped", "ed_dropped"):
            if c.get(k):
                parts.append(f"{k.replace('_', ' ')}: {c[k]}")
        lines.append("; ".join(parts))
        return "\n".join(lines) + "\n"

    def _note(self, key: str) -> str:
        d, c = self.details, self.counts
        if key == "is" and "is_std" in d:
            return f"+/- {d['is_std']:.4f} over {d.get('is_splits')} splits"
        if key == "kid" and "kid_std" in d:
            return f"+/- {d['kid_std']:.5f} over {d.get('kid_subsets')} subsets of {d.get('kid_subset_size')}"
        if key == "acd":
            return f"{c.get('acd_pairs', 0)} pairs with faces, {c.get('acd_dropped', 0)} dropped ({d.get('acd_box')} boxes)"
        if key == "ed":
            return f"{c.get('ed_pairs', 0)} pairs, {c.get('ed_dropped', 0)} dropped ({d.get('ed_source')})"
        if key == "pr":
            per = d.get("pr_per_au", {})
            return ", ".join(f"{a} {v:.3f}" for a, v in per.items() if v is not None)
        if key == "lpips":
            return f"LPIPS-{d.get('lpips_net')}"
        return ""

    def per_image_csv(self) -> str:
        """The per-image rows as CSV text (empty cells where a metric was not measured)."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(PER_IMAGE_COLUMNS)
        for row in self.per_image:
            w.writerow(["" if row.get(k) is None else _fmt_cell(row[k]) for k in PER_IMAGE_COLUMNS])
        return buf.getvalue()

    def write_per_image_csv(self, path: str | Path) -> None:
        from ..utils import write_text_atomic

        write_text_atomic(path, self.per_image_csv())


NOT_REQUESTED = "not requested (--metrics)"


def _finite(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else float(v)


def _fmt_cell(v: Any) -> str:
    return f"{v:.6g}" if isinstance(v, float) else str(v)


def _mean(values: Sequence[float]) -> float | None:
    return float(np.mean(values)) if len(values) else None


def _batches(items: Sequence, size: int):
    for i in range(0, len(items), size):
        yield items[i : i + size]


def evaluate(
    real: str | Path | Sequence[str | Path],
    fake_dir: str | Path,
    *,
    metrics: str | Sequence[str] | None = None,
    batch_size: int = 32,
    device: str = "auto",
    aus: Sequence[str] = SIX_AUS,
    au_backend: Any = "auto",
    inception_weights: str | Path | None = None,
    lpips_weights: str | Path | None = None,
    lpips_net: str = "vgg",
    openface_csv_real: str | Path | None = None,
    openface_csv_fake: str | Path | None = None,
    mask_dir: str | Path | None = None,
    groups: AUTable | Mapping[str, np.ndarray] | None = None,
    pr_threshold: float = 1.0,
    pr_official_bug: bool = False,
    acd_box: str = "own",
    is_splits: int = 10,
    kid_subsets: int = 100,
    progress: bool = True,
) -> EvalResult:
    """Compute the requested metrics between real images and generated ones.

    real: a folder of real images, or a list of image files. fake_dir: generated images with the same stems,
        or `cdan rec` output (`<stem>_xrec.png` is the fake, `<stem>_mask_input.png` the parsed image).
    metrics: subset of ALL_METRICS (default all). batch_size: pairs per batch (results do not depend on it).
    aus / au_backend: AUs and backend (a name for `cdan.faces.au.get_backend`, or an object with
        `estimate(image_u8, aus)`) for ED; or openface_csv_real + openface_csv_fake (folders of OpenFace CSVs).
    inception_weights / lpips_weights: local weight files (default: the torch hub cache); never downloaded.
    mask_dir: folder of parsed images (`<stem>_mask_input.*` or `<stem>.*`) instead of the rec layout's.
    groups: AU table of the real images for PR (AUTable, or {stem: [K]} in `aus` order); an AU is active
        when >= pr_threshold. pr_official_bug: reproduce PR.py's inactive-group bug (see parsing.py).
    acd_box: 'own', 'real' or 'whole' (see acd.py).
    """
    wanted = parse_metrics(metrics)
    if batch_size < 1 or is_splits < 1 or kid_subsets < 1:
        raise CdanError("--batch-size, --is-splits and --kid-subsets must be >= 1")
    if (openface_csv_real is None) != (openface_csv_fake is None):
        raise CdanError("ED from OpenFace CSVs needs both --openface-csv-real and --openface-csv-fake")
    # Explicit weight paths that do not exist are typos: stop before any work.
    for flag, p in (("--inception-weights", inception_weights), ("--lpips-weights", lpips_weights)):
        if p is not None and not Path(p).expanduser().is_file():
            raise CdanError(f"{flag}: file not found: {p}")
    if mask_dir is not None and not Path(mask_dir).is_dir():
        raise CdanError(f"--mask-dir: not a folder: {mask_dir}")

    from ..utils import resolve_device

    dev = str(resolve_device(device))
    pairset = pair_images(real, fake_dir)
    pairs = _attach_masks(pairset, mask_dir)
    n_pairs = len(pairs)

    unavailable: dict[str, str] = {m: NOT_REQUESTED for m in ALL_METRICS if m not in wanted}
    details: dict[str, Any] = {"device": dev}
    counts: dict[str, int] = {
        "pairs": n_pairs,
        "evaluated": 0,
        "unreadable": 0,
        "unpaired_real": len(pairset.unpaired_real),
        "unpaired_fake": len(pairset.unpaired_fake),
        "duplicates": len(pairset.duplicates),
        "resized": 0,
    }

    # ---- set up every requested metric; a failure makes that metric unavailable, nothing else.
    inception = None
    if any(m in wanted for m in INCEPTION_METRICS):
        from .fid_is import InceptionFeatureExtractor, find_inception_weights

        try:
            inception = InceptionFeatureExtractor(find_inception_weights(inception_weights), dev)
            details["inception_weights"] = str(inception.weights_path)
        except CdanError as e:
            for m in INCEPTION_METRICS:
                if m in wanted:
                    unavailable[m] = str(e)
    lpips_model = None
    if "lpips" in wanted:
        from .image import build_lpips

        try:
            lpips_model = build_lpips(lpips_net, lpips_weights, dev)
            details["lpips_net"] = lpips_net
        except CdanError as e:
            unavailable["lpips"] = str(e)
    embedder = None
    if "acd" in wanted:
        from .acd import BOX_MODES, FaceEmbedder

        if acd_box not in BOX_MODES:
            raise CdanError(f"unknown ACD box mode {acd_box!r}: use one of {', '.join(BOX_MODES)}")
        try:
            embedder = FaceEmbedder()
            details["acd_box"] = acd_box
        except CdanError as e:
            unavailable["acd"] = str(e)
    au_source = None
    if "ed" in wanted:
        au_source = _ed_source(aus, au_backend, openface_csv_real, openface_csv_fake, unavailable)
        if au_source is not None:
            details["ed_source"] = au_source.description
            details["ed_aus"] = list(getattr(au_source, "aus", aus))
    pr_acc = None
    au_table = None
    if "pr" in wanted:
        pr_acc, au_table = _pr_setup(groups, aus, pr_threshold, pairs, unavailable)
        if pr_acc is not None:
            details["pr_threshold"] = pr_threshold
            details["pr_official_bug"] = pr_official_bug

    # ---- stream the pairs
    rows: list[dict[str, Any]] = []
    real_feats: list[dict[str, np.ndarray]] = []
    fake_feats: list[dict[str, np.ndarray]] = []
    acd_values: list[float] = []
    ed_values: list[float] = []
    skipped: list[tuple[str, str]] = []
    counts.update(acd_dropped=0, ed_dropped=0, pr_images=0, pr_no_mask=0, pr_no_au=0)

    from tqdm import tqdm

    bar = tqdm(total=n_pairs, desc="eval", unit="pair", disable=None if progress else True, leave=False)
    for chunk in _batches(pairs, batch_size):
        loaded: list[LoadedPair] = []
        batch_rows: list[dict[str, Any]] = []
        for pair in chunk:
            try:
                loaded.append(load_pair(pair, with_mask_input=pr_acc is not None))
                batch_rows.append({"stem": pair.stem, "real": str(pair.real), "fake": str(pair.fake)})
            except ImageReadError as e:
                counts["unreadable"] += 1
                skipped.append((pair.stem, str(e)))
                log.warning("skipping pair %s: %s", pair.stem, e)
        bar.update(len(chunk))
        if not loaded:
            continue
        counts["evaluated"] += len(loaded)
        counts["resized"] += sum(lp.resized for lp in loaded)
        if "psnr" in wanted or "ssim" in wanted:
            from .image import psnr, ssim

            for lp, row in zip(loaded, batch_rows):
                if "psnr" in wanted:
                    row["psnr"] = psnr(lp.real_u8, lp.fake_u8)
                if "ssim" in wanted:
                    row["ssim"] = ssim(lp.real_u8, lp.fake_u8)
        if lpips_model is not None:
            from .image import lpips_distance

            d = lpips_distance(lpips_model, [lp.real_u8 for lp in loaded], [lp.fake_u8 for lp in loaded])
            for row, v in zip(batch_rows, d):
                row["lpips"] = float(v)
        if inception is not None:
            real_feats.append(inception([lp.real_u8 for lp in loaded]))
            fake_feats.append(inception([lp.fake_orig_u8 for lp in loaded]))
        if embedder is not None:
            from .acd import content_distance

            for lp, row in zip(loaded, batch_rows):
                try:
                    v = content_distance(embedder, lp.real_u8, lp.fake_u8, acd_box)
                except RuntimeError as e:  # dlib errors: drop the pair, keep the run
                    log.warning("ACD failed on %s: %s", lp.stem, e)
                    v = None
                if v is None:
                    counts["acd_dropped"] += 1
                else:
                    row["acd"] = v
                    acd_values.append(v)
        if au_source is not None:
            from .ed import expression_distance

            for lp, row in zip(loaded, batch_rows):
                a_real, a_fake = au_source.pair_aus(lp.stem, lp.real_u8, lp.fake_u8)
                if a_real is None or a_fake is None:
                    counts["ed_dropped"] += 1
                else:
                    row["ed"] = expression_distance(a_real, a_fake)
                    ed_values.append(row["ed"])
        if pr_acc is not None:
            from .parsing import hog_difference, rgb_to_grey_u8

            for lp in loaded:
                if lp.mask_input_u8 is None:
                    counts["pr_no_mask"] += 1
                    continue
                au = au_table.get(lp.stem)
                if au is None:
                    counts["pr_no_au"] += 1
                    continue
                pr_acc.add(au, hog_difference(rgb_to_grey_u8(lp.real_u8), rgb_to_grey_u8(lp.mask_input_u8)))
                counts["pr_images"] += 1
        rows.extend(batch_rows)
    bar.close()
    if skipped:
        details["skipped"] = [f"{s}: {r}" for s, r in skipped]

    # ---- finish
    summary: dict[str, float | None] = {m: None for m in ALL_METRICS}
    n = counts["evaluated"]
    if n == 0:
        raise CdanError(f"none of the {n_pairs} pairs could be read ({skipped[0][1]})")
    for key in ("psnr", "ssim", "lpips"):
        if key in wanted and key not in unavailable:
            summary[key] = _mean([r[key] for r in rows if r.get(key) is not None])
    if inception is not None:
        _finish_inception(
            wanted, real_feats, fake_feats, is_splits, kid_subsets, summary, unavailable, details
        )
    if embedder is not None:
        counts["acd_pairs"] = len(acd_values)
        summary["acd"] = _mean(acd_values)
        if summary["acd"] is None:
            unavailable["acd"] = f"no pair with a face found on both sides ({counts['acd_dropped']} dropped)"
    if au_source is not None:
        counts["ed_pairs"] = len(ed_values)
        summary["ed"] = _mean(ed_values)
        if summary["ed"] is None:
            unavailable["ed"] = f"no pair with AU vectors on both sides ({counts['ed_dropped']} dropped)"
    if pr_acc is not None:
        per_au = pr_acc.per_au(pr_official_bug)
        details["pr_per_au"] = per_au
        details["pr_group_counts"] = {a: list(v) for a, v in pr_acc.counts().items()}
        valid = [v for v in per_au.values() if v is not None]
        summary["pr"] = _mean(valid)
        if summary["pr"] is None:
            if counts["pr_images"] == 0:
                unavailable["pr"] = (
                    f"no pair has both a parsed image and AU values "
                    f"({counts['pr_no_mask']} without _mask_input, {counts['pr_no_au']} without AUs)"
                )
            else:
                unavailable["pr"] = (
                    f"no AU has both active (>= {pr_threshold}) and inactive faces among {counts['pr_images']}"
                )
    for row in rows:
        for k in PER_IMAGE_COLUMNS:
            row.setdefault(k, None)
    return EvalResult(
        summary=summary, unavailable=unavailable, per_image=rows, counts=counts, details=details
    )


def _attach_masks(pairset: PairSet, mask_dir: str | Path | None):
    """Pairs, with `mask_input` taken from `mask_dir` (`<stem>_mask_input.*` or `<stem>.*`) when given."""
    if mask_dir is None:
        return pairset.pairs
    from dataclasses import replace

    from .pairs import list_images

    files = list_images(mask_dir)
    by_stem: dict[str, Path] = {}
    for p in files:
        s = p.stem[: -len("_mask_input")] if p.stem.endswith("_mask_input") else p.stem
        if s not in by_stem or p.stem.endswith("_mask_input"):
            by_stem[s] = p
    return [replace(p, mask_input=by_stem.get(p.stem)) for p in pairset.pairs]


def _ed_source(aus, au_backend, csv_real, csv_fake, unavailable):
    from .ed import BackendAUSource, OpenFaceAUSource, load_backend

    try:
        if csv_real is not None:
            return OpenFaceAUSource(csv_real, csv_fake, aus)
        backend = load_backend(au_backend) if isinstance(au_backend, str) else au_backend
        if not hasattr(backend, "estimate"):
            raise CdanError(f"AU backend {backend!r} has no estimate(image_u8, aus) method")
        return BackendAUSource(backend, aus)
    except CdanError as e:
        unavailable["ed"] = str(e)
        return None


def _pr_setup(groups, aus, threshold, pairs, unavailable):
    from .parsing import ParsingKLAccumulator

    if groups is None:
        unavailable["pr"] = "needs AU groups of the real images: pass --data DATASET (its aus.csv or pickle)"
        return None, None
    if not any(p.mask_input is not None for p in pairs):
        unavailable["pr"] = (
            "needs parsed images: `cdan rec` output (<stem>_mask_input.png) in the fake folder, or --mask-dir"
        )
        return None, None
    if isinstance(groups, AUTable):
        table_aus, values = groups.aus, groups.values
    else:
        table_aus, values = tuple(aus), dict(groups)
    return ParsingKLAccumulator(table_aus, threshold), values


def _finish_inception(wanted, real_feats, fake_feats, is_splits, kid_subsets, summary, unavailable, details):
    from .fid_is import LOGITS, POOL_FEATURES, fid_from_features, inception_score, kernel_inception_distance

    real_pool = np.concatenate([f[POOL_FEATURES] for f in real_feats])
    fake_pool = np.concatenate([f[POOL_FEATURES] for f in fake_feats])
    n = len(fake_pool)
    if "is" in wanted:
        splits = max(1, min(is_splits, n))
        summary["is"], details["is_std"] = inception_score(
            np.concatenate([f[LOGITS] for f in fake_feats]), splits
        )
        details["is_real"], _ = inception_score(np.concatenate([f[LOGITS] for f in real_feats]), splits)
        details["is_splits"] = splits
    for key in ("fid", "kid"):
        if key in wanted and n < 2:
            unavailable[key] = f"needs at least 2 pairs, got {n}"
    if "fid" in wanted and n >= 2:
        summary["fid"] = fid_from_features(real_pool, fake_pool)
    if "kid" in wanted and n >= 2:
        size = min(1000, n)
        # torch-fidelity order: input1 = fakes, input2 = reals.
        summary["kid"], details["kid_std"] = kernel_inception_distance(
            fake_pool, real_pool, kid_subsets, size
        )
        details["kid_subsets"], details["kid_subset_size"] = kid_subsets, size
