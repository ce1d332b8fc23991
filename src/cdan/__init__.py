"""cdan: the Codec Dual-Output Adversarial Network (CDAN) for self-supervised facial expression parsing."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "build_model", "load_model"]


def build_model(preset_or_config="paper", **overrides):
    """Build a CDAN network from a preset name ('paper', 'small', 'tiny') or a ModelConfig."""
    from .models import build_model as _build

    return _build(preset_or_config, **overrides)


def load_model(path, map_location="cpu"):
    """Load our safetensors checkpoint (or a run directory) or the official CDAN.pth. Returns the model."""
    from .models.checkpoint import load_model as _load

    return _load(path, map_location=map_location)
