"""The end-to-end demo (`cdan demo`, `make demo`): the whole job on the embedded synthetic dataset, offline.

1. synth     draw N synthetic faces with known AUs (the embedded default dataset)
2. prepare   run the real face pipeline (detect, align, estimate AUs) on a sample of them, and compare the
             estimated AUs with the true ones
3. train     the `small` preset within the time budget (true AUs as supervision)
4. rec       reconstruct the test split with the first (untrained, step 0) and the last checkpoint
5. eval      every metric that can run offline, for both checkpoints
6. patterns  mean masks per AU and per expression class, with the parsing KL
7. report    DIR/report.html: grids, loss curves, pattern heatmaps, metrics first vs last

Every stage writes into its own folder under DIR and is skipped when its output already exists, so an
interrupted demo resumes (`--fresh` starts over).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path

import numpy as np

from .errors import CdanError
from .utils import resolve_device, write_json_atomic

log = logging.getLogger(__name__)

# Seconds kept for everything after training (rec x2, eval x2, patterns, report) on 2 CPU cores.
AFTER_TRAIN_SECONDS = 100.0
METRICS_BETTER = {"psnr": "higher", "ssim": "higher", "lpips": "lower", "acd": "lower", "ed": "lower",
                  "pr": "higher", "is": "higher", "fid": "lower", "kid": "lower"}  # fmt: skip


def _stage(name: str) -> float:
    log.info("demo: %s", name)
    return time.perf_counter()


def _prepare_check(data_dir: Path, out: Path, names: list[str], aus: tuple[str, ...], backend: str) -> dict:
    """Run `prepare` on some synthetic faces; compare the backend's AUs with the true ones."""
    from .data import load_dataset
    from .data.prepare import PrepareOptions, prepare_dataset

    src = out / "inputs"
    src.mkdir(parents=True, exist_ok=True)
    for n in names:
        target = src / f"{n}.png"
        if not target.exists():
            shutil.copyfile(data_dir / "images" / f"{n}.png", target)
    opts = PrepareOptions(
        au_backend=backend, aus=",".join(aus), test_fraction=0.0, progress=False, resume=True
    )
    summary = prepare_dataset([src], out / "dataset", opts)
    truth = {r.name: r.au for r in load_dataset(data_dir).records}
    got = load_dataset(out / "dataset")
    err = []
    for r in got.records:
        stem = r.name.split("__")[-1]
        if stem in truth and r.au is not None:
            err.append(np.abs(np.asarray(r.au) - truth[stem]))
    e = np.array(err) if err else np.zeros((0, len(aus)))
    return {
        "backend": summary.get("backend", backend),
        "inputs": len(names),
        "faces_found": int(len(got.records)),
        "mae_per_au": {a: float(e[:, k].mean()) if len(e) else None for k, a in enumerate(aus)},
        "mae": float(e.mean()) if len(e) else None,
    }


