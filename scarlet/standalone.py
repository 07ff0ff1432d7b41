"""Standalone (deployed) networks: one architecture of a space as a plain MBConv stack.

Identity layers disappear: a stride-2 identity leaves a subsampling, and the next real convolution takes as input
the channels of the last non-identity output while keeping its own width (its hidden width is the supernet
block's, computed from the layer's nominal input). This is the network the cost model counts and the network the
papers train from scratch ("retrain" variant: ELS dropped, identity shortcuts kept where the shapes match).
Exact folding of a trained supernet path into such a network lives in :mod:`scarlet.fold`.
"""

from __future__ import annotations

import torch
from torch import nn

from scarlet.arch import NAMED_ARCHS, Arch, parse_arch
from scarlet.blocks import MBConv, init_weights
from scarlet.space import get_space, scale_channels
from scarlet.supernet import FirstBlock, Head, Stem, SupernetConfig, layer_shapes


def _home_space(arch: Arch | str) -> str:
    """The space an architecture is read in when no config names one: its own (an Arch's, a named
    architecture's), else scarlet-s2. fairnas-a/b/c also parse in scarlet-s2, but as different (h-swish) blocks."""
    if isinstance(arch, Arch):
        return arch.space
    named = NAMED_ARCHS.get(arch.strip().lower()) if isinstance(arch, str) else None
    return named[0] if named else "scarlet-s2"


class Subsample(nn.Module):
    """What a stride-2 identity leaves behind: every other row and column (a strided 1x1 conv's sampling)."""

    def __init__(self, stride: int):
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :: self.stride, :: self.stride]


class StandaloneNet(nn.Module):
    """stem -> first block -> blocks (MBConv or Subsample) -> head, with a flat, readable state_dict."""

    def __init__(self, arch: Arch | str, config: SupernetConfig | None = None, **overrides):
        super().__init__()
        config = config or SupernetConfig(space=_home_space(arch))
        if overrides:
            config = SupernetConfig(**{**config.to_dict(), **overrides})
        space = get_space(config.space)
        self.config = config
        self.arch = parse_arch(arch, space)
        w = config.width
        stem_ch = scale_channels(space.stem_channels, w)
        self.stem = Stem(config.in_channels, stem_ch, config.stem_stride)
        self.first = FirstBlock(stem_ch, scale_channels(space.first_block_channels, w))
        channels = self.first.conv_pw.out_channels
        blocks = []
        for shape, g in zip(layer_shapes(config), self.arch.genes):
            choice = space.choices[g]
            if choice.identity:
                if shape.stride > 1:
                    blocks.append(Subsample(shape.stride))
                continue
            hidden = round(shape.in_channels * choice.expansion)
            blocks.append(MBConv(channels, shape.out_channels, shape.stride, choice.expansion, choice.kernel,
                                 choice.se, space.family, hidden=hidden))
            channels = shape.out_channels
        self.blocks = nn.Sequential(*blocks)
        self.head = Head(channels, scale_channels(space.tail_channels, w), config.num_classes, config.dropout)
        init_weights(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.first(self.stem(x))))
