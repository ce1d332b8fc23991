"""The CDAN generator: encoder, colour decoder (`decoder1`) and mask decoder with SEA (`decoder2`).

Module and parameter names follow the official release so `CDAN.pth` loads strictly into the `paper` preset.
Widths are `ch * ch_mult[i]`; with ch=128, ch_mult=(1,2,2,4) they are the official 128/256/256/512.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..config import ModelConfig
from .blocks import SEA, AttnBlock, Down, ResBlock, Up, norm, swish
from .discriminators import AUDiscriminator, FeatureDiscriminator


class Encoder(nn.Module):
    """x [N,3,R,R] -> latent [N,z,R/8,R/8]. Taming-Transformers layout (names: conv_in, down.i.block/attn/downsample, mid)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        g, ch, mult = cfg.num_groups, cfg.ch, cfg.ch_mult
        attn_res = cfg.resolution // 2 ** (len(mult) - 1)  # attention at the lowest level (official: 14)
        self.conv_in = nn.Conv2d(cfg.in_channels, ch, 3, 1, 1)
        self.down = nn.ModuleList()
        res, cin = cfg.resolution, ch
        for level, m in enumerate(mult):
            stage = nn.Module()
            stage.block = nn.ModuleList()
            stage.attn = nn.ModuleList()
            for _ in range(cfg.num_res_blocks):
                stage.block.append(ResBlock(cin, ch * m, g))
                cin = ch * m
                if res == attn_res:
                    stage.attn.append(AttnBlock(cin, g, cfg.fast))
            if level != len(mult) - 1:
                stage.downsample = Down(cin)
                res //= 2
            self.down.append(stage)
        self.mid = nn.Module()
        self.mid.block_1 = ResBlock(cin, cin, g)
        self.mid.attn_1 = AttnBlock(cin, g, cfg.fast)
        self.mid.block_2 = ResBlock(cin, cin, g)
        self.norm_out = norm(cin, g)
        self.conv_out = nn.Conv2d(cin, cfg.z_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level, stage in enumerate(self.down):
            for i, block in enumerate(stage.block):
                h = block(h)
                if len(stage.attn):
                    h = stage.attn[i](h)
            if level != len(self.down) - 1:
                h = stage.downsample(h)
        h = self.mid.block_2(self.mid.attn_1(self.mid.block_1(h)))
        return self.conv_out(swish(self.norm_out(h)))


class ColorDecoder(nn.Module):
    """`decoder1`: latent [N,e,R/8,R/8] -> colour map [N,3,R,R] in [-1,1] (tanh, as in the official code)."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        g, ch, (m0, m1, m2, m3) = cfg.num_groups, cfg.ch, cfg.ch_mult
        extras = cfg.official_extras
        top = ch * m3
        self.conv_in = nn.Conv2d(cfg.embed_dim, top, 3, 1, 1)
        self.l0_r0, self.l0_a0, self.l0_r1 = (
            ResBlock(top, top, g),
            AttnBlock(top, g, cfg.fast),
            ResBlock(top, top, g),
        )
        self.l1_r0, self.l1_r1 = ResBlock(top, top, g), ResBlock(top, top, g)
        self.l1_a0, self.l1_a1, self.l1_a2 = (AttnBlock(top, g, cfg.fast) for _ in range(3))
        self.l1_up = Up(top, extras)
        self.l2_r0, self.l2_r1, self.l2_up = (
            ResBlock(top, ch * m2, g),
            ResBlock(ch * m2, ch * m2, g),
            Up(ch * m2, extras),
        )
        self.l3_r0, self.l3_r1 = ResBlock(ch * m2, ch * m1, g), ResBlock(ch * m1, ch * m1, g)
        self.l3_up = Up(ch * m1, extras)
        self.l4_r0, self.l4_r1 = ResBlock(ch * m1, ch * m0, g), ResBlock(ch * m0, ch * m0, g)
        self.norm_out = norm(ch * m0, g)
        self.color_out = nn.Sequential(nn.Conv2d(ch * m0, 3, 3, 1, 1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.l0_r1(self.l0_a0(self.l0_r0(self.conv_in(z))))  # R/8
        h = self.l1_a2(self.l1_a1(self.l1_a0(self.l1_r1(self.l1_r0(h)))))
        h = self.l2_up(self.l2_r1(self.l2_r0(self.l1_up(h))))  # R/4 -> R/2
        h = self.l3_up(self.l3_r1(self.l3_r0(h)))  # -> R
        h = self.l4_r1(self.l4_r0(h))
        return self.color_out(swish(self.norm_out(h)))


class MaskDecoder(nn.Module):
    """`decoder2`: latent [N,z,R/8,R/8] -> mask [N,1,R,R] in [0,1] (sigmoid), with SEA after the first two ResBlocks.

    The official `l1_up` and `color_out` exist but are never called; they are kept with `official_extras`.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        g, ch, (m0, m1, m2, m3) = cfg.num_groups, cfg.ch, cfg.ch_mult
        extras = cfg.official_extras
        top = ch * m3
        self.conv_in = nn.Conv2d(cfg.z_channels, top, 3, 1, 1)
        self.attn = SEA(cfg.sea_block, cfg.sea_kernel, cfg.fast)
        self.l0_r0, self.l0_r1 = ResBlock(top, top, g), ResBlock(top, top, g)
        self.l1_r0, self.l1_r1 = ResBlock(top, top, g), ResBlock(top, top, g)
        if extras:
            self.l1_up = Up(top, extras)  # defined, never called (official)
        self.l2_r0, self.l2_r1, self.l2_up = (
            ResBlock(top, ch * m2, g),
            ResBlock(ch * m2, ch * m2, g),
            Up(ch * m2, extras),
        )
        self.l3_r0, self.l3_r1 = ResBlock(ch * m2, ch * m1, g), ResBlock(ch * m1, ch * m1, g)
        self.l3_up = Up(ch * m1, extras)
        self.l4_r0, self.l4_r1 = ResBlock(ch * m1, ch * m0, g), ResBlock(ch * m0, ch * m0, g)
        self.l4_up = Up(ch * m0, extras)
        self.norm_out = norm(ch * m0, g)
        if extras:
            self.color_out = nn.Sequential(nn.Conv2d(ch * m0, 3, 3, 1, 1), nn.Tanh())  # unused (official)
        self.mask_out = nn.Sequential(nn.Conv2d(ch * m0, 1, 3, 1, 1), nn.Sigmoid())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.attn(self.l0_r1(self.l0_r0(self.conv_in(z))))  # R/8
        h = self.l1_r1(self.l1_r0(h))
        h = self.l2_up(self.l2_r1(self.l2_r0(h)))  # -> R/4
        h = self.l3_up(self.l3_r1(self.l3_r0(h)))  # -> R/2
        h = self.l4_up(self.l4_r1(self.l4_r0(h)))  # -> R
        return self.mask_out(swish(self.norm_out(h)))


class CDANOutput(NamedTuple):
    """The five maps of the dual output, each [N,C,R,R]."""

    xrec: torch.Tensor  # M*x + (1-M)*C, [N,3,R,R]
    color_map: torch.Tensor  # C, [N,3,R,R], in [-1,1]
    mask_input: torch.Tensor  # M*x, [N,3,R,R]
    mask_color: torch.Tensor  # (1-M)*C, [N,3,R,R]
    mask_map: torch.Tensor  # M, [N,1,R,R], in [0,1]


class CDAN(nn.Module):
    """The whole network: generator (encoder + two decoders) and the two discriminators.

    forward(x [N,3,R,R] in [0,1]) -> CDANOutput.
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        self.encoder = Encoder(cfg)
        self.decoder1 = ColorDecoder(cfg)
        self.decoder2 = MaskDecoder(cfg)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.embed_dim, cfg.z_channels, 1)
        self.feature_dis = FeatureDiscriminator(cfg)
        self.AU_dis = AUDiscriminator(cfg)

    def generator_parameters(self) -> list[nn.Parameter]:
        mods = (self.encoder, self.decoder1, self.decoder2, self.quant_conv, self.post_quant_conv)
        return [p for m in mods for p in m.parameters()]

    def official_unused_parameters(self) -> list[nn.Parameter]:
        """Parameters the official forward never uses (Up.conv1, decoder2.l1_up, decoder2.color_out)."""
        unused = [m.conv1 for m in self.modules() if isinstance(m, Up) and hasattr(m, "conv1")]
        for name in ("l1_up", "color_out"):
            if hasattr(self.decoder2, name):
                unused.append(getattr(self.decoder2, name))
        return list({id(p): p for m in unused for p in m.parameters()}.values())

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """x [N,3,R,R] -> latent after quant_conv [N,e,R/8,R/8]."""
        return self.quant_conv(self.encoder(x))

    def forward(self, x: torch.Tensor) -> CDANOutput:
        r = self.config.resolution
        assert x.dim() == 4 and x.shape[1:] == (3, r, r), f"expected [N,3,{r},{r}], got {tuple(x.shape)}"
        h = self.encode(x)
        mask_map = self.decoder2(h)  # [N,1,R,R]
        color_map = self.decoder1(self.post_quant_conv(h))  # [N,3,R,R]
        mask_input = mask_map * x
        mask_color = (1 - mask_map) * color_map
        return CDANOutput(mask_input + mask_color, color_map, mask_input, mask_color, mask_map)
