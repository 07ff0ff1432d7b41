"""Filter warmup and op warmup (TuNAS section 4.3, sheet A4), and the forward pass that averages branches.

Both warmups replace parts of a sampled architecture, each decision with its own coin flip (never one global coin):

- filter warmup: each *filters* decision (block widths and expansion ratios, TuNAS's ``FILTERS_TAG``) is replaced
  by its largest choice with probability ``p``;
- op warmup: each *op* decision (depthwise kernel, SE on/off, IB or zero, stem kernel: TuNAS's ``OP_TAG``) is
  replaced with probability ``p`` by the uniform mask 1/N, so the layer outputs the **average** of its branches,
  the zero branch included: a skippable layer gives ``x + IB(x) / 2``, SE gives ``(SE(y) + y) / 2``, the kernel
  gives the mean of the 3x3, 5x5 and 7x7 depthwise branches (each with its own BN and activation).

``p = max(0, 1 - t / t_w)`` falls linearly from 1 to 0 over the first ``t_w`` steps (25% of the run by default;
CTL L133-143). The reward pass of the same step uses the same warmed-up network (the same masks feed both passes in
TuNAS's ``model_fn``); its RL learning rate is 0 throughout warmup, so only the baseline sees those rewards.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor, nn

from scarlet.decisions import ops
from scarlet.decisions.arch import DecisionArch
from scarlet.decisions.concrete import ConcreteLayer, make_divisible, resolve
from scarlet.decisions.space import Decision, Space
from scarlet.decisions.supernet import DecisionSupernet
from scarlet.errors import ScarletError

FILTER_ATTRS = ("filters", "expansion")
OP_ATTRS = ("kernel", "op", "attention")


def warmup_probability(step: int, warmup_steps: int) -> float:
    """Replacement probability at ``step``: ``1 - step / warmup_steps``, 0 from ``warmup_steps`` on."""
    if warmup_steps <= 0:
        return 0.0
    return max(0.0, 1.0 - step / warmup_steps)


def decision_kinds(space: Space) -> dict[str, str]:
    """``filters`` or ``op`` for every decision of a TuNAS space, by the layer attribute it sets."""
    kinds = {}
    for layer in space.layers:
        for name, v in layer.attrs:
            if isinstance(v, Decision):
                kinds[v.key] = "filters" if name in FILTER_ATTRS else "op" if name in OP_ATTRS else "other"
    return kinds


@dataclass(frozen=True)
class WarmSample:
    """A sampled architecture after warmup: ``arch`` (filters replaced) and the op decisions to average."""

    arch: DecisionArch
    averaged: frozenset = frozenset()


def apply_warmup(space: Space, indices: list[int], p_filters: float, p_ops: float,
                 generator: torch.Generator) -> tuple[list[int], frozenset]:
    """One coin per decision: filters -> largest choice with ``p_filters``; ops -> averaged with ``p_ops``.

    Returns the new indices and the keys of the averaged op decisions. Coins are drawn for every decision every
    step (whatever ``p``), so the random stream does not depend on the schedule.
    """
    kinds = decision_kinds(space)
    coins = torch.rand(len(space.decisions), generator=generator).tolist()
    out, averaged = list(indices), set()
    for i, (d, u) in enumerate(zip(space.decisions, coins)):
        if kinds[d.key] == "filters" and u < p_filters:
            out[i] = max(range(len(d.choices)), key=lambda j: d.choices[j])
        elif kinds[d.key] == "op" and u < p_ops:
            averaged.add(d.key)
    return out, frozenset(averaged)


# ------------------------------------------------------------------------------------------- averaged forward
def _mean(outputs: list[Tensor]) -> Tensor:
    return outputs[0] if len(outputs) == 1 else torch.stack(outputs).mean(0)


def mixed_layer_forward(layer: nn.Module, c: ConcreteLayer, x: Tensor, averaged_attrs: dict[str, int],
                        kernels: tuple, divisor: int, training: bool, momentum: float) -> Tensor:
    """One supernet layer with some op decisions averaged (``averaged_attrs``: attribute -> number of choices).

    ``c`` is the layer as resolved with a non-zero op; ``kernels`` the kernel choices of an averaged kernel.
    Uses ``ops``'s building blocks, so with nothing averaged it is ``ops.layer_forward``.
    """
    if not averaged_attrs or c.kind in ("conv_bias", "project", "identity"):
        return ops.layer_forward(c, x, layer.weights(c), training, momentum)
    bn = (training, momentum)
    ks = kernels if "kernel" in averaged_attrs else (c.kernel,)
    w = layer.weights(c)
    gate = 1.0 / averaged_attrs["op"] if "op" in averaged_attrs else 1.0  # the zero branch adds 0

    def branches(inp: Tensor, conv: str, norm: str, groups: int) -> Tensor:
        return _mean([ops.activation(ops.conv_norm(inp, layer.weights(replace(c, kernel=k)), conv, norm, *bn,
                                                   c.stride, k // 2, groups), c.act) for k in ks])

    if c.kind == "conv":
        return branches(x, "conv", "bn", 1)
    if c.kind == "sepconv":
        y = ops.conv_norm(branches(x, "dw", "bn1", c.c_in), w, "pw", "bn2", *bn)
        return x + gate * y if c.residual else y
    # inverted bottleneck
    y = ops.activation(ops.conv_norm(x, w, "expand", "bn1", *bn), c.act)
    y = branches(y, "dw", "bn2", c.hidden)
    if "attention" in averaged_attrs:
        with_se = replace(c, attention=1, reduced=make_divisible(0.25 * c.hidden, divisor))
        y = (ops.attention(y, with_se, layer.weights(with_se)) + (averaged_attrs["attention"] - 1) * y) \
            / averaged_attrs["attention"]
    elif c.attention:
        y = ops.attention(y, c, w)
    y = ops.conv_norm(y, w, "project", "bn3", *bn)
    return x + gate * y if c.residual else y


def mixed_forward(model: DecisionSupernet, x: Tensor, sample: WarmSample, training: bool,
                  momentum: float = ops.BN_MOMENTUM) -> Tensor:
    """The supernet's path of ``sample.arch`` with the op decisions ``sample.averaged`` averaged over branches."""
    space = model.space
    if space.family != "tunas":
        raise ScarletError(f"op warmup is defined for the TuNAS spaces, not {space.name}")
    values = sample.arch.as_dict()
    for key in sample.averaged:  # an averaged zero op: resolve the layer in its computing form
        choices = space.decision(key).choices
        if "zero" in choices:
            values[key] = next(v for v in choices if v != "zero")
    arch = DecisionArch(space.name, tuple((k, values[k]) for k, _ in sample.arch.values))
    layers = resolve(space, arch, x.shape[-1])
    pooled = False
    for spec, module, c in zip(space.layers, model.layers, layers):
        if c.kind == "identity":
            continue
        if c.kind == "conv_bias" and not pooled:
            x, pooled = ops.pool(x), True
        attrs = {name: len(v.choices) for name, v in spec.attrs
                 if isinstance(v, Decision) and v.key in sample.averaged}
        x = mixed_layer_forward(module, c, x, attrs, spec.choices("kernel"), space.divisor, training, momentum)
    if not pooled:
        x = ops.pool(x)
    return ops.classify(x, model.classifier.weight[:, :layers[-1].c_out], model.classifier.bias)


class WarmupPaths(nn.Module):
    """The supernet seen as a model of warm samples: ``forward(x, sample)`` (for the K-path step)."""

    def __init__(self, supernet: DecisionSupernet):
        super().__init__()
        self.supernet = supernet

    def forward(self, x: Tensor, sample: WarmSample) -> Tensor:
        return mixed_forward(self.supernet, x, sample, self.training)