def run_demo(
    out: str | Path = "demo_out",
    minutes: float = 10.0,
    num: int = 600,
    seed: int = 0,
    preset: str = "small",
    device: str = "auto",
    au_backend: str = "auto",
    fresh: bool = False,
    progress: bool = True,
) -> dict:
    """Run the whole job; returns the summary (also in DIR/demo.json). See the module docstring."""
    from . import load_model
    from .config import get_config
    from .data import load_dataset
    from .faces.synth import write_synthetic_dataset
    from .infer import reconstruct
    from .metrics import AUTable, evaluate
    from .patterns import compute_patterns, write_patterns
    from .report.plots import save_loss_curves, save_rec_grid
    from .train.trainer import Trainer, TrainOptions, list_checkpoints

    out = Path(out)
    if fresh and out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    if minutes <= 0 or num < 20:
        raise CdanError("--minutes must be > 0 and --num at least 20")
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    dev = str(resolve_device(device))

    # 1. synthetic dataset
    t = _stage("synthesising faces")
    data = out / "data"
    if not (data / "aus.csv").is_file():
        write_synthetic_dataset(data, num, seed=seed, resume=(data / ".journal.jsonl").exists())
    index = load_dataset(data)
    test_paths = [r.path for r in index.test]
    timings["synth"] = time.perf_counter() - t

    # 2. the real face pipeline on a sample of faces
    t = _stage("prepare: detect, align and estimate AUs on a sample")
    check_path = out / "prepare_check.json"
    if check_path.is_file():
        prep = json.loads(check_path.read_text())
    else:
        sample = [r.name for r in index.test[:24]]
        try:
            prep = _prepare_check(data, out / "prepare", sample, tuple(index.aus), au_backend)
        except CdanError as e:  # e.g. no face landmarker model: the rest of the demo still runs
            prep = {"error": str(e)}
        write_json_atomic(check_path, prep)
    timings["prepare"] = time.perf_counter() - t

    # 3. training within the budget
    t = _stage("training")
    runs = out / "runs"
    run_dirs = sorted(p for p in runs.iterdir() if p.is_dir()) if runs.is_dir() else []
    budget = max(15.0, minutes * 60 - AFTER_TRAIN_SECONDS - (time.perf_counter() - t_all))
    train_done = run_dirs and (run_dirs[-1] / "train_done.json").is_file()
    if not train_done:
        cfg = get_config(preset, {"model": {"aus": list(index.aus)}, "train": {"steps": 10**6, "seed": seed}})
        opts = TrainOptions(data=str(data), device=device, progress=progress, time_limit=budget)
        if run_dirs and list_checkpoints(run_dirs[-1]):
            trainer = Trainer.resume(run_dirs[-1], device=device, progress=progress)
            trainer.opts.time_limit = budget
        else:
            trainer = Trainer.create(cfg, opts, runs)
        train_summary = trainer.fit()
        write_json_atomic(trainer.run_dir / "train_done.json", train_summary)
        run = trainer.run_dir
    else:
        run = run_dirs[-1]
        train_summary = json.loads((run / "train_done.json").read_text())
    ckpts = list_checkpoints(run)
    first_ckpt, last_ckpt = ckpts[0][1], ckpts[-1][1]
    timings["train"] = time.perf_counter() - t

    # 4-5. reconstruct + evaluate with the first and the last checkpoint
    results = {}
    groups = AUTable(tuple(index.aus), {r.name: r.au for r in index.records})
    for tag, ckpt in (("first", first_ckpt), ("last", last_ckpt)):
        t = _stage(f"rec + eval ({tag} checkpoint: {ckpt.name})")
        model = load_model(ckpt, map_location=dev)
        rec_dir = out / f"rec_{tag}"
        reconstruct(model, test_paths, rec_dir, batch_size=16, device=dev, progress=progress)
        eval_path = out / f"eval_{tag}.json"
        if eval_path.is_file():
            results[tag] = json.loads(eval_path.read_text())
        else:
            res = evaluate(test_paths, rec_dir, aus=index.aus, au_backend=au_backend, groups=groups,
                           device=dev, progress=progress)  # fmt: skip
            res.write_per_image_csv(rec_dir / "eval_per_image.csv")
            results[tag] = res.to_dict()
            write_json_atomic(eval_path, results[tag])
        timings[f"rec_eval_{tag}"] = time.perf_counter() - t

    # 6. patterns with the last checkpoint
    t = _stage("patterns")
    pat_dir = out / "patterns"
    if not (pat_dir / "patterns.json").is_file():
        pat = compute_patterns(load_model(last_ckpt, map_location=dev), index, split="test", device=dev,
                               progress=progress)  # fmt: skip
        write_patterns(pat, pat_dir, extra={"checkpoint": str(last_ckpt)})
    patterns_json = json.loads((pat_dir / "patterns.json").read_text())
    timings["patterns"] = time.perf_counter() - t

    # 7. report
    t = _stage("report")
    figs = out / "figures"
    figs.mkdir(exist_ok=True)
    save_rec_grid(out / "rec_first", figs / "rec_first.png", max_images=8)
    save_rec_grid(out / "rec_last", figs / "rec_last.png", max_images=8)
    if (run / "stats.jsonl").is_file():
        save_loss_curves(run / "stats.jsonl", figs / "loss.png")
    comparison = compare(results["first"], results["last"])
    summary = {
        "out": str(out),
        "run": str(run),
        "dataset": {"faces": len(index.records), "train": len(index.train), "test": len(index.test),
                    "aus": list(index.aus), "labels": sorted({r.label for r in index.records if r.label})},
        "train": train_summary,
        "first_checkpoint": first_ckpt.name,
        "last_checkpoint": last_ckpt.name,
        "metrics": {"first": results["first"], "last": results["last"]},
        "comparison": comparison,
        "learned": bool(comparison["psnr"]["improved"] and comparison["ed"]["improved"]),
        "prepare_check": prep,
        "timings_s": timings,
    }  # fmt: skip
    from .report.demo_report import write_demo_report

    write_demo_report(out / "report.html", summary, patterns_json, figs, pat_dir, run)
    timings["report"] = time.perf_counter() - t
    summary["timings_s"]["total"] = time.perf_counter() - t_all
    write_json_atomic(out / "demo.json", summary)
    return summary


def compare(first: dict, last: dict) -> dict:
    """Per metric: first, last, change, and whether the change goes the better way."""
    out = {}
    for key, better in METRICS_BETTER.items():
        a, b = first.get(key), last.get(key)
        if a is None or b is None:
            out[key] = {"first": a, "last": b, "change": None, "improved": False}
            continue
        change = b - a
        out[key] = {"first": a, "last": b, "change": change,
                    "improved": bool(change > 0 if better == "higher" else change < 0)}  # fmt: skip
    return out
