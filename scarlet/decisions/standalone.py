"""Standalone network of any architecture of a decision space: plain ``nn.Conv2d``, ``nn.BatchNorm2d``, ``nn.Linear``.

The modules only hold the tensors; their forward is ``scarlet.decisions.ops.layer_forward`` (the computation the
supernet runs too). Identity layers (zeroed TuNAS layers, FBNet skips where shapes agree) are left out.
``fold_bn`` gives the inference network with BN folded into the convs. ``scarlet.export.save_program`` and
``save_onnx`` take either network as they are (checked by hand on a folded mobilenetv3-like network: the program
and the onnxruntime session match it with a dynamic batch; ``torch.export`` takes about 8 s, too slow for a test).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from scarlet.decisions import ops
from scarlet.decisions.concrete import ConcreteLayer, resolve
from scarlet.decisions.space import Space, get_space


def conv2d(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1, bias: bool = False):
    return nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=bias)


def batch_norm2d(c: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(c, eps=ops.BN_EPS, momentum=ops.BN_MOMENTUM)


class Attention(nn.Module):
    """Weights of SE (r = 1) or split-attention (r splits): 1x1 reduce with bias, 1x1 expand to r per channel."""

    def __init__(self, hidden: int, reduced: int, splits: int):
        super().__init__()
        self.reduce = conv2d(hidden, reduced, bias=True)
        self.expand = conv2d(reduced, hidden * splits, bias=True)


class DecisionLayer(nn.Module):
    """The weights of one concrete layer, named as ``ops.layer_forward`` reads them."""

    def __init__(self, layer: ConcreteLayer):
        super().__init__()
        self.layer = layer
        c_in, c_out, k, s = layer.c_in, layer.c_out, layer.kernel, layer.stride
        if layer.kind in ("conv", "project"):
            self.conv, self.bn = conv2d(c_in, c_out, k, s), batch_norm2d(c_out)
        elif layer.kind == "conv_bias":
            self.conv = conv2d(c_in, c_out, bias=True)
        elif layer.kind == "sepconv":
            self.dw, self.bn1 = conv2d(c_in, c_in, k, s, groups=c_in), batch_norm2d(c_in)
            self.pw, self.bn2 = conv2d(c_in, c_out), batch_norm2d(c_out)
        elif layer.kind == "ib":
            h, r = layer.hidden, max(layer.attention, 1)
            self.expand, self.bn1 = conv2d(c_in, h), batch_norm2d(h)
            self.dw, self.bn2 = conv2d(h, h * r, k, s, groups=h), batch_norm2d(h * r)
            if layer.attention:
                self.att = Attention(h, layer.reduced, r)
            self.project, self.bn3 = conv2d(h, c_out), batch_norm2d(c_out)
        else:
            raise ValueError(f"no module for a {layer.kind} layer")

    def tensors(self) -> dict[str, Tensor]:
        return {**dict(self.named_parameters()), **dict(self.named_buffers())}

    def forward(self, x: Tensor) -> Tensor:
        return ops.layer_forward(self.layer, x, self.tensors(), self.training)


class DecisionStandaloneNet(nn.Module):
    """The deployed network of ``arch`` in ``space`` with ``num_classes`` outputs (TuNAS trains with 1001)."""

    def __init__(self, space: str | Space, arch, num_classes: int = 1000, resolution: int = 224):
        super().__init__()
        self.space = get_space(space)
        self.concrete = [c for c in resolve(self.space, arch, resolution) if c.kind != "identity"]
        self.layers = nn.ModuleList(DecisionLayer(c) for c in self.concrete)
        self.classifier = nn.Linear(self.concrete[-1].c_out, num_classes)
        self.bn_momentum = ops.BN_MOMENTUM  # BN recalibration sets 1 / (batches seen) for a cumulative average

    def forward(self, x: Tensor) -> Tensor:
        return ops.network_forward(self.concrete, x, lambda i: self.layers[i].tensors(),
                                   (self.classifier.weight, self.classifier.bias), self.training, self.bn_momentum)


@torch.no_grad()
def fold_bn(net: DecisionStandaloneNet) -> DecisionStandaloneNet:
    """A copy of ``net`` with every BN folded into the conv before it (a conv with bias); for inference only.

    Uses the running statistics: the folded network equals ``net`` in eval mode.
    """
    folded = copy.deepcopy(net).eval()
    for module in folded.layers:
        for conv_name, bn_name in ops.CONV_BN[module.layer.kind]:
            conv, bn = getattr(module, conv_name), getattr(module, bn_name)
            w = conv.weight.double()
            scale = bn.weight.double() / torch.sqrt(bn.running_var.double() + bn.eps)
            new = nn.Conv2d(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                            groups=conv.groups, bias=True).to(conv.weight)
            new.weight.copy_(w * scale[:, None, None, None])
            new.bias.copy_(bn.bias.double() - bn.running_mean.double() * scale)
            setattr(module, conv_name, new)
            delattr(module, bn_name)
    return folded
