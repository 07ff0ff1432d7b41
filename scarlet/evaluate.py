"""Evaluation of subnets with inherited weights, one architecture at a time (the reference evaluator).

BatchNorm statistics are recalibrated for each architecture: the running statistics of the modules on its path
are reset and re-estimated as a cumulative average (BN momentum None) over the calibration batches in train mode,
then the path is evaluated in eval mode. The model passed in is not modified: the work happens on a copy, in the
device's preferred memory layout (:mod:`scarlet.executor.layout`: channels-last on a CPU).
"""

from __future__ import annotations

import copy
from typing import Iterable, Sequence

import torch
from torch import nn

from scarlet.supernet import Supernet


def path_modules(model: Supernet, genes: Sequence[int]) -> list[nn.Module]:
    return [model.stem, model.first, *(layer[g] for layer, g in zip(model.layers, genes)), model.head]


def _bn_layers(modules: Iterable[nn.Module]) -> list[nn.modules.batchnorm._BatchNorm]:
    return [m for mod in modules for m in mod.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def recalibrate_bn(model: Supernet, genes: Sequence[int], calib_batches: Sequence) -> None:
    """Re-estimate the BN running statistics of ``genes``'s path on ``calib_batches`` (cumulative average)."""
    bns = _bn_layers(path_modules(model, genes))
    saved = [bn.momentum for bn in bns]
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None
    model.train()
    for images, _ in calib_batches:
        model(images, genes)
    for bn, momentum in zip(bns, saved):
        bn.momentum = momentum
    model.eval()


@torch.no_grad()
def accuracy(model: Supernet, genes: Sequence[int], val_batches: Sequence) -> float:
    model.eval()
    correct = total = 0
    for images, labels in val_batches:
        correct += (model(images, genes).argmax(1) == labels).sum().item()
        total += labels.numel()
    return correct / max(total, 1)


def evaluate_one_by_one(model: Supernet, archs: Sequence[Sequence[int]], calib_batches: Sequence,
                        val_batches: Sequence, memory_format: str = "auto") -> list[float]:
    """Top-1 accuracy of each architecture after BN recalibration; ``model`` is left untouched.

    ``memory_format``: "auto" (the device's preferred layout), "channels_last" or "contiguous"."""
    from scarlet.executor.layout import batches_in_layout, memory_format as layout, to_layout

    fmt = layout(memory_format, next(model.parameters()).device)
    work = to_layout(copy.deepcopy(model), fmt)
    calib_batches, val_batches = batches_in_layout(calib_batches, fmt), batches_in_layout(val_batches, fmt)
    out = []
    for arch in archs:
        genes = tuple(arch)
        if calib_batches:
            recalibrate_bn(work, genes, calib_batches)
        out.append(accuracy(work, genes, val_batches))
    return out
