"""`cdan synth`: write the embedded synthetic face dataset (procedural faces with known AUs)."""

from __future__ import annotations

import argparse
import json
import logging

from ..aus import au_set

NAME = "synth"
HELP = "draw a synthetic face dataset with known AU intensities (no download)"
DESCRIPTION = (
    "Draw procedural faces (varied identities, expression classes with prototypical AU patterns) into the "
    "dataset layout that `cdan prepare` writes: images/*.png, aus.csv, manifest.json. The same seed gives "
    "byte-identical files."
)
ORDER = 15

log = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", required=True, help="dataset folder to create (must be new or empty)")
    parser.add_argument("--num", type=int, default=1000, help="number of faces")
    parser.add_argument("--seed", type=int, default=0, help="random seed (faces and split)")
    parser.add_argument(
        "--aus",
        default="six",
        help="AU set: 'six' (official AU01,04,06,12,15,25), 'all' (17) or a comma list",
    )
    parser.add_argument("--size", type=int, default=112, help="image side in pixels")
    parser.add_argument("--per-identity", type=int, default=6, help="expressions drawn per synthetic person")
    parser.add_argument(
        "--test-fraction", type=float, default=0.2, help="share of identities in the test split"
    )
    parser.add_argument(
        "--legacy-pkl", default=None, help="also write the official {name: float64[K]} pickle"
    )
    parser.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")


def run(args: argparse.Namespace) -> int:
    from ..faces.synth import write_synthetic_dataset

    aus = au_set(args.aus)
    manifest = write_synthetic_dataset(
        args.out,
        num=args.num,
        seed=args.seed,
        aus=aus,
        size=args.size,
        per_identity=args.per_identity,
        test_fraction=args.test_fraction,
        resume=args.resume,
        legacy_pkl=args.legacy_pkl,
        options={"aus": args.aus, "test_fraction": args.test_fraction},
    )
    if args.json:
        print(json.dumps(manifest, indent=2, sort_keys=True))
    else:
        c = manifest["counts"]
        labels = ", ".join(f"{k} {v}" for k, v in manifest["labels"].items())
        print(f"wrote {c['written']} faces to {args.out} (train {c['train']}, test {c['test']}; {labels})")
    return 0
