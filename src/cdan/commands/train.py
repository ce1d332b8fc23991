"""`cdan train --data DATASET --out RUNS`: learn the codec with the official objective.

The official `main.py` flags are accepted as aliases (`--images_dir --pkl_dir --save_check --save_rec
--batch_size --image_size --epochs --learning_rate --au --num_iters --mode train|rec`).
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

NAME = "train"
HELP = "train CDAN on a prepared dataset (CPU, one GPU, or many GPUs with torchrun)"
ORDER = 20
DESCRIPTION = (
    "Train CDAN. Multi-GPU: torchrun --nproc_per_node N -m cdan train ... "
    "Official main.py flags are accepted as aliases."
)


def _preset_values(configs: dict, section: str, key: str) -> str:
    """'paper X, small Y, tiny Z' for a config field, so --help shows what each preset uses."""
    vals = []
    for preset, cfg in configs.items():
        v = getattr(getattr(cfg, section), key)
        vals.append(f"{preset} {v:g}" if isinstance(v, float) else f"{preset} {v}")
    return "default from the preset: " + ", ".join(vals)


# Flags that set a config field: (flags, dest, type, config section, config key, help). Their default comes
# from the preset, so argparse keeps them absent (SUPPRESS) and --help names each preset's value instead.
CONFIG_FLAGS = [
    (("--steps",), "steps", int, "train", "steps", "total iterations, overrides epochs (0: use epochs)"),
    (("--epochs",), "epochs", int, "train", "epochs", "passes over the training split"),
    (("--batch-size", "--batch_size"), "batch_size", int, "train", "batch_size", "images per step per process"),
    (("--lr", "--learning_rate"), "lr", float, "train", "lr", "Adam learning rate for G and D"),
    (("--num-iters", "--num_iters"), "num_iters", int, "train", "num_iters", "a G step every N iterations"),
    (("--image-size", "--image_size"), "image_size", int, "model", "resolution", "network resolution"),
    (("--perceptual",), "perceptual", str, "loss", "perceptual", "reconstruction perceptual term: lpips or none"),
    (("--seed",), "seed", int, "train", "seed", "random seed"),
]  # fmt: skip


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--data",
        "--images_dir",
        dest="data",
        default=None,
        help="dataset folder (cdan layout, or crops + legacy pickle); required unless --resume",
    )
    p.add_argument(
        "--pkl", "--pkl_dir", dest="pkl", default=None, help="legacy AU pickle for a folder of crops"
    )
    p.add_argument(
        "--out",
        "--save_check",
        dest="out",
        default="runs",
        help="parent folder of numbered run directories (with --mode rec: the checkpoint)",
    )
    p.add_argument("--resume", default=None, metavar="RUN", help="continue this run directory exactly")
    p.add_argument(
        "--preset", default="paper", choices=["paper", "small", "tiny"], help="network and defaults"
    )
    from ..config import get_config

    configs = {preset: get_config(preset) for preset in ("paper", "small", "tiny")}
    for flags, dest, typ, section, key, text in CONFIG_FLAGS:
        choices = ["lpips", "none"] if dest == "perceptual" else None
        p.add_argument(
            *flags,
            dest=dest,
            type=typ,
            choices=choices,
            default=argparse.SUPPRESS,
            help=f"{text}; {_preset_values(configs, section, key)}",
        )
    p.add_argument(
        "--au",
        type=int,
        default=None,
        help="number of AUs (official flag: 6 or 17); must match the dataset's",
    )
    p.add_argument(
        "--lpips-weights",
        default=None,
        help="torchvision vgg16-397923af.pth for LPIPS (else the torch hub cache)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="any config override, repeatable (e.g. loss.tv_weight=1e-4)",
    )
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    p.add_argument(
        "--mode",
        choices=["train", "rec"],
        default="train",
        help="official alias: rec reconstructs --images_dir",
    )
    p.add_argument("--save_rec", default=None, help="official alias: output folder for --mode rec")  # fmt: skip


def _overrides(args: argparse.Namespace) -> dict:
    """Nested config overrides from the flags that were given, then --set."""
    from ..config import _merge, parse_dotted

    o: dict = {"model": {}, "loss": {}, "train": {}}
    for _flags, dest, _typ, section, key, _text in CONFIG_FLAGS:
        if getattr(args, dest) is not None:
            o[section][key] = getattr(args, dest)
    if args.epochs is not None and args.steps is None:
        o["train"]["steps"] = 0  # epochs given: let them count
    return _merge(o, parse_dotted(args.set))


def run(args: argparse.Namespace) -> int:
    for _flags, dest, *_ in CONFIG_FLAGS:  # default=SUPPRESS: absent means "not given"
        if not hasattr(args, dest):
            setattr(args, dest, None)
    from ..config import get_config
    from ..errors import CdanError
    from ..train.trainer import TrainOptions, run_training

    if args.mode == "rec":  # official: main.py --mode rec --images_dir D --save_check CKPT --save_rec OUT
        from ..infer import reconstruct
        from ..models.checkpoint import load_model
        from ..utils import resolve_device

        if not (args.data and args.save_rec):
            raise CdanError("--mode rec needs --images_dir DIR, --save_check CHECKPOINT and --save_rec OUT")
        device = resolve_device(args.device)
        summary = reconstruct(
            load_model(args.out, map_location=device), args.data, args.save_rec, device=device
        )
        print(json.dumps(summary, default=str) if args.json else f"wrote reconstructions to {args.save_rec}")
        return 0
    if args.resume:
        summary = run_training(None, TrainOptions(device=args.device, progress=not args.no_progress), None,
                               Path(args.resume), steps_override=args.steps)  # fmt: skip
    else:
        if not args.data:
            raise CdanError("--data DATASET is required (or --resume RUN)")
        over = _overrides(args)
        from ..data import load_dataset

        index = load_dataset(args.data, pkl=args.pkl)
        over["model"].setdefault("aus", list(index.aus))
        if args.au is not None and args.au != len(index.aus):
            raise CdanError(
                f"--au {args.au} but the dataset has {len(index.aus)} AUs ({','.join(index.aus)})"
            )
        cfg = get_config(args.preset, over)
        opts = TrainOptions(data=str(args.data), pkl=args.pkl, device=args.device,
                            lpips_weights=args.lpips_weights, progress=not args.no_progress)  # fmt: skip
        summary = run_training(cfg, opts, Path(args.out), None)
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun only rank 0 reports
        pass
    elif args.json:
        print(json.dumps(summary))
    else:
        print(f"{summary['status']}: {summary['run']} at step {summary['step']}/{summary['total_steps']}")
    return 0 if summary["status"] != "diverged" else 1
