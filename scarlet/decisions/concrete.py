"""From an architecture to the concrete layers of its network: kinds, widths, kernels, strides, feature-map sizes.

This is the one place that applies a space's conventions to an architecture, so the standalone network, the
supernet's sliced path and the cost model all read the same widths:

- expanded width = ``scale_filters(sampled input width, expansion, divisor)``: relative to the width that actually
  reaches the layer (TuNAS ``_compute_filters_for_multiplier``);
- SE / split-attention reduced width = ``make_divisible(0.25 * expanded width, divisor)`` (TuNAS
  ``_SQUEEZE_AND_EXCITE_RATIO``; FP-NAS states none, we use the same);
- a zeroed TuNAS layer is the identity (it is a residual layer, so ``x + 0``); an FP-NAS kernel-0 layer is the
  identity where stride is 1 and widths agree, else a 1x1 conv + BN projection;
- TuNAS residuals are exactly its ``ResidualSpec`` layers; FBNet adds a residual wherever stride is 1 and the
  input and output widths agree.
"""

from __future__ import annotations

from dataclasses import dataclass

from scarlet.decisions.arch import DecisionArch, parse_decision_arch
from scarlet.decisions.space import Decision, LayerSpec, Space, get_space, scale_filters


@dataclass(frozen=True)
class ConcreteLayer:
    """One layer of a deployed network. ``kind``: conv, conv_bias, sepconv, ib, project, identity."""

    name: str
    kind: str
    c_in: int
    c_out: int
    stride: int = 1
    kernel: int = 1
    hidden: int = 0
    attention: int = 0  # 0 none, 1 SE, r >= 2 split-attention with r splits
    reduced: int = 0
    gate: str = "sigmoid"
    act: str = "relu"
    residual: bool = False
    in_size: int = 0
    out_size: int = 0


def make_divisible(value: float, divisor: int) -> int:
    """Round to the nearest multiple of ``divisor`` (at least ``divisor``), never more than 10% below ``value``."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def conv_out(size: int, stride: int) -> int:
    """Output size of an odd-kernel conv with 'same' padding k // 2."""
    return (size - 1) // stride + 1


def layer_values(layer: LayerSpec, arch: DecisionArch) -> dict:
    return {k: arch[v.key] if isinstance(v, Decision) else v for k, v in layer.attrs}


def resolve(space: str | Space, arch, resolution: int) -> list[ConcreteLayer]:
    """The concrete layers of ``arch`` at input ``resolution`` (the pool sits before ``conv_bias`` or at the end)."""
    space = get_space(space)
    arch = parse_decision_arch(arch, space)
    c, size = space.in_channels, resolution
    out: list[ConcreteLayer] = []
    for layer in space.layers:
        v = layer_values(layer, arch)
        f, stride = v["filters"], layer.stride
        if layer.kind == "conv_bias":
            out.append(ConcreteLayer(layer.name, "conv_bias", c, f, act=v["act"], in_size=1, out_size=1))
            c, size = f, 1
            continue
        if layer.kind == "conv":
            o = conv_out(size, stride)
            out.append(ConcreteLayer(layer.name, "conv", c, f, stride, v["kernel"], act=v["act"], in_size=size,
                                     out_size=o))
            c, size = f, o
            continue
        if v["op"] == "zero" or v["kernel"] == 0:
            if stride == 1 and c == f:
                out.append(ConcreteLayer(layer.name, "identity", c, c, in_size=size, out_size=size))
            else:  # only FBNet skips get here: TuNAS zeros are residual layers whose shapes always agree
                o = conv_out(size, stride)
                out.append(ConcreteLayer(layer.name, "project", c, f, stride, 1, in_size=size, out_size=o))
                c, size = f, o
            continue
        o = conv_out(size, stride)
        if space.family == "tunas":
            residual = layer.residual
        else:
            residual = stride == 1 and c == f
        if layer.kind == "sepconv":
            out.append(ConcreteLayer(layer.name, "sepconv", c, f, stride, v["kernel"], act=v["act"],
                                     residual=residual, in_size=size, out_size=o))
        else:
            hidden = scale_filters(c, v["expansion"], space.divisor)
            r = v["attention"]
            reduced = make_divisible(0.25 * hidden, space.divisor) if r else 0
            out.append(ConcreteLayer(layer.name, "ib", c, f, stride, v["kernel"], hidden, r, reduced,
                                     "sigmoid" if space.family == "tunas" else "hsigmoid", v["act"], residual,
                                     size, o))
        c, size = f, o
    return out


# attributes whose decisions a layer reads when it computes (not when it is zeroed or skipped)
_USED = {"conv": ("kernel", "act"), "conv_bias": ("act",), "sepconv": ("kernel", "act"),
         "ib": ("kernel", "expansion", "attention", "act"), "project": (), "identity": ()}


def active_decisions(space: str | Space, arch) -> set[str]:
    """Keys of the decisions that shape the network of ``arch``.

    Filters and op decisions (FBNet's kernel, whose 0 is the skip, included) are always active; a kernel,
    expansion, attention or activation decision is active when a layer that reads it is not zeroed (TuNAS's
    hierarchical policy: decisions inside a zeroed layer add no log-probability, sheet A3). Two architectures
    that differ only in inactive decisions build the same network.
    """
    space = get_space(space)
    arch = parse_decision_arch(arch, space)
    active = set()
    for spec, c in zip(space.layers, resolve(space, arch, 32)):
        for name, v in spec.attrs:
            if not isinstance(v, Decision):
                continue
            always = name in ("filters", "op") or (name == "kernel" and 0 in v.choices)  # FBNet: kernel 0 = skip
            if always or name in _USED[c.kind]:
                active.add(v.key)
    return active


def canonical(space: str | Space, arch) -> DecisionArch:
    """``arch`` with every inactive decision set to its first choice (one representative per network)."""
    space = get_space(space)
    arch = parse_decision_arch(arch, space)
    active = active_decisions(space, arch)
    return DecisionArch(space.name, tuple((k, v if k in active else space.decision(k).choices[0])
                                          for k, v in arch.values))
