"""Supernet initialisation schemes (``SupernetConfig.init``, ``python -m scarlet.train --init``).

Neither FairNAS nor SCARLET specifies how a supernet is initialised; the authors' released model code initialises
every layer of every choice independently. On a small budget such a supernet does not learn as soon as a layer has
several choices: at the layers without a residual shortcut (stride 2 or a channel change) every choice hands the
next layer its own, unrelated basis of features, and the single-path models pull the shared weights apart
(measured in /work/shared/LEARNING.md and issue 9). The schemes, each a superset of the previous one:

- ``independent``: every choice has its own independent MnasNet-style init (:func:`scarlet.blocks.init_weights`);
  the papers' setting.
- ``stable``: ``independent``, then two standard identity-at-init choices:

  * zero-init residual: the scale of the last BN of every MBConv choice that has an identity shortcut is 0, so
    each residual block starts as the identity (Goyal et al. 2017, "Accurate, Large Minibatch SGD", section 5.1;
    also He et al. 2019 "Bag of Tricks");
  * ELS as the identity: the ELS 1x1 conv starts as the identity on the channels it shares with its input and
    zero on extra output channels, which is what the plain skip computes (stride 2 subsamples in both).

- ``same-function``: ``stable``, and every MBConv choice of a layer starts as one function. One 3x3,
  expansion-3 core per layer (the smallest choice's independent init) is copied into each choice: the k5/k7
  depthwise kernels hold the 3x3 core at their centre and zeros outside; the extra hidden channels of an
  expansion-6 choice keep their own random expand and depthwise weights but feed the projection through zero
  columns; the SE expand conv starts at zero weight and bias, so the SE gate is the constant 0.5 (in training
  mode the last BN normalises that constant away; the gate keeps a non-zero gradient, unlike a gate saturated at
  1). Each choice still owns its weights and they diverge from the first update. This scheme is new (no paper
  does it): it is an option, compared with ``independent`` in the ranking study.
"""

from __future__ import annotations

import torch
from torch import nn

from scarlet.blocks import MBConv, Stabilizer
from scarlet.errors import ScarletError

INIT_SCHEMES = ("independent", "stable", "same-function")


@torch.no_grad()
def zero_init_residual(model: nn.Module) -> None:
    """Last BN scale 0 in every MBConv with an identity shortcut: the block computes x + 0 at init."""
    for m in model.modules():
        if isinstance(m, MBConv) and m.residual:
            nn.init.zeros_(m.bn3.weight)


@torch.no_grad()
def identity_init_stabilizers(model: nn.Module) -> None:
    """Every ELS (and ELS-ReLU) conv as the identity on the shared channels, zero elsewhere (= the plain skip)."""
    for m in model.modules():
        if isinstance(m, Stabilizer) and m.conv is not None:
            w = m.conv.weight  # (out, in, 1, 1)
            w.zero_()
            n = min(m.in_channels, m.out_channels)
            w[torch.arange(n), torch.arange(n), 0, 0] = 1.0


@torch.no_grad()
def same_function_init(layer: nn.ModuleList) -> None:
    """Make every MBConv choice of one searchable layer compute the function of its smallest choice's init."""
    blocks = [c for c in layer if isinstance(c, MBConv)]
    if not blocks:
        return
    core = min(blocks, key=lambda b: (b.hidden, b.kernel, b.se is not None))
    h, k = core.hidden, core.kernel
    for b in blocks:
        if b is core:
            continue
        if b.hidden < h or b.kernel < k:
            raise ScarletError(f"same-function init: choice e?k{b.kernel} (hidden {b.hidden}) is smaller than "
                               f"the core (hidden {h}, kernel {k})")
        b.conv_pw.weight[:h].copy_(core.conv_pw.weight)
        pad = (b.kernel - k) // 2
        b.conv_dw.weight[:h].zero_()
        b.conv_dw.weight[:h, :, pad:pad + k, pad:pad + k].copy_(core.conv_dw.weight)
        b.conv_pwl.weight[:, :h].copy_(core.conv_pwl.weight)
        b.conv_pwl.weight[:, h:].zero_()
        for mine, theirs in ((b.bn1, core.bn1), (b.bn2, core.bn2)):
            mine.weight[:h].copy_(theirs.weight)
            mine.bias[:h].copy_(theirs.bias)
        b.bn3.weight.copy_(core.bn3.weight)
        b.bn3.bias.copy_(core.bn3.bias)
    for b in blocks:
        if b.se is not None:
            nn.init.zeros_(b.se.conv_expand.weight)
            nn.init.zeros_(b.se.conv_expand.bias)


def apply_init(model, scheme: str) -> None:
    """Apply ``scheme`` (one of :data:`INIT_SCHEMES`) to a supernet whose weights have the independent init."""
    if scheme not in INIT_SCHEMES:
        raise ScarletError(f"unknown supernet init {scheme!r}; choose one of {', '.join(INIT_SCHEMES)}")
    if scheme == "independent":
        return
    zero_init_residual(model)
    identity_init_stabilizers(model)
    if scheme == "same-function":
        for layer in model.layers:
            same_function_init(layer)
