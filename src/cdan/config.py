"""Configuration dataclasses and presets.

Presets are data (`PRESETS`). Overrides are type-checked and unknown keys are errors, so a typo in a
config file or flag fails loudly instead of being ignored.

Sources of the `paper` defaults: the official release (`models/encoder.py`, `decoder1.py`, `decoder2.py`,
`Discriminator.py`, `cdan.py`, `opt.py`, `solver.py`) as summarised in shared/DESIGN.md.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from .aus import SIX_AUS
from .errors import CdanError


@dataclass
class ModelConfig:
    """The network: encoder, colour decoder, mask decoder with SEA, and the two discriminators."""

    resolution: int = 112  # input/output size in px; resolution/8 must be divisible by sea_block
    in_channels: int = 3  # RGB
    ch: int = 128  # base width; level widths are ch * ch_mult[i] (official: 128)
    ch_mult: tuple[int, ...] = (1, 2, 2, 4)  # width multipliers of the 4 levels (official: 1,2,2,4)
    num_res_blocks: int = 2  # ResBlocks per encoder level (official: 2)
    z_channels: int = 256  # encoder output channels (official: 256)
    embed_dim: int = 256  # quant_conv / post_quant_conv width (official: 256)
    num_groups: int = 32  # GroupNorm groups (official: 32, eps 1e-6)
    sea_block: int = 7  # SEA block size b (official: 7)
    sea_kernel: int = 7  # SEA conv kernel (official: 7x7, 2->1, no bias)
    dis_ndf: int = 64  # discriminator first width (official: 64)
    dis_layers: int = 6  # stride-2 convs per discriminator (official: 6 at 112 px)
    aus: tuple[str, ...] = SIX_AUS  # AU names the AU discriminator regresses, in order (official: 6)
    official_extras: bool = (
        True  # keep the official unused parameters (Up.conv1, decoder2.color_out) for strict loading
    )
    fast: bool = True  # fused SDPA attention and pooled SEA (False: plain reference maths, for checks)

    @property
    def num_aus(self) -> int:
        return len(self.aus)


@dataclass
class LossConfig:
    """Loss weights of the official objective (cdan.py gen_loss / dis_loss)."""

    rec_weight: float = 0.3  # weight of L1(xrec, x) + LPIPS(x, xrec) (official: 3e-1 * nll_loss)
    perceptual: str = "lpips"  # 'lpips' (LPIPS-VGG, official) or 'none'
    perceptual_net: str = "vgg"  # LPIPS backbone (official: vgg)
    adv_g_weight: float = 0.3  # weight of mean relu(1 - D(xrec)) in the G step (official: 3e-1)
    au_g_weight: float = 1.0  # weight of MSE(AU_dis(M*x), au) in the G step (official: 1)
    au_color_weight: float = (
        0.0  # weight of MSE(AU_dis(colour), 0); one official version has 1.0, DESIGN: absent
    )
    tv_weight: float = 2e-5  # squared TV of M*x (official: 2e-5)
    mask_l1_weight: float = 0.1  # mean(M*x), keeps the mask sparse (official: 1e-1)
    adv_d_weight: float = 0.1  # hinge loss weight in the D step (official: 1e-1)
    au_d_weight: float = (
        1.0  # MSE(AU_dis(x), au) weight in the D step (DESIGN; the released code multiplies by 0)
    )


@dataclass
class TrainConfig:
    """Optimisation and run bookkeeping (official defaults from opt.py / solver.py / DESIGN)."""

    lr: float = 2.25e-5  # Adam learning rate for G and both D (official: 2.25e-5)
    beta1: float = 0.5  # Adam beta1 (official: 0.5)
    beta2: float = 0.999  # Adam beta2 (official: 0.999)
    batch_size: int = 12  # images per step per process (official: 12)
    epochs: int = 100  # passes over the training split (DESIGN: 100)
    steps: int = 0  # if > 0, overrides epochs: total iterations
    num_iters: int = 2  # a G step every num_iters iterations (official: 2)
    seed: int = 0  # seeds python, numpy and torch (+ rank)
    log_every: int = 10  # iterations between stats.jsonl lines
    sample_every: int = 200  # iterations between sample grids
    ckpt_every: int = 500  # iterations between checkpoints
    keep_last: int = 3  # checkpoints kept on disk
    max_bad_steps: int = 5  # consecutive non-finite losses before the run stops
    amp: str = "auto"  # 'auto' (bf16 on CUDA), 'bf16' or 'none'


@dataclass
class Config:
    """Everything a run needs. Stored in the run directory and in every checkpoint."""

    preset: str = "paper"  # the preset this config started from
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


# Presets as data: overrides applied on top of the defaults (which are the official values).
PRESETS: dict[str, dict[str, Any]] = {
    # The official network, parameter for parameter.
    "paper": {},
    # Same design, 1/16 of the width^2 (about 1/14 of the paper FLOPs), for CPU training.
    "small": {
        "model": {
            "ch": 32,
            "z_channels": 64,
            "embed_dim": 64,
            "num_groups": 16,
            "dis_ndf": 16,
            "official_extras": False,
        },
        "loss": {"perceptual": "none"},
        "train": {"lr": 2e-4, "batch_size": 8, "steps": 2000, "ckpt_every": 250, "sample_every": 250},
    },  # fmt: skip
    # For tests: 56 px, narrow G; 4-layer discriminators (a 5-6 layer PatchGAN needs far more steps to learn AUs).
    "tiny": {
        "model": {
            "resolution": 56,
            "ch": 8,
            "z_channels": 16,
            "embed_dim": 16,
            "num_groups": 4,
            "dis_ndf": 32,
            "dis_layers": 4,
            "official_extras": False,
        },
        "loss": {"perceptual": "none"},
        "train": {
            "lr": 5e-4,
            "batch_size": 4,
            "steps": 50,
            "log_every": 5,
            "ckpt_every": 25,
            "sample_every": 25,
        },
    },  # fmt: skip
}


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check/convert `value` to annotation `tp` (int, float, str, bool, tuple[...], nested dataclass)."""
    origin = typing.get_origin(tp)
    if origin is tuple:
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise CdanError(f"config {where}: expected a list, got {value!r}")
        (elem, *_rest) = typing.get_args(tp)
        return tuple(_coerce(v, elem, where) for v in value)
    if origin in (types.UnionType, typing.Union):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _coerce(value, args[0], where)
    if tp is bool:
        if isinstance(value, str) and value.lower() in ("1", "true", "yes", "0", "false", "no"):
            return value.lower() in ("1", "true", "yes")
        if not isinstance(value, bool):
            raise CdanError(f"config {where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int | str | float):
            raise CdanError(f"config {where}: expected an integer, got {value!r}")
        try:
            f = float(value)
        except ValueError:
            raise CdanError(f"config {where}: expected an integer, got {value!r}") from None
        if f != int(f):
            raise CdanError(f"config {where}: expected an integer, got {value!r}")
        return int(f)
    if tp is float:
        try:
            return float(value)
        except (TypeError, ValueError):
            raise CdanError(f"config {where}: expected a number, got {value!r}") from None
    if tp is str:
        if not isinstance(value, str):
            raise CdanError(f"config {where}: expected a string, got {value!r}")
        return value
    return value


def _apply(obj: Any, overrides: dict[str, Any], where: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for key, value in overrides.items():
        path = f"{where}{key}"
        if key not in names:
            raise CdanError(f"unknown config key {path!r} (known: {', '.join(sorted(names))})")
        current = getattr(obj, key)
        if dataclasses.is_dataclass(current):
            if not isinstance(value, dict):
                raise CdanError(f"config {path}: expected a section, got {value!r}")
            _apply(current, value, path + ".")
        else:
            setattr(obj, key, _coerce(value, hints[key], path))


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def get_config(preset: str = "paper", overrides: dict[str, Any] | None = None) -> Config:
    """A Config from a preset name plus nested overrides ({'model': {'ch': 64}}). Unknown keys are errors."""
    if preset not in PRESETS:
        raise CdanError(f"unknown preset {preset!r}: choose one of {', '.join(PRESETS)}")
    cfg = Config(preset=preset)
    _apply(cfg, _merge(PRESETS[preset], overrides or {}))
    validate(cfg)
    return cfg


def parse_dotted(items: list[str]) -> dict[str, Any]:
    """['model.ch=64', 'train.lr=1e-4'] -> {'model': {'ch': '64'}, 'train': {'lr': '1e-4'}} (typed later)."""
    out: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise CdanError(f"override {item!r} must look like section.key=value")
        key, value = item.split("=", 1)
        node = out
        *parents, leaf = key.strip().split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    return out


def config_from_dict(d: dict[str, Any]) -> Config:
    """Rebuild a Config stored in a checkpoint or run directory (strict: unknown keys are errors)."""
    d = dict(d)
    preset = d.pop("preset", "paper")
    cfg = Config(preset=preset)
    _apply(cfg, d)
    validate(cfg)
    return cfg


def validate(cfg: Config) -> None:
    m = cfg.model
    if len(m.ch_mult) != 4:
        raise CdanError("model.ch_mult must have 4 levels (the official codec has 4 resolutions)")
    if m.resolution % 8 or (m.resolution // 8) % m.sea_block:
        raise CdanError(
            f"model.resolution={m.resolution}: resolution/8 must be divisible by sea_block={m.sea_block}"
        )
    for width in {m.ch * k for k in m.ch_mult}:
        if width % m.num_groups:
            raise CdanError(f"model width {width} is not divisible by num_groups={m.num_groups}")
    if m.resolution // 2**m.dis_layers < 1:
        raise CdanError(f"model.dis_layers={m.dis_layers} is too deep for {m.resolution} px")
    if cfg.loss.perceptual not in ("lpips", "none"):
        raise CdanError("loss.perceptual must be 'lpips' or 'none'")
    if cfg.train.num_iters < 1 or cfg.train.batch_size < 1:
        raise CdanError("train.num_iters and train.batch_size must be >= 1")
