"""`cdan convert-official CDAN.pth OUT.safetensors`."""

from __future__ import annotations

import argparse
import json

NAME = "convert-official"
HELP = "convert the official CDAN.pth into a cdan safetensors checkpoint"
ORDER = 80


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="the official checkpoint (CDAN.pth), read with torch.load(weights_only=True)")
    p.add_argument("dst", help="output .safetensors path")
    p.add_argument("--json", action="store_true", help="print a JSON summary")


def run(args: argparse.Namespace) -> int:
    from ..errors import CdanError
    from ..models.checkpoint import convert_official, load_model

    if not str(args.dst).endswith(".safetensors"):
        raise CdanError("the output path must end with .safetensors")
    out = convert_official(args.src, args.dst)
    model = load_model(out)
    n = sum(p.numel() for p in model.parameters())
    summary = {"out": str(out), "parameters": n, "aus": list(model.config.aus)}
    print(
        json.dumps(summary)
        if args.json
        else f"wrote {out} ({n:,} parameters, AUs {', '.join(model.config.aus)})"
    )
    return 0
