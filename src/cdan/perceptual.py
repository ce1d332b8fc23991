"""LPIPS (the `lpips` package) with its ImageNet backbone taken from a local file, never downloaded.

The `lpips` package ships its calibrated linear layers but fetches the VGG16/AlexNet backbone from the
torchvision hub on first use. Offline, we build the backbone randomly and fill it from a file:
`weights_path`, else `$TORCH_HOME/hub/checkpoints/<torchvision file name>`. When neither exists, a
MissingWeightsError names the expected file.
"""

from __future__ import annotations

import os
from pathlib import Path

from .errors import CdanError, MissingWeightsError

# torchvision's file names for the ImageNet weights the backbones use.
BACKBONE_FILES = {"vgg": "vgg16-397923af.pth", "alex": "alexnet-owt-7be5be79.pth"}
# lpips slices: torchvision `features` index ranges per slice.
_SLICES = {
    "vgg": [range(0, 4), range(4, 9), range(9, 16), range(16, 23), range(23, 30)],
    "alex": [range(0, 2), range(2, 5), range(5, 8), range(8, 10), range(10, 12)],
}


def torch_hub_checkpoints() -> Path:
    """`$TORCH_HOME/hub/checkpoints` (TORCH_HOME defaults to ~/.cache/torch), where torch looks for weights."""
    home = os.environ.get("TORCH_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch"
    )
    return Path(home) / "hub" / "checkpoints"


def find_backbone_weights(net: str = "vgg", weights_path: str | os.PathLike | None = None) -> Path:
    """The backbone weights file for LPIPS-`net`, or MissingWeightsError naming what to provide."""
    if net not in BACKBONE_FILES:
        raise CdanError(f"LPIPS backbone {net!r} is not supported (use vgg or alex)")
    if weights_path is not None:
        p = Path(weights_path)
        if not p.is_file():
            raise MissingWeightsError(f"LPIPS weights file not found: {p}")
        return p
    p = torch_hub_checkpoints() / BACKBONE_FILES[net]
    if not p.is_file():
        raise MissingWeightsError(
            f"LPIPS-{net} needs the torchvision ImageNet weights {BACKBONE_FILES[net]} "
            f"(https://download.pytorch.org/models/{BACKBONE_FILES[net]}): put it at {p} or pass its path "
            f"(--lpips-weights); training can skip LPIPS with --perceptual none"
        )
    return p


def load_lpips(net: str = "vgg", weights_path: str | os.PathLike | None = None):
    """An eval-mode, frozen `lpips.LPIPS(net)` whose backbone is loaded from a local torchvision state dict."""
    import contextlib
    import io
    import warnings

    import lpips
    import torch

    path = find_backbone_weights(net, weights_path)
    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # lpips prints a banner
        warnings.simplefilter("ignore")
        model = lpips.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    try:
        sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise CdanError(f"cannot read LPIPS backbone weights {path}: {e}") from None
    mapped = {}
    for s, idx in enumerate(_SLICES[net], start=1):
        for i in idx:
            for kind in ("weight", "bias"):
                key = f"features.{i}.{kind}"
                if key in sd:
                    mapped[f"slice{s}.{i}.{kind}"] = sd[key]
    missing, unexpected = model.net.load_state_dict(mapped, strict=False)
    if missing or not mapped:
        raise CdanError(f"{path} is not a torchvision {net} state dict (missing {missing[:3]})")
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
