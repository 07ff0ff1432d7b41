"""Decision spaces as data: a macro skeleton of blocks and layers, each layer with named categorical decisions.

A space is a sequence of blocks; a block is a sequence of layers plus (usually) one output-filters decision that
all its layers share, which is how "residual-connected layers have the same width" is kept (TuNAS section 3.1).
A layer has a kind (``conv``, ``sepconv``, ``ib``, ``conv_bias``) and attributes (kernel, expansion, attention,
activation, filters, op); each attribute is either a fixed value or a :class:`Decision`. A decision may be
referenced by several layers (block filters; FP-NAS micro-architecture shared by a group), and the cardinality of
a space is the product of the numbers of choices of its decisions, counted the way TuNAS counts them: decisions
inside a layer set to zero still count.

The six spaces (``../shared/TUNAS_FPNAS.md`` sections A1 and B1 table them):

- ``proxylessnas``, ``proxylessnas-enlarged``, ``mobilenetv3-like``: TuNAS Table 2 as its code builds them
  (``mobile_search_space_v3.py``): base filters double at every block, choices are base x {1/2, 5/8, 3/4, 1,
  5/4, 3/2, 2} rounded half up to a multiple of 8 (at least 8) with duplicates removed; expansion is relative to
  the sampled input width; a skippable layer is ``residual(IB or zero)``; the first layer of a block is never
  skippable.
- ``fbnetv2-f``, ``fbnetv2-f-fine``, ``fbnetv2-f++``: FP-NAS Tables 1 and 2. The paper does not say which
  decisions a group's blocks share; we take the sheet's reading (B5.1): in ``fbnetv2-f`` kernel {0,3,5},
  nonlinearity {relu, swish} and SE {0,1} are one decision per group (Table 1 row), expansion and output
  channels are one decision per group; ``fbnetv2-f-fine`` makes kernel, nonlinearity and SE per block;
  ``fbnetv2-f++`` is ``fbnetv2-f`` with SE replaced by split-attention splits {0,1,2,4} per group. Under this
  reading F++ / F = 2^10 ~ 10^3 (the paper's ratio) and Fine / F = 12^7 ~ 10^7.6 (the paper's section 5.2.2 says
  10^8, section 4 says 10^19); the absolute sizes (2.7e24, 9.6e31, 2.8e27) differ from the paper's (6e25, 1e45,
  6e28), which no counting rule we tried reproduces (sheet B5.1). Kernel 0 is a skip: the identity where the
  block's input and output shapes agree, else a 1x1 conv + BN projection (FBNet's skip convention, sheet B5.3).
  "swish" is hard-swish (FBNetV2's released models, sheet B5.14). Like TuNAS, every MBConv keeps its 1x1
  expansion conv, also g1's at expansion 1 (FBNet's code drops it there); the stem is 16 channels with
  hard-swish and the head a 1x1 conv to 1984 + BN + hard-swish (Table 1 gives neither activation).

``width`` scales every filter value and ``divisor`` is the rounding multiple (the papers' spaces: 1.0 and 8);
tests use narrow variants such as ``width=0.25, divisor=2`` that keep every choice distinct.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from scarlet.errors import ScarletError

TUNAS_MULTIPLIERS = (0.5, 0.625, 0.75, 1.0, 1.25, 1.5, 2.0)
FBNET_EXPANSIONS = (0.75, 1.5, 2.25, 3.0, 3.75, 4.5)


@dataclass(frozen=True)
class Decision:
    """A named categorical decision; ``key`` is unique in its space (e.g. ``b2.filters``, ``b2.1.kernel``)."""

    key: str
    choices: tuple


@dataclass(frozen=True)
class LayerSpec:
    """One layer of the skeleton. ``attrs`` maps attribute names to a fixed value or a :class:`Decision`.

    Attributes by kind: ``conv`` (kernel, filters, act; BN), ``conv_bias`` (1x1 with bias, no BN, after the pool;
    filters, act), ``sepconv`` (kernel, filters, act, op), ``ib`` (kernel, expansion, attention, act, filters,
    op). ``op`` is ``"zero"`` for a removed layer; ``residual`` marks TuNAS's ``ResidualSpec`` layers.
    ``first`` marks the first layer of a block (its input width may differ from its output width).
    """

    name: str
    kind: str
    stride: int
    attrs: tuple[tuple[str, Any], ...]
    residual: bool = False
    first: bool = False

    def attr(self, name: str, default: Any = None) -> Any:
        for k, v in self.attrs:
            if k == name:
                return v
        return default

    def decisions(self) -> list[Decision]:
        return [v for _, v in self.attrs if isinstance(v, Decision)]

    def choices(self, name: str, default: Any = None) -> tuple:
        """All values the attribute can take (one for a fixed attribute)."""
        v = self.attr(name, default)
        return v.choices if isinstance(v, Decision) else (v,)


@dataclass(frozen=True)
class Space:
    """A decision space: layers in order (with their block names), the conventions of its family, paper size.

    ``family`` is ``tunas`` (SE gate sigmoid, residual only on ``ResidualSpec`` layers, zero = identity) or
    ``fbnet`` (SE gate hard-sigmoid, residual wherever stride 1 and widths agree, kernel 0 = skip).
    """

    name: str
    family: str
    layers: tuple[LayerSpec, ...]
    in_channels: int = 3
    divisor: int = 8
    paper_size: float = 0.0
    paper_note: str = ""
    decisions: tuple[Decision, ...] = field(init=False)

    def __post_init__(self):
        seen: dict[str, Decision] = {}
        for layer in self.layers:
            for d in layer.decisions():
                if d.key in seen and seen[d.key] is not d:
                    raise ValueError(f"two different decisions named {d.key!r} in {self.name}")
                seen.setdefault(d.key, d)
        object.__setattr__(self, "decisions", tuple(seen.values()))

    @property
    def cardinality(self) -> int:
        """Number of architectures: the product of every decision's number of choices."""
        return math.prod(len(d.choices) for d in self.decisions)

    def decision(self, key: str) -> Decision:
        for d in self.decisions:
            if d.key == key:
                return d
        raise KeyError(key)

    def layers_using(self, key: str) -> list[str]:
        return [layer.name for layer in self.layers if any(d.key == key for d in layer.decisions())]


