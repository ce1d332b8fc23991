"""StarGAN/GANimation PatchGAN discriminators (official `FeatureDiscriminator`, `AuDiscriminator`)."""

from __future__ import annotations

import torch
from torch import nn

from ..config import ModelConfig


def _trunk(cfg: ModelConfig) -> tuple[nn.Sequential, int]:
    """dis_layers convs 4x4 stride 2 pad 1, LeakyReLU(0.01); only the first has a bias. Names: model.0, .2, ..."""
    layers: list[nn.Module] = [nn.Conv2d(cfg.in_channels, cfg.dis_ndf, 4, 2, 1), nn.LeakyReLU(0.01)]
    c = cfg.dis_ndf
    for _ in range(1, cfg.dis_layers):
        layers += [nn.Conv2d(c, 2 * c, 4, 2, 1, bias=False), nn.LeakyReLU(0.01)]
        c *= 2
    return nn.Sequential(*layers), c


class FeatureDiscriminator(nn.Module):
    """Realness: x [N,3,R,R] -> patch logits [N,1,h,w] (1x1 at 112 px)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.model, c = _trunk(cfg)
        self.dis_top = nn.Conv2d(c, 1, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dis_top(self.model(x))


class AUDiscriminator(nn.Module):
    """AU regression: x [N,3,R,R] -> [N,K] (AU intensities / 5)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.model, c = _trunk(cfg)
        k = int(cfg.resolution / 2**cfg.dis_layers)  # official: int(112/64) = 1
        self.aus_top = nn.Conv2d(c, cfg.num_aus, k, 1, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.aus_top(self.model(x))  # [N,K,h,w]
        return out.flatten(2).mean(dim=2)  # [N,K] (h = w = 1 at the official sizes)
