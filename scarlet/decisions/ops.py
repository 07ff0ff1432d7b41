"""The one definition of each layer's computation, as functions of a concrete layer and its weight tensors.

``layer_forward(layer, x, w, training)`` reads ``w`` by the standalone module's state-dict names (``conv.weight``,
``bn1.running_mean``, ``att.reduce.bias``, ...). The standalone network passes its own parameters; the masked
supernet passes slices of its widest weights. So a path of the supernet and the standalone network built from the
same architecture run the same code, and differ only in where the tensors come from.

Layers (``ConcreteLayer.kind``):

- ``conv``: k x k conv (stride) + BN + activation; ``conv_bias``: 1x1 conv with bias + activation (after the pool);
- ``sepconv``: depthwise k x k + BN + activation, 1x1 conv + BN, optional residual;
- ``ib``: 1x1 expansion + BN + act, depthwise k x k (stride) + BN + act, optional attention, 1x1 projection + BN,
  optional residual (TuNAS ``_build_depthwise_bottleneck``; the expansion conv exists even at expansion 1);
- ``project``: 1x1 conv (stride) + BN, FBNet's skip where shapes change.

Attention with r splits (FP-NAS's split-attention, generalised from ResNeSt; the paper gives no details, this is
the sheet's reading B5.4 with the SE form of the two 1x1 convs): the depthwise conv has channel multiplier r (its
output channel ``g * r + m`` is split m of channel g), the splits are summed, pooled, reduced (1x1 + bias, ReLU),
expanded to r logits per channel (1x1 + bias), softmaxed over the splits and used to weight the sum of the splits.
r = 1 is squeeze-and-excitation with a sigmoid gate (TuNAS) or hard-sigmoid gate (FBNet). Under this reading the
largest ``fbnetv2-f++`` network costs 162.2M MAdds at 128x128 (126.3M with 2 splits everywhere, 108.3M with SE),
against the paper's "largest model 122 MFLOPs at input 128": FP-NAS's split-attention must be cheaper than this
reading (its Fig. 2, which defines it, is not in the text).
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor

from scarlet.decisions.concrete import ConcreteLayer

BN_EPS = 1e-3  # TuNAS
BN_MOMENTUM = 0.01  # TensorFlow's decay 0.99


def activation(x: Tensor, name: str) -> Tensor:
    """``relu`` or ``hswish`` (x * relu6(x + 3) / 6, TuNAS's SWISH6 and FBNet's swish)."""
    return F.relu(x) if name == "relu" else F.hardswish(x)


def batch_norm(x: Tensor, w: Mapping[str, Tensor], prefix: str, training: bool, momentum: float) -> Tensor:
    return F.batch_norm(x, w[f"{prefix}.running_mean"], w[f"{prefix}.running_var"], w[f"{prefix}.weight"],
                        w[f"{prefix}.bias"], training, momentum, BN_EPS)


def attention(y: Tensor, layer: ConcreteLayer, w: Mapping[str, Tensor]) -> Tensor:
    r, h = layer.attention, layer.hidden
    if r == 1:
        s = y.mean((2, 3), keepdim=True)
    else:
        splits = y.unflatten(1, (h, r))
        s = splits.sum(2).mean((2, 3), keepdim=True)
    s = F.relu(F.conv2d(s, w["att.reduce.weight"], w["att.reduce.bias"]))
    s = F.conv2d(s, w["att.expand.weight"], w["att.expand.bias"])
    if r == 1:
        return y * (torch.sigmoid(s) if layer.gate == "sigmoid" else F.hardsigmoid(s))
    weights = torch.softmax(s.unflatten(1, (h, r)), dim=2)
    return (splits * weights).sum(2)


def conv_norm(x: Tensor, w: Mapping[str, Tensor], conv: str, bn: str, training: bool, momentum: float,
              stride: int = 1, padding: int = 0, groups: int = 1) -> Tensor:
    """Conv then BN; in a BN-folded network the BN lives in the conv's weight and bias and has no tensors."""
    y = F.conv2d(x, w[f"{conv}.weight"], w.get(f"{conv}.bias"), stride, padding, 1, groups)
    return batch_norm(y, w, bn, training, momentum) if f"{bn}.weight" in w else y


# (conv, BN) pairs of each layer kind, in order: what BN folding folds
CONV_BN = {"conv": (("conv", "bn"),), "project": (("conv", "bn"),), "sepconv": (("dw", "bn1"), ("pw", "bn2")),
           "ib": (("expand", "bn1"), ("dw", "bn2"), ("project", "bn3")), "conv_bias": ()}


def layer_forward(layer: ConcreteLayer, x: Tensor, w: Mapping[str, Tensor], training: bool,
                  momentum: float = BN_MOMENTUM) -> Tensor:
    """One layer; in training mode BN uses batch statistics and moves its running statistics by ``momentum``."""
    kind, k, bn = layer.kind, layer.kernel, (training, momentum)
    if kind == "conv":
        return activation(conv_norm(x, w, "conv", "bn", *bn, layer.stride, k // 2), layer.act)
    if kind == "conv_bias":
        return activation(F.conv2d(x, w["conv.weight"], w["conv.bias"]), layer.act)
    if kind == "project":
        return conv_norm(x, w, "conv", "bn", *bn, layer.stride)
    if kind == "sepconv":
        y = activation(conv_norm(x, w, "dw", "bn1", *bn, layer.stride, k // 2, layer.c_in), layer.act)
        y = conv_norm(y, w, "pw", "bn2", *bn)
        return x + y if layer.residual else y
    if kind == "ib":
        y = activation(conv_norm(x, w, "expand", "bn1", *bn), layer.act)
        y = activation(conv_norm(y, w, "dw", "bn2", *bn, layer.stride, k // 2, layer.hidden), layer.act)
        if layer.attention:
            y = attention(y, layer, w)
        y = conv_norm(y, w, "project", "bn3", *bn)
        return x + y if layer.residual else y
    if kind == "identity":
        return x
    raise ValueError(f"unknown layer kind {kind!r}")


def pool(x: Tensor) -> Tensor:
    return x.mean((2, 3), keepdim=True)


def classify(x: Tensor, weight: Tensor, bias: Tensor) -> Tensor:
    return F.linear(x.flatten(1), weight, bias)


def network_forward(layers, x: Tensor, weights, classifier: tuple[Tensor, Tensor], training: bool,
                    momentum: float = BN_MOMENTUM) -> Tensor:
    """Run ``layers`` (concrete, identities may be left out); ``weights(i)`` gives layer i's tensors.

    The global average pool sits before the first ``conv_bias`` layer (MobileNetV3's head) or after the last layer.
    """
    pooled = False
    for i, layer in enumerate(layers):
        if layer.kind == "conv_bias" and not pooled:
            x, pooled = pool(x), True
        x = layer_forward(layer, x, weights(i), training, momentum)
    if not pooled:
        x = pool(x)
    return classify(x, *classifier)