def scale_filters(filters: float, multiplier: float, divisor: int = 8) -> int:
    """TuNAS's rounding (``search_space_utils.scale_filters``): half up to a multiple of ``divisor``, at least one."""
    return max(divisor, int(filters * multiplier / divisor + 0.5) * divisor)


def filter_choices(base: float, multipliers, divisor: int) -> tuple[int, ...]:
    return tuple(sorted({scale_filters(base, m, divisor) for m in multipliers}))


# ---------------------------------------------------------------------------------------------------- TuNAS
def _tunas_proxyless(name: str, filters: list[tuple[int, ...]], divisor: int) -> Space:
    """ProxylessNAS / ProxylessNAS-Enlarged (``_proxylessnas_search_base``): stem, sepconv, 6 IB blocks, head.

    ``filters`` holds the filter choices of the 9 blocks (stem, b0, b1..b6, head); one choice means fixed.
    """

    def fdec(i: int, block: str):
        return Decision(f"{block}.filters", filters[i]) if len(filters[i]) > 1 else filters[i][0]

    layers = [LayerSpec("stem", "conv", 2, (("kernel", 3), ("filters", fdec(0, "stem")), ("act", "relu")),
                        first=True),
              LayerSpec("b0", "sepconv", 1, (("kernel", Decision("b0.kernel", (3, 5, 7))),
                                             ("filters", fdec(1, "b0")), ("act", "relu"), ("op", "sepconv")),
                        first=True)]
    strides = (2, 2, 2, 1, 2, 1)
    for b, stride in enumerate(strides, start=1):
        block = f"b{b}"
        f = fdec(b + 1, block)
        for i in range(4 if b < 6 else 1):
            key = f"{block}.{i}"
            op = Decision(f"{key}.op", ("ib", "zero")) if i > 0 else "ib"
            layers.append(LayerSpec(key, "ib", stride if i == 0 else 1, (
                ("kernel", Decision(f"{key}.kernel", (3, 5, 7))), ("expansion", Decision(f"{key}.expansion", (3, 6))),
                ("attention", 0), ("act", "relu"), ("filters", f), ("op", op)), residual=i > 0, first=i == 0))
    layers.append(LayerSpec("head", "conv", 1, (("kernel", 1), ("filters", fdec(8, "head")), ("act", "relu")),
                            first=True))
    return Space(name, "tunas", tuple(layers), divisor=divisor, paper_size=1e21 if name == "proxylessnas" else 1e28,
                 paper_note="TuNAS Table 1 (~1e21 / ~1e28)")


