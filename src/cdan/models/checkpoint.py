"""Our checkpoints: safetensors weights with the full config and AU list as metadata.

Loading rebuilds the model from the stored config, so a checkpoint is self-describing. Nothing is unpickled.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from .. import __version__
from ..config import config_from_dict
from ..errors import CdanError
from ..utils import atomic_path

FORMAT = "cdan-safetensors-v1"
CKPT_RE = re.compile(r"^step_(\d+)\.safetensors$")


def save_model(model, path: str | Path, extra: dict | None = None) -> Path:
    """Write model weights + config metadata atomically to `path` (.safetensors)."""
    from safetensors.torch import save_file

    cfg = getattr(model, "run_config", None)
    if cfg is None:
        raise ValueError("model has no run_config; build it with cdan.build_model")
    meta = {
        "format": FORMAT,
        "cdan_version": __version__,
        "config": cfg.to_json(),
        "aus": json.dumps(list(cfg.model.aus)),
        "extra": json.dumps(extra or {}),
    }
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def read_metadata(path: str | Path) -> dict:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = f.metadata() or {}
    except Exception as e:
        raise CdanError(f"cannot read {path} as safetensors: {e}") from None
    if meta.get("format") != FORMAT:
        raise CdanError(f"{path} is a safetensors file but not a cdan checkpoint (no cdan metadata)")
    return meta


def find_latest_checkpoint(run_dir: str | Path) -> Path:
    """The newest `checkpoints/step_N.safetensors` of a run directory (highest N)."""
    ckdir = Path(run_dir) / "checkpoints"
    found = []
    if ckdir.is_dir():
        for p in ckdir.iterdir():
            m = CKPT_RE.match(p.name)
            if m:
                found.append((int(m.group(1)), p))
    if not found:
        raise CdanError(f"no checkpoint in {ckdir} (expected step_N.safetensors)")
    return max(found)[1]


def load_model(path: str | Path, map_location: str | torch.device = "cpu"):
    """Load a model from a run directory, one of our .safetensors files, or the official CDAN.pth.

    Returns the model in eval mode on `map_location`.
    """
    from safetensors.torch import load_file

    from . import build_model
    from .official import check_state_dict, load_official

    path = Path(path)
    if path.is_dir():
        path = find_latest_checkpoint(path)
    if not path.exists():
        raise CdanError(f"checkpoint not found: {path}")
    if path.suffix != ".safetensors":
        return load_official(path).to(map_location)
    meta = read_metadata(path)
    cfg = config_from_dict(json.loads(meta["config"]))
    model = build_model(cfg)
    sd = load_file(str(path), device="cpu")
    check_state_dict(model.state_dict(), sd, str(path))
    model.load_state_dict(sd, strict=True)
    return model.to(map_location).eval()


def convert_official(src: str | Path, dst: str | Path) -> Path:
    """Official CDAN.pth -> our safetensors checkpoint (paper preset)."""
    from .official import load_official

    model = load_official(src)
    return save_model(model, dst, extra={"converted_from": Path(src).name})
