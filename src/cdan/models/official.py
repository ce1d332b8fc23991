"""Reading the official release's `CDAN.pth` (a pickled `state_dict()` of its CDAN module).

The file is read with `torch.load(weights_only=True)`, so no code in it can run. Frozen LPIPS entries
(`perceptual_loss.*`) are dropped, a DataParallel `module.` prefix is stripped, and every remaining name and
shape must match the `paper` preset exactly.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import torch

from ..aus import ALL_AUS, SIX_AUS
from ..config import get_config
from ..errors import CdanError

log = logging.getLogger(__name__)

IGNORED_PREFIXES = ("perceptual_loss.",)


def read_official_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The official checkpoint's tensors (CPU), without LPIPS entries and without a `module.` prefix."""
    path = Path(path)
    if not path.is_file():
        raise CdanError(f"checkpoint not found: {path}")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # corrupt file, or a pickle that needs code to load
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CdanError(f"cannot read {path} as a weights-only torch checkpoint: {first}") from None
    for key in ("state_dict", "model", "cdan"):
        if isinstance(obj, Mapping) and key in obj and isinstance(obj[key], Mapping):
            obj = obj[key]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CdanError(f"{path} does not hold a state dict of tensors")
    out: dict[str, torch.Tensor] = {}
    dropped = 0
    for name, tensor in obj.items():
        name = name.removeprefix("module.")
        if name.startswith(IGNORED_PREFIXES):
            dropped += 1
            continue
        out[name] = tensor
    log.debug("read %d tensors from %s, dropped %d LPIPS entries", len(out), path, dropped)
    return out


def check_state_dict(
    expected: Mapping[str, torch.Tensor], got: Mapping[str, torch.Tensor], source: str
) -> None:
    """Raise one CdanError naming missing keys, unexpected keys and shape clashes (first few of each)."""
    missing = sorted(set(expected) - set(got))
    unexpected = sorted(set(got) - set(expected))
    clashes = [
        f"{k}: checkpoint {tuple(got[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in got and tuple(got[k].shape) != tuple(expected[k].shape)
    ]
    if not (missing or unexpected or clashes):
        return

    def few(items: list[str]) -> str:
        return ", ".join(items[:5]) + (f" (+{len(items) - 5} more)" if len(items) > 5 else "")

    parts = []
    if missing:
        parts.append(f"{len(missing)} missing: {few(missing)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected: {few(unexpected)}")
    if clashes:
        parts.append(f"{len(clashes)} shape clashes: {few(clashes)}")
    raise CdanError(f"{source} does not match the model: " + "; ".join(parts))


def load_official(path: str | Path):
    """Build the `paper` preset and load the official checkpoint into it strictly. Returns the model (eval mode)."""
    from . import build_model

    sd = read_official_state_dict(path)
    head = sd.get("AU_dis.aus_top.weight")
    k = int(head.shape[0]) if head is not None else len(SIX_AUS)
    aus = {len(SIX_AUS): SIX_AUS, len(ALL_AUS): ALL_AUS}.get(k)
    if aus is None:
        raise CdanError(f"{path}: AU head has {k} outputs; expected 6 (official) or 17 (all OpenFace AUs)")
    cfg = get_config("paper", {"model": {"aus": list(aus)}})
    model = build_model(cfg)
    check_state_dict(model.state_dict(), sd, str(path))
    model.load_state_dict(sd, strict=True)
    return model.eval()