def proxylessnas(width: float = 1.0, divisor: int = 8) -> Space:
    """ProxylessNAS space: fixed filters (32,16,32,40,80,96,192,320,1280), kernel {3,5,7}, expansion {3,6}."""
    base = (32, 16, 32, 40, 80, 96, 192, 320, 1280)
    return _tunas_proxyless("proxylessnas", [(scale_filters(f, width, divisor),) for f in base], divisor)


def proxylessnas_enlarged(width: float = 1.0, divisor: int = 8) -> Space:
    """ProxylessNAS-Enlarged: base (16,16,16,32,64,128,256,512,1024) x the seven TuNAS multipliers per block."""
    base = (16, 16, 16, 32, 64, 128, 256, 512, 1024)
    return _tunas_proxyless("proxylessnas-enlarged",
                            [filter_choices(f * width, TUNAS_MULTIPLIERS, divisor) for f in base], divisor)


def mobilenetv3_like(width: float = 1.0, divisor: int = 8) -> Space:
    """MobileNetV3-Like (``mobilenet_v3_like_search``): kernel {3,5,7}, expansion {1..6}, SE {0,1} at every IB.

    Stem: conv k{3,5} + BN + h-swish, then residual(sepconv k{3,5,7} + ReLU, or zero), sharing the stem filters.
    Head: 1x1 conv + BN + h-swish, pool, 1x1 conv with bias and no BN + h-swish; both widths searched.
    """
    base = (16, 16, 32, 64, 128, 256, 512, 1024)
    fc = [filter_choices(f * width, TUNAS_MULTIPLIERS, divisor) for f in base]
    stem_f = Decision("stem.filters", fc[0])
    layers = [LayerSpec("stem", "conv", 2, (("kernel", Decision("stem.kernel", (3, 5))), ("filters", stem_f),
                                            ("act", "hswish")), first=True),
              LayerSpec("stem.1", "sepconv", 1, (("kernel", Decision("stem.1.kernel", (3, 5, 7))),
                                                 ("filters", stem_f), ("act", "relu"),
                                                 ("op", Decision("stem.1.op", ("sepconv", "zero")))), residual=True)]
    strides = (2, 2, 2, 1, 2)
    acts = ("relu", "relu", "hswish", "hswish", "hswish")
    for b, (stride, act) in enumerate(zip(strides, acts), start=1):
        block = f"b{b}"
        f = Decision(f"{block}.filters", fc[b])
        for i in range(4):
            key = f"{block}.{i}"
            op = Decision(f"{key}.op", ("ib", "zero")) if i > 0 else "ib"
            layers.append(LayerSpec(key, "ib", stride if i == 0 else 1, (
                ("kernel", Decision(f"{key}.kernel", (3, 5, 7))),
                ("expansion", Decision(f"{key}.expansion", (1, 2, 3, 4, 5, 6))),
                ("attention", Decision(f"{key}.se", (0, 1))), ("act", act), ("filters", f), ("op", op)),
                residual=i > 0, first=i == 0))
    layers.append(LayerSpec("head1", "conv", 1, (("kernel", 1), ("filters", Decision("head1.filters", fc[6])),
                                                 ("act", "hswish")), first=True))
    layers.append(LayerSpec("head2", "conv_bias", 1, (("filters", Decision("head2.filters", fc[7])),
                                                      ("act", "hswish")), first=True))
    return Space("mobilenetv3-like", "tunas", tuple(layers), divisor=divisor, paper_size=1e43,
                 paper_note="TuNAS Table 1 (~1e43)")


