"""Evaluation of architectures of a decision supernet with inherited weights (the reference evaluator).

Each architecture's standalone network is built with the supernet's sliced weights (the supernet is not
modified), its BN running statistics are reset and re-estimated as a cumulative average over the calibration
batches in train mode (as ``scarlet.evaluate`` does for the 19-layer spaces), then it is evaluated in eval mode.
TuNAS instead scores its reward with batch statistics (sheet A2): pass no calibration batches and
``batch_statistics=True`` for that.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from scarlet.decisions.standalone import DecisionStandaloneNet
from scarlet.decisions.supernet import DecisionSupernet


@torch.no_grad()
def recalibrate_bn(net: DecisionStandaloneNet, calib_batches: Sequence) -> None:
    """Reset ``net``'s BN running statistics and re-estimate them as the average over ``calib_batches``."""
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.reset_running_stats()
    net.train()
    saved = net.bn_momentum
    for t, (images, _) in enumerate(calib_batches):
        net.bn_momentum = 1.0 / (t + 1)
        net(images)
    net.bn_momentum = saved
    net.eval()


@torch.no_grad()
def accuracy(net: nn.Module, batches: Sequence, batch_statistics: bool = False) -> float:
    """Top-1 accuracy (a fraction) of ``net`` on ``batches``; BN in train mode when ``batch_statistics``."""
    net.train(batch_statistics)
    saved = getattr(net, "bn_momentum", None)
    if batch_statistics:
        net.bn_momentum = 0.0  # batch statistics without moving the running statistics
    correct = total = 0
    for images, labels in batches:
        correct += (net(images).argmax(1) == labels).sum().item()
        total += labels.numel()
    if batch_statistics:
        net.bn_momentum = saved
    return correct / max(total, 1)


def evaluate_archs(supernet: DecisionSupernet, archs: Sequence, calib_batches: Sequence, val_batches: Sequence,
                   batch_statistics: bool = False) -> list[float]:
    """Top-1 accuracy of each architecture with the supernet's weights, after BN recalibration if given batches."""
    calib_batches, val_batches = list(calib_batches), list(val_batches)
    out = []
    for arch in archs:
        net = supernet.build_standalone(arch)
        if calib_batches:
            recalibrate_bn(net, calib_batches)
        out.append(accuracy(net, val_batches, batch_statistics))
    return out
