"""CDAN networks built from a ModelConfig."""

from __future__ import annotations

from ..config import Config, ModelConfig, get_config
from .codec import CDAN, CDANOutput

__all__ = ["CDAN", "CDANOutput", "build_model", "resolve_config"]


def resolve_config(preset_or_config: str | Config | ModelConfig = "paper", **overrides) -> Config:
    """A full Config from a preset name, a Config or a ModelConfig (model overrides as keywords)."""
    if isinstance(preset_or_config, str):
        return get_config(preset_or_config, {"model": overrides} if overrides else None)
    if isinstance(preset_or_config, ModelConfig):
        cfg = Config(preset="custom", model=preset_or_config)
    else:
        cfg = preset_or_config
    if overrides:
        from ..config import _apply, validate

        _apply(cfg.model, overrides, "model.")
        validate(cfg)
    return cfg


def build_model(preset_or_config: str | Config | ModelConfig = "paper", **overrides) -> CDAN:
    """Build CDAN from a preset ('paper', 'small', 'tiny'), a Config or a ModelConfig."""
    cfg = resolve_config(preset_or_config, **overrides)
    model = CDAN(cfg.model)
    model.run_config = cfg  # the full config travels with the model into checkpoints
    return model
