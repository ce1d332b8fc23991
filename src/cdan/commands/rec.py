"""`cdan rec`: write each face's reconstruction and its four parsing maps."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

NAME = "rec"
HELP = "reconstruct faces and write their parsing maps (xrec, mask, masked input, colour)"
DESCRIPTION = (
    "For every image write <stem>_xrec, _mask_map (grey), _mask_input, _mask_color (clamped to [0,1]) and "
    "_color_map ((C+1)/2) as separate files, plus index.csv and rec.json. Inputs are resized to the model "
    "resolution (bilinear, antialiased). Images already done are skipped unless --overwrite."
)
ORDER = 40

log = logging.getLogger(__name__)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--checkpoint",
        required=True,
        type=Path,
        help="a run directory (its latest checkpoint), a cdan .safetensors file, or the official CDAN.pth",
    )
    p.add_argument("--images", type=Path, help="a folder of images (png/jpg/jpeg/bmp/webp) or one image")
    p.add_argument("--data", type=Path, help="a dataset folder: reconstruct its --split (when no --images)")
    p.add_argument("--pkl", type=Path, help="legacy AU pickle, for a dataset in the official layout")
    p.add_argument(
        "--split", choices=("test", "train", "all"), default="test", help="which split of --data to use"
    )
    p.add_argument("--out", required=True, type=Path, help="output folder")
    p.add_argument("--batch-size", type=int, default=16, help="images per forward pass")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--format", choices=("png", "jpg"), default="png", help="file format of the maps")
    p.add_argument("--recursive", action="store_true", help="also take images in subfolders of --images")
    p.add_argument("--overwrite", action="store_true", help="redo images whose outputs already exist")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")


def dataset_sources(data: Path, split: str, pkl: Path | None = None) -> list[Path]:
    """The image paths of a dataset's split ('test', 'train' or 'all'). CdanError when it is empty."""
    from ..data import load_dataset
    from ..errors import CdanError

    index = load_dataset(data, pkl=pkl)
    records = index.records if split == "all" else [r for r in index.records if r.split == split]
    if not records:
        raise CdanError(f"dataset {data} has no {split} faces (try --split all)")
    return [r.path for r in records]


def run(args: argparse.Namespace) -> int:
    from ..errors import CdanError
    from ..infer import reconstruct
    from ..models.checkpoint import load_model
    from ..utils import resolve_device

    if args.images is not None and args.data is not None:
        raise CdanError("give either --images or --data, not both")
    if args.images is None and args.data is None:
        raise CdanError("give --images DIR, or --data DATASET to reconstruct its test split")
    if args.batch_size < 1:
        raise CdanError("--batch-size must be at least 1")
    sources = args.images if args.images is not None else dataset_sources(args.data, args.split, args.pkl)
    device = resolve_device(args.device)
    model = load_model(args.checkpoint, map_location=device)
    extra = {"checkpoint": str(args.checkpoint)}
    if args.data is not None:
        extra |= {"data": str(args.data), "split": args.split}
    summary = reconstruct(
        model,
        sources,
        args.out,
        batch_size=args.batch_size,
        device=device,
        image_format=args.format,
        recursive=args.recursive,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        extra_summary=extra,
    )
    if args.json:
        print(json.dumps(summary))
    else:
        line = (
            f"rec: {summary['written']} written, {summary['existing']} already done, "
            f"{summary['skipped']} skipped of {summary['images']} image(s) -> {summary['out']} "
            f"({summary['resolution']} px, {summary['img_per_s'] or 0:.1f} img/s)"
        )
        print(line)
    return 0 if summary["written"] + summary["existing"] > 0 or summary["images"] == 0 else 1
