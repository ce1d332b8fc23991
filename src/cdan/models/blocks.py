"""Building blocks of the CDAN codec (DESIGN: Norm, Act, ResBlock, AttnBlock, Down, Up, SEA).

Parameter names follow the official release so that its state dict loads strictly.
Each fast path (SDPA attention, pooled SEA) has a plain reference written from the DESIGN description;
tests compare the two.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def norm(channels: int, groups: int) -> nn.GroupNorm:
    """GroupNorm(groups, eps 1e-6, affine), as the official `Normalize`."""
    return nn.GroupNorm(num_groups=groups, num_channels=channels, eps=1e-6, affine=True)


def swish(x: torch.Tensor) -> torch.Tensor:
    """x * sigmoid(x), computed by the fused SiLU kernel (one pass instead of two)."""
    return F.silu(x)


class ResBlock(nn.Module):
    """Norm -> swish -> conv3x3 -> Norm -> swish -> conv3x3, plus the input (1x1 `nin_shortcut` if widths differ)."""

    def __init__(self, cin: int, cout: int, groups: int):
        super().__init__()
        self.norm1 = norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2 = norm(cout, groups)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.nin_shortcut = nn.Conv2d(cin, cout, 1) if cin != cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(swish(self.norm1(x)))
        h = self.conv2(swish(self.norm2(h)))
        if self.nin_shortcut is not None:
            x = self.nin_shortcut(x)
        return x + h


def attention_reference(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Plain single-head attention over positions. q, k, v: [N,C,H,W] -> [N,C,H,W].

    w = softmax(q^T k / sqrt(C)) over keys; out[:, :, i] = sum_j w[i, j] v[:, :, j].
    """
    n, c, h, w = q.shape
    qf = q.reshape(n, c, h * w).transpose(1, 2)  # [N,HW,C]
    kf = k.reshape(n, c, h * w)  # [N,C,HW]
    weights = torch.softmax(torch.bmm(qf, kf) * c**-0.5, dim=2)  # [N,HW(q),HW(k)]
    vf = v.reshape(n, c, h * w)  # [N,C,HW]
    out = torch.bmm(vf, weights.transpose(1, 2))  # [N,C,HW(q)]
    return out.reshape(n, c, h, w)


def attention_fast(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Same maths as `attention_reference` through scaled_dot_product_attention. [N,C,H,W] -> [N,C,H,W]."""
    n, c, h, w = q.shape

    def tokens(t: torch.Tensor) -> torch.Tensor:  # [N,C,H,W] -> [N,1,HW,C]
        return t.reshape(n, 1, c, h * w).transpose(2, 3)

    out = F.scaled_dot_product_attention(tokens(q), tokens(k), tokens(v))  # [N,1,HW,C]
    return out.transpose(2, 3).reshape(n, c, h, w)


class AttnBlock(nn.Module):
    """Single-head self-attention over the H*W positions with a residual (names: norm, q, k, v, proj_out)."""

    def __init__(self, c: int, groups: int, fast: bool = True):
        super().__init__()
        self.fast = fast
        self.norm = norm(c, groups)
        self.q = nn.Conv2d(c, c, 1)
        self.k = nn.Conv2d(c, c, 1)
        self.v = nn.Conv2d(c, c, 1)
        self.proj_out = nn.Conv2d(c, c, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm(x)
        attend = attention_fast if self.fast else attention_reference
        return x + self.proj_out(attend(self.q(h), self.k(h), self.v(h)))


class Down(nn.Module):
    """Zero-pad right and bottom by 1, then conv3x3 stride 2: [N,C,H,W] -> [N,C,H/2,W/2]."""

    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Up(nn.Module):
    """Bilinear x2 (align_corners=True), then conv3x3. [N,C,H,W] -> [N,C,2H,2W].

    With `official_extras`, it also holds the official unused ConvTranspose2d `conv1` (never called).
    """

    def __init__(self, c: int, official_extras: bool = True):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)
        if official_extras:
            self.conv1 = nn.ConvTranspose2d(c, c, 4, 2, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        return self.conv(x)


def sea_extend_reference(x: torch.Tensor, b: int) -> torch.Tensor:
    """SEA steps 1-2, written straight from DESIGN with explicit loops over blocks.

    x: [N,C,H,W] -> [N,2,H,W]: channel-mean map with each b x b block replaced by its mean, and channel-max map
    with each block replaced by its max.
    """
    n, _, h, w = x.shape
    mean_map = x.mean(dim=1, keepdim=True)
    max_map = x.max(dim=1, keepdim=True).values
    out_mean = torch.empty_like(mean_map)
    out_max = torch.empty_like(max_map)
    for i in range(0, h, b):
        for j in range(0, w, b):
            blk_mean = mean_map[:, :, i : i + b, j : j + b]
            blk_max = max_map[:, :, i : i + b, j : j + b]
            out_mean[:, :, i : i + b, j : j + b] = blk_mean.mean(dim=(2, 3), keepdim=True).expand_as(blk_mean)
            out_max[:, :, i : i + b, j : j + b] = blk_max.amax(dim=(2, 3), keepdim=True).expand_as(blk_max)
    return torch.cat([out_mean, out_max], dim=1)


def sea_extend_fast(x: torch.Tensor, b: int) -> torch.Tensor:
    """Same as `sea_extend_reference`: block pooling, then nearest expansion. [N,C,H,W] -> [N,2,H,W]."""
    pooled = torch.cat(
        [
            F.avg_pool2d(x.mean(dim=1, keepdim=True), b),  # [N,1,H/b,W/b]
            F.max_pool2d(x.amax(dim=1, keepdim=True), b),
        ],
        dim=1,
    )
    return pooled.repeat_interleave(b, dim=2).repeat_interleave(b, dim=3)


class SEA(nn.Module):
    """Spatial Extend Attention: x * sigmoid(conv7x7([block-mean of channel mean, block-max of channel max]))."""

    def __init__(self, block: int = 7, kernel: int = 7, fast: bool = True):
        super().__init__()
        self.block = block
        self.fast = fast
        self.conv1 = nn.Conv2d(2, 1, kernel, padding=kernel // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[-1] % self.block == 0 and x.shape[-2] % self.block == 0, x.shape
        extend = sea_extend_fast if self.fast else sea_extend_reference
        return x * torch.sigmoid(self.conv1(extend(x, self.block)))
