"""Building blocks: the MBConv choice block, squeeze-and-excitation and the skip choice (ELS, skip, ELS-ReLU).

Conventions follow the authors' released model code (REFERENCE section 4): SCARLET blocks use h-swish for both
activations and SE with hidden // 4 reduced channels and an h-sigmoid gate; FairNAS blocks use ReLU6 and no SE.
The forward of each block is flat over named submodules so that folding and export can read it.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from scarlet.space import Choice


def activation(family: str) -> nn.Module:
    """h-swish (x * relu6(x + 3) / 6) inside SCARLET blocks, ReLU6 inside FairNAS blocks."""
    return nn.Hardswish() if family == "scarlet" else nn.ReLU6()


class SqueezeExcite(nn.Module):
    """Global average pool, 1x1 reduce (bias) + ReLU, 1x1 expand (bias), h-sigmoid gate, multiply."""

    def __init__(self, channels: int, reduced: int):
        super().__init__()
        self.conv_reduce = nn.Conv2d(channels, reduced, 1, bias=True)
        self.act = nn.ReLU()
        self.conv_expand = nn.Conv2d(reduced, channels, 1, bias=True)
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean((2, 3), keepdim=True)
        s = self.gate(self.conv_expand(self.act(self.conv_reduce(s))))
        return x * s


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand, BN, act; kxk depthwise (stride), BN, act; optional SE; 1x1 project, BN.

    ``hidden`` is round(in_channels * expansion) of the supernet block; ``in_channels`` may be smaller than
    the layer's nominal input when an identity before this block was folded away (deployment), in which case
    the block has no residual.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int, kernel: int,
                 se: bool, family: str, hidden: int | None = None, residual: bool | None = None):
        super().__init__()
        hidden = round(in_channels * expansion) if hidden is None else hidden
        self.in_channels, self.out_channels, self.hidden = in_channels, out_channels, hidden
        self.stride, self.kernel = stride, kernel
        self.conv_pw = nn.Conv2d(in_channels, hidden, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(hidden)
        self.act1 = activation(family)
        self.conv_dw = nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False)
        self.bn2 = nn.BatchNorm2d(hidden)
        self.act2 = activation(family)
        self.se = SqueezeExcite(hidden, hidden // 4) if se else None
        self.conv_pwl = nn.Conv2d(hidden, out_channels, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_channels)
        self.residual = (stride == 1 and in_channels == out_channels) if residual is None else residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act1(self.bn1(self.conv_pw(x)))
        y = self.act2(self.bn2(self.conv_dw(y)))
        if self.se is not None:
            y = self.se(y)
        y = self.bn3(self.conv_pwl(y))
        return x + y if self.residual else y


class Stabilizer(nn.Module):
    """The skip choice of a SCARLET layer, in one of three kinds.

    - ``els``: the equivariant learnable stabilizer, a bias-free 1x1 conv with the layer's stride (no BN, no
      activation); linear, so it folds into the next convolution (SCARLET Lemma 4.1).
    - ``skip``: the plain identity of the "without ELS" ablation; subsampled on stride 2, missing channels zero.
    - ``els-relu``: ELS followed by ReLU, the non-equivariant ablation; it cannot be folded.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int, kind: str):
        super().__init__()
        if kind not in ("els", "skip", "els-relu"):
            raise ValueError(f"unknown skip kind {kind!r}")
        if kind == "skip" and out_channels < in_channels:
            raise ValueError("a plain skip cannot drop channels")
        self.kind, self.in_channels, self.out_channels, self.stride = kind, in_channels, out_channels, stride
        self.conv = None if kind == "skip" else nn.Conv2d(in_channels, out_channels, 1, stride, bias=False)

    @property
    def foldable(self) -> bool:
        return self.kind != "els-relu"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.conv is None:
            if self.stride > 1:
                x = x[:, :, :: self.stride, :: self.stride]
            if self.out_channels > self.in_channels:
                x = F.pad(x, (0, 0, 0, 0, 0, self.out_channels - self.in_channels))
            return x
        y = self.conv(x)
        return torch.relu(y) if self.kind == "els-relu" else y


def build_choice(choice: Choice, in_channels: int, out_channels: int, stride: int, family: str,
                 skip: str) -> nn.Module:
    if choice.identity:
        return Stabilizer(in_channels, out_channels, stride, skip)
    return MBConv(in_channels, out_channels, stride, choice.expansion, choice.kernel, choice.se, family)


def init_weights(module: nn.Module) -> None:
    """MnasNet/EfficientNet initialisation: He-normal on fan-out per group, unit BN, small classifier.

    The fan-out of a grouped conv counts one group (k*k*out/groups), as in the authors' TensorFlow code; PyTorch's
    ``kaiming_normal_`` counts all output channels, which leaves depthwise weights ~sqrt(channels) times smaller.
    Followed by BN, such tiny weights get huge effective learning rates, and the summed gradients of a fair step
    made supernet training diverge.
    """
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            fan_out = m.kernel_size[0] * m.kernel_size[1] * m.out_channels // m.groups
            nn.init.normal_(m.weight, 0.0, math.sqrt(2.0 / fan_out))
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
