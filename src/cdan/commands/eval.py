"""`cdan eval`: IS, FID, KID, ACD, ED, PSNR, SSIM, LPIPS and PR between real images and generated ones."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from ..errors import CdanError

NAME = "eval"
HELP = "evaluate reconstructions: IS, FID, KID, ACD, ED, PSNR, SSIM, LPIPS, PR"
DESCRIPTION = (
    "Pair real and generated images by file stem (a `cdan rec` folder works: <stem>_xrec.png is the fake) "
    "and compute the paper's metrics plus PSNR/SSIM/LPIPS. Metrics that cannot run offline (missing weights, "
    "no AU groups...) are reported as unavailable with the reason; the others still run. Prints a Markdown "
    "table (or JSON with --json) and writes one CSV row per pair."
)
ORDER = 50

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    from ..metrics import ALL_METRICS
    from ..metrics.acd import BOX_MODES

    p.add_argument(
        "--real", type=Path, metavar="DIR", help="folder of real images (none: --data's test split)"
    )
    p.add_argument(
        "--fake",
        type=Path,
        metavar="DIR",
        required=True,
        help="folder of generated images or `cdan rec` output",
    )
    p.add_argument(
        "--data",
        type=Path,
        metavar="DATASET",
        help="dataset folder (aus.csv, or crops + legacy pickle): AU groups for PR, real images if no --real",
    )
    p.add_argument("--metrics", default=",".join(ALL_METRICS), help="comma list of metrics to compute")
    p.add_argument("--aus", default="six", help="AUs for ED: six, all, or a comma list such as AU01,AU12")
    p.add_argument("--au-backend", default="auto", help="AU backend for ED (see `cdan prepare --help`)")
    p.add_argument(
        "--openface-csv-real",
        type=Path,
        metavar="DIR",
        help="ED from OpenFace CSVs: folder for the real images",
    )
    p.add_argument(
        "--openface-csv-fake", type=Path, metavar="DIR", help="ED from OpenFace CSVs: folder for the fakes"
    )
    p.add_argument(
        "--inception-weights",
        type=Path,
        metavar="PATH",
        help="torch-fidelity InceptionV3 weights; none: $TORCH_HOME/hub/checkpoints/"
        "weights-inception-2015-12-05-6726825d.pth",
    )
    p.add_argument(
        "--lpips-weights",
        type=Path,
        metavar="PATH",
        help="torchvision backbone weights for LPIPS; none: $TORCH_HOME/hub/checkpoints/vgg16-397923af.pth "
        "(or alexnet-owt-7be5be79.pth)",
    )
    p.add_argument("--lpips-net", choices=("vgg", "alex"), default="vgg", help="LPIPS backbone")
    p.add_argument(
        "--acd-box",
        choices=BOX_MODES,
        default="own",
        help="ACD face boxes: own = detect on each image (official), real = reuse the real image's box on "
        "the fake, whole = whole image",
    )
    p.add_argument(
        "--mask-dir",
        type=Path,
        metavar="DIR",
        help="parsed images for PR (<stem>_mask_input.png or <stem>.png)",
    )
    p.add_argument("--pr-threshold", type=float, default=1.0, help="PR: an AU is active when >= this (0-5)")
    p.add_argument(
        "--pr-official-bug",
        action="store_true",
        help="PR: reproduce the official PR.py bug in the inactive group (for comparing with its numbers)",
    )
    p.add_argument(
        "--is-splits", type=int, default=10, help="IS: number of splits (capped at the pair count)"
    )
    p.add_argument("--kid-subsets", type=int, default=100, help="KID: number of random subsets")
    p.add_argument("--batch-size", type=int, default=32, help="pairs per batch (results do not depend on it)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument(
        "--out-csv", type=Path, metavar="PATH", help="per-image CSV; none: <fake>/eval_per_image.csv"
    )
    p.add_argument("--json", action="store_true", help="print one JSON object instead of the Markdown table")


def run(args: argparse.Namespace) -> int:
    from ..aus import au_set
    from ..metrics import AUTable, evaluate

    if not args.fake.is_dir():
        raise CdanError(f"--fake: not a folder: {args.fake}")
    if args.real is None and args.data is None:
        raise CdanError("give --real DIR, or --data DATASET to use its test images")
    groups = None
    real = args.real
    if args.data is not None:
        from ..data import load_dataset

        index = load_dataset(args.data)
        groups = AUTable(tuple(index.aus), {r.name: r.au for r in index.records})
        if real is None:
            real = [r.path for r in (index.test or index.records)]
    result = evaluate(
        real,
        args.fake,
        metrics=args.metrics,
        batch_size=args.batch_size,
        device=args.device,
        aus=au_set(args.aus),
        au_backend=args.au_backend,
        inception_weights=args.inception_weights,
        lpips_weights=args.lpips_weights,
        lpips_net=args.lpips_net,
        openface_csv_real=args.openface_csv_real,
        openface_csv_fake=args.openface_csv_fake,
        mask_dir=args.mask_dir,
        groups=groups,
        pr_threshold=args.pr_threshold,
        pr_official_bug=args.pr_official_bug,
        acd_box=args.acd_box,
        is_splits=args.is_splits,
        kid_subsets=args.kid_subsets,
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, default=str))
    else:
        print(result.markdown(), end="")
    csv_path = args.out_csv or args.fake / "eval_per_image.csv"
    try:
        result.write_per_image_csv(csv_path)
    except OSError as e:
        raise CdanError(f"cannot write the per-image CSV {csv_path}: {e.strerror} (use --out-csv)") from None
    log.info("per-image results: %s", csv_path)
    return 0
