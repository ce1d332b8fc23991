"""The demo's HTML report (DIR/report.html), built from `cdan.demo.run_demo`'s summary."""

from __future__ import annotations

from pathlib import Path

from ..metrics import METRICS
from .html import Section, write_report


def _fmt(v) -> str:
    return "n/a" if v is None else f"{v:.4g}"


def write_demo_report(out_html: Path, s: dict, patterns: dict, figs: Path, pat_dir: Path, run: Path) -> Path:
    cmp_rows, unavailable = [], {}
    for key, c in s["comparison"].items():
        title, better, desc = METRICS[key]
        cmp_rows.append({"metric": title, "better": better, "first checkpoint": c["first"],
                         "last checkpoint": c["last"], "change": c["change"],
                         "improved": "yes" if c["improved"] else ("n/a" if c["change"] is None else "no")})  # fmt: skip
        reason = s["metrics"]["last"].get("unavailable", {}).get(key)
        if reason:
            unavailable[title] = reason
    psnr, ed = s["comparison"]["psnr"], s["comparison"]["ed"]
    tr = s["train"]
    verdict = (
        f"**The model learned**: from the first checkpoint (step 0) to the last ({s['last_checkpoint']}), "
        f"PSNR went from {_fmt(psnr['first'])} dB to {_fmt(psnr['last'])} dB ({psnr['change']:+.2f} dB) and the "
        f"expression distance ED from {_fmt(ed['first'])} to {_fmt(ed['last'])} ({ed['change']:+.3f} AU units)."
        if s["learned"]
        else "**Warning: the last checkpoint does not beat the first on both PSNR and ED** "
        f"(PSNR change {_fmt(psnr['change'])}, ED change {_fmt(ed['change'])}). Train longer (--minutes)."
    )
    d = s["dataset"]
    overview = [
        verdict,
        f"Dataset: {d['faces']} synthetic faces ({d['train']} train, {d['test']} test), AUs "
        f"{', '.join(d['aus'])}, expression classes {', '.join(d['labels'])}.",
        f"Training: preset `small`, {tr['step']} iterations in this run's budget (status: {tr['status']}). "
        f"Run directory: `{run}`.",
        "Everything ran offline on this machine. Metrics that need pretrained weights that are not installed "
        "are listed under *Unavailable metrics* with the file to provide.",
    ]
    sections = [Section("Overview", overview)]
    unav = [{"metric": k, "reason": v} for k, v in unavailable.items()]
    sections.append(Section(
        "Metrics: first vs last checkpoint",
        "Test split, each real face against its reconstruction. ACD and ED are L2 distances (dlib face "
        "embeddings; AU vectors on the 0-5 scale); PR is the parsing KL between AU-active and AU-inactive faces.",
        tables=[{"rows": cmp_rows, "caption": "metrics"}] + ([{"rows": unav, "caption": "Unavailable metrics"}] if unav else []),
    ))  # fmt: skip
    sections.append(Section(
        "Reconstructions and parsing maps (last checkpoint)",
        "Rows: input, reconstruction xrec = M·x + (1−M)·C, mask M, masked input M·x, (1−M)·C, colour map C.",
        images=[(figs / "rec_last.png", "last checkpoint"), (figs / "rec_first.png", "first checkpoint (untrained)")],
    ))  # fmt: skip
    samples = sorted((run / "samples").glob("step_*.png"))
    train_imgs = (
        [(figs / "loss.png", "loss curves (raw and smoothed)")] if (figs / "loss.png").is_file() else []
    )
    if samples:
        train_imgs.append(
            (samples[-1], f"fixed sample grid at {samples[-1].stem}: input | xrec | mask | M·x | colour")
        )
    sections.append(
        Section("Training", "Every loss term of the official objective, from stats.jsonl.", images=train_imgs)
    )
    pr_rows = []
    for au, info in (patterns.get("aus") or {}).items():
        if isinstance(info, dict):
            pr_rows.append({"AU": au, "active faces": info.get("active"), "inactive faces": info.get("inactive"),
                            "PR (KL)": info.get("pr")})  # fmt: skip
    sections.append(Section(
        "Global expression patterns",
        "Mean mask maps over the mean face, per AU (active: intensity ≥ 1, inactive, and their difference) and "
        "per expression class. The mask marks what the codec copies from the input: the expression-bearing parts.",
        images=[(pat_dir / "patterns.png", "patterns.png")],
        tables=[{"rows": pr_rows, "caption": "parsing KL per AU"}] if pr_rows else [],
    ))  # fmt: skip
    prep = s.get("prepare_check", {})
    if "error" in prep:
        prep_text, prep_tables = f"The face pipeline could not run: {prep['error']}", []
    else:
        prep_text = (
            f"`cdan prepare` (backend {prep.get('backend')}) on {prep.get('inputs')} synthetic test faces: "
            f"{prep.get('faces_found')} faces detected, aligned and scored. Mean absolute error of the estimated "
            f"AUs against the true ones: {_fmt(prep.get('mae'))} (0-5 scale)."
        )
        prep_tables = [{"rows": [{"AU": a, "MAE": v} for a, v in (prep.get("mae_per_au") or {}).items()],
                        "caption": "estimated vs true AU intensity"}]  # fmt: skip
    sections.append(Section("Face pipeline check", prep_text, tables=prep_tables))
    sections.append(
        Section("Timings", tables=[{"rows": [{"stage": k, "seconds": v} for k, v in s["timings_s"].items()]}])
    )
    return write_report(out_html, sections, title="CDAN demo report",
                        subtitle="synthetic faces, small preset, trained on this machine")  # fmt: skip