# --------------------------------------------------------------------------------------------------- FP-NAS
# FP-NAS Table 1: (output channel choices, repeats, stride of the first block); g1 has expansion 1.
FBNET_GROUPS = (((12, 16), 1, 1), ((16, 20, 24), 1, 2), ((16, 20, 24), 2, 1), ((16, 24, 32, 40), 1, 2),
                ((16, 24, 32, 40), 2, 1), ((48, 56, 64, 72, 80), 1, 2), ((48, 56, 64, 72, 80), 2, 1),
                (tuple(range(72, 113, 8)), 3, 1), (tuple(range(112, 185, 8)), 1, 2), (tuple(range(112, 185, 8)), 3, 1))


def _fbnet(name: str, per_block_micro: bool, attention: tuple[int, ...], width: float, divisor: int,
           paper_size: float, paper_note: str) -> Space:
    def scaled(channels) -> tuple[int, ...]:
        # The paper's channel values (12, 20, ...) are not multiples of 8: kept verbatim at width 1.
        if width == 1.0:
            return tuple(channels)
        return tuple(sorted({scale_filters(c, width, divisor) for c in channels}))

    att_name = "se" if attention == (0, 1) else "attention"
    layers = [LayerSpec("stem", "conv", 2, (("kernel", 3), ("filters", scaled((16,))[0]), ("act", "hswish")),
                        first=True)]
    for g, (channels, repeats, stride) in enumerate(FBNET_GROUPS, start=1):
        group = f"g{g}"
        f = Decision(f"{group}.filters", scaled(channels))
        e = Decision(f"{group}.expansion", FBNET_EXPANSIONS) if g > 1 else 1

        def micro(scope: str):
            return (Decision(f"{scope}.kernel", (0, 3, 5)), Decision(f"{scope}.act", ("relu", "hswish")),
                    Decision(f"{scope}.{att_name}", attention))

        shared = micro(group)
        for i in range(repeats):
            key = f"{group}.{i}"
            k, act, att = micro(key) if per_block_micro else shared
            layers.append(LayerSpec(key, "ib", stride if i == 0 else 1, (
                ("kernel", k), ("expansion", e), ("attention", att), ("act", act), ("filters", f), ("op", "ib")),
                first=i == 0))
    layers.append(LayerSpec("head", "conv", 1, (("kernel", 1), ("filters", scaled((1984,))[0]), ("act", "hswish")),
                            first=True))
    return Space(name, "fbnet", tuple(layers), divisor=divisor, paper_size=paper_size, paper_note=paper_note)


def fbnetv2_f(width: float = 1.0, divisor: int = 8) -> Space:
    return _fbnet("fbnetv2-f", False, (0, 1), width, divisor, 6e25, "FP-NAS section 4 (6e25)")


def fbnetv2_f_fine(width: float = 1.0, divisor: int = 8) -> Space:
    return _fbnet("fbnetv2-f-fine", True, (0, 1), width, divisor, 1e45, "FP-NAS section 4 (1e45)")


def fbnetv2_f_plus(width: float = 1.0, divisor: int = 8) -> Space:
    return _fbnet("fbnetv2-f++", False, (0, 1, 2, 4), width, divisor, 6e28, "FP-NAS section 4 (10^3 x F)")


SPACES = {"proxylessnas": proxylessnas, "proxylessnas-enlarged": proxylessnas_enlarged,
          "mobilenetv3-like": mobilenetv3_like, "fbnetv2-f": fbnetv2_f, "fbnetv2-f-fine": fbnetv2_f_fine,
          "fbnetv2-f++": fbnetv2_f_plus}


def get_space(name: str | Space, width: float = 1.0, divisor: int = 8) -> Space:
    if isinstance(name, Space):
        return name
    if name not in SPACES:
        raise ScarletError(f"unknown decision space {name!r}; choose one of {', '.join(SPACES)}")
    if width <= 0 or divisor < 1:
        raise ScarletError(f"space {name}: width must be > 0 and divisor >= 1 (got {width}, {divisor})")
    return SPACES[name](width, divisor)
