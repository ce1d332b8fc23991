"""`cdan patterns`: mean parsing masks per AU (active vs inactive) and per class, with the PR check."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

NAME = "patterns"
HELP = "global expression patterns: mean masks per AU active/inactive and per class, plus PR"
DESCRIPTION = (
    "Run the model over a dataset split and average its mask maps over the faces where each AU is active "
    "(intensity >= --threshold) and where it is not, and per class label. Writes patterns.png (heatmaps over "
    "the mean face), au_<AU>_{active,inactive,diff}.png, class_<label>.png, patterns.json (counts, mean "
    "mask values, PR per AU) and patterns.npz (raw maps). An empty group is reported as n/a."
)
ORDER = 45


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        required=True,
        type=Path,
        help="a run directory (its latest checkpoint), a cdan .safetensors file, or the official CDAN.pth",
    )
    p.add_argument(
        "--data", required=True, type=Path, help="dataset folder (aus.csv, or crops + legacy pickle)"
    )
    p.add_argument("--pkl", type=Path, help="legacy AU pickle, for a dataset in the official layout")
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--split", choices=("test", "train", "all"), default="test", help="which faces to use")
    p.add_argument(
        "--threshold",
        type=float,
        default=1.0,
        help="an AU is active when its 0-5 intensity is >= this (1.0: OpenFace's presence threshold)",
    )
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print patterns.json to stdout")


def run(args: argparse.Namespace) -> int:
    from ..data import load_dataset
    from ..models.checkpoint import load_model
    from ..patterns import compute_patterns, pr_line, select_records, write_patterns
    from ..utils import resolve_device

    index = load_dataset(args.data, pkl=args.pkl)
    select_records(index, args.split)  # fail early, before loading the model
    device = resolve_device(args.device)
    model = load_model(args.checkpoint, map_location=device)
    result = compute_patterns(
        model,
        index,
        split=args.split,
        threshold=args.threshold,
        batch_size=args.batch_size,
        device=device,
        progress=not args.no_progress,
    )
    summary = write_patterns(
        result, args.out, extra={"checkpoint": str(args.checkpoint), "data": str(args.data)}
    )
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"patterns: {summary['faces']} faces ({args.split} split) -> {Path(args.out) / 'patterns.png'}; "
            f"PR per AU: {pr_line(summary)}"
        )
    return 0
