"""Search spaces as data.

A search space is a list of searchable layers (input channels, output channels, stride) on the 19-layer
MobileNetV2 skeleton and a list of choices per layer (expansion, kernel, squeeze-and-excitation, identity).
The supernet, the cost model, the encoder, the executors and the folding all read this one description.

Index numbering follows the papers so that published encodings can be pasted in:

- ``fairnas`` (FairNAS): 6 choices, e3k3 e3k5 e3k7 e6k3 e6k5 e6k7, ReLU6, no SE.
- ``scarlet-s1`` (SCARLET S1): index o = (e - 3) + (k - 3) / 2 for the MBConv choices, 6 = skip.
- ``scarlet-s2`` (SCARLET S2, Table 1 of the first SCARLET paper): 0 e3k3, 1 e3k3+SE, ..., 11 e6k7+SE,
  12 = identity.

In the SCARLET spaces the skip choice exists on every layer, stride-2 and channel-changing layers included.
"""

from __future__ import annotations

from dataclasses import dataclass

from scarlet.errors import ScarletError


@dataclass(frozen=True)
class Choice:
    """One candidate operation of a layer: an MBConv block, or the identity (skip) choice."""

    expansion: int = 0
    kernel: int = 0
    se: bool = False
    identity: bool = False

    @property
    def token(self) -> str:
        """Readable name, e.g. ``e3k5``, ``e6k7se`` or ``id``."""
        if self.identity:
            return "id"
        return f"e{self.expansion}k{self.kernel}" + ("se" if self.se else "")


@dataclass(frozen=True)
class Layer:
    """A searchable layer of the skeleton (nominal channels, before any width multiplier)."""

    in_channels: int
    out_channels: int
    stride: int

    @property
    def has_residual(self) -> bool:
        """MBConv choices get an identity shortcut only where the shape is preserved."""
        return self.stride == 1 and self.in_channels == self.out_channels


@dataclass(frozen=True)
class SearchSpace:
    name: str
    family: str  # "scarlet" (h-swish, SE hidden // 4, h-sigmoid) or "fairnas" (ReLU6, no SE)
    choices: tuple[Choice, ...]
    layers: tuple[Layer, ...]
    stem_channels: int = 32
    first_block_channels: int = 16
    tail_channels: int = 1280

    @property
    def num_layers(self) -> int:
        return len(self.layers)

    @property
    def num_choices(self) -> int:
        return len(self.choices)

    @property
    def identity_index(self) -> int | None:
        """Index of the skip choice, or None for spaces without one."""
        for i, c in enumerate(self.choices):
            if c.identity:
                return i
        return None

    @property
    def size(self) -> int:
        return self.num_choices**self.num_layers

    def describe(self) -> str:
        return ", ".join(f"{i}={c.token}" for i, c in enumerate(self.choices))


def _skeleton() -> tuple[Layer, ...]:
    """The 19 searchable layers of REFERENCE section 1 (channels in -> out, stride)."""
    spec = [(16, 32, 2), (32, 32, 1), (32, 40, 2)] + [(40, 40, 1)] * 3 + [(40, 80, 2)] + [(80, 80, 1)] * 3
    spec += [(80, 96, 1)] + [(96, 96, 1)] * 3 + [(96, 192, 2)] + [(192, 192, 1)] * 3 + [(192, 320, 1)]
    return tuple(Layer(*s) for s in spec)


def _mbconvs(se_variants: bool) -> list[Choice]:
    out = []
    for e in (3, 6):
        for k in (3, 5, 7):
            out.append(Choice(e, k, se=False))
            if se_variants:
                out.append(Choice(e, k, se=True))
    return out


SPACES: dict[str, SearchSpace] = {
    "fairnas": SearchSpace("fairnas", "fairnas", tuple(_mbconvs(False)), _skeleton()),
    "scarlet-s1": SearchSpace("scarlet-s1", "scarlet", tuple(_mbconvs(False) + [Choice(identity=True)]), _skeleton()),
    "scarlet-s2": SearchSpace("scarlet-s2", "scarlet", tuple(_mbconvs(True) + [Choice(identity=True)]), _skeleton()),
}

SKIP_KINDS = ("els", "skip", "els-relu")


def get_space(name: str | SearchSpace) -> SearchSpace:
    if isinstance(name, SearchSpace):
        return name
    try:
        return SPACES[name]
    except KeyError:
        raise ScarletError(f"unknown search space {name!r}; choose one of {', '.join(SPACES)}") from None


def scale_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Width multiplier with MobileNet's rounding: nearest multiple of ``divisor``, never below 90% of target."""
    if width == 1.0:
        return channels
    target = channels * width
    scaled = max(divisor, int(target + divisor / 2) // divisor * divisor)
    if scaled < 0.9 * target:
        scaled += divisor
    return scaled
