"""The supernet: the fixed stem, first block and tail around 19 searchable layers, each holding every choice.

``Supernet(config)(x, arch)`` runs one single-path model. Every choice of every layer has its own weights
(including its own BatchNorm), as in FairNAS and SCARLET. ``config.init`` picks how they start
(:mod:`scarlet.supernet_init`: the papers' independent init, or identity-at-init and same-function schemes).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import nn

from scarlet.arch import Arch, parse_arch
from scarlet.blocks import build_choice, init_weights
from scarlet.errors import ScarletError
from scarlet.supernet_init import INIT_SCHEMES, apply_init
from scarlet.space import SKIP_KINDS, SearchSpace, get_space, scale_channels


@dataclass(frozen=True)
class SupernetConfig:
    """Everything needed to rebuild a supernet (saved in every checkpoint)."""

    space: str = "scarlet-s2"
    skip: str = "els"  # kind of the skip choice in SCARLET spaces: els | skip | els-relu
    width: float = 1.0  # width multiplier applied to every channel count
    resolution: int = 224
    stem_stride: int = 2
    in_channels: int = 3
    num_classes: int = 1000
    dropout: float = 0.0  # before the classifier
    init: str = "independent"  # independent | stable | same-function (scarlet.supernet_init)

    def __post_init__(self):
        get_space(self.space)
        if self.skip not in SKIP_KINDS:
            raise ScarletError(f"unknown skip kind {self.skip!r}; choose one of {', '.join(SKIP_KINDS)}")
        if not self.width > 0:
            raise ScarletError(f"width multiplier must be positive, got {self.width}")
        if self.resolution < 1 or self.stem_stride not in (1, 2) or self.num_classes < 1 or self.in_channels < 1:
            raise ScarletError(f"invalid supernet config: {self}")
        if self.init not in INIT_SCHEMES:
            raise ScarletError(f"unknown supernet init {self.init!r}; choose one of {', '.join(INIT_SCHEMES)}")

    @classmethod
    def from_dict(cls, d: dict) -> "SupernetConfig":
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ScarletError(f"unknown supernet config keys: {', '.join(sorted(unknown))}")
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class LayerShape:
    """Actual (width-scaled) shape of a searchable layer."""

    in_channels: int
    out_channels: int
    stride: int
    in_size: int  # spatial size of the layer's input
    out_size: int


def conv_out(size: int, stride: int) -> int:
    return (size - 1) // stride + 1


def layer_shapes(config: SupernetConfig) -> list[LayerShape]:
    space = get_space(config.space)
    size = conv_out(config.resolution, config.stem_stride)  # stem; the first block keeps the size
    shapes = []
    for layer in space.layers:
        out = conv_out(size, layer.stride)
        shapes.append(LayerShape(scale_channels(layer.in_channels, config.width),
                                 scale_channels(layer.out_channels, config.width), layer.stride, size, out))
        size = out
    return shapes


class Stem(nn.Module):
    def __init__(self, in_channels: int, channels: int, stride: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.ReLU6()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class FirstBlock(nn.Module):
    """Fixed depthwise-separable block: dw 3x3, BN, ReLU6, 1x1, BN (no activation, no residual)."""

    def __init__(self, channels: int, out_channels: int):
        super().__init__()
        self.conv_dw = nn.Conv2d(channels, channels, 3, 1, 1, groups=channels, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.act = nn.ReLU6()
        self.conv_pw = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)

    def forward(self, x):
        return self.bn2(self.conv_pw(self.act(self.bn1(self.conv_dw(x)))))


class Head(nn.Module):
    """1x1 conv to the tail width, BN, ReLU6, global average pool, dropout, linear classifier."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, dropout: float):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, channels, 1, bias=False)
        self.bn = nn.BatchNorm2d(channels)
        self.act = nn.ReLU6()
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.classifier = nn.Linear(channels, num_classes)

    def forward(self, x):
        x = self.act(self.bn(self.conv(x))).mean((2, 3))
        return self.classifier(self.dropout(x))


class Supernet(nn.Module):
    def __init__(self, config: SupernetConfig | None = None, **overrides):
        super().__init__()
        config = config or SupernetConfig()
        if overrides:
            config = SupernetConfig(**{**config.to_dict(), **overrides})
        self.config = config
        self.space: SearchSpace = get_space(config.space)
        self.resolution = config.resolution
        self.shapes = layer_shapes(config)
        w = config.width
        stem_ch = scale_channels(self.space.stem_channels, w)
        self.stem = Stem(config.in_channels, stem_ch, config.stem_stride)
        self.first = FirstBlock(stem_ch, scale_channels(self.space.first_block_channels, w))
        self.layers = nn.ModuleList(
            nn.ModuleList(build_choice(c, s.in_channels, s.out_channels, s.stride, self.space.family, config.skip)
                          for c in self.space.choices)
            for s in self.shapes
        )
        self.head = Head(self.shapes[-1].out_channels, scale_channels(self.space.tail_channels, w),
                         config.num_classes, config.dropout)
        init_weights(self)
        apply_init(self, config.init)

    def arch(self, arch) -> Arch:
        return parse_arch(arch, self.space)

    def forward_stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.first(self.stem(x))

    def forward(self, x: torch.Tensor, arch) -> torch.Tensor:
        genes = arch.genes if isinstance(arch, Arch) else arch
        if len(genes) != len(self.layers):
            raise ScarletError(f"architecture has {len(genes)} layers, the supernet has {len(self.layers)}")
        x = self.forward_stem(x)
        for layer, g in zip(self.layers, genes):
            x = layer[g](x)
        return self.head(x)
