"""Batched evaluation of P arbitrary architectures on the same batches (several may share choices, duplicates
allowed), equal to evaluating them one by one with :func:`scarlet.evaluate.evaluate_one_by_one`.

Per layer, every distinct choice runs once on the stacked activations of the paths that took it
(:mod:`scarlet.executor.stacked`). BN recalibration is per path: each path's statistics come from its own
activations over the calibration batches, averaged cumulatively as BN momentum None does, and are kept in the
executor (:class:`~scarlet.executor.norm.CalibrationNorm`); the model's buffers and mode are never changed.
With no calibration batches the paths are evaluated with the model's own running statistics, as the reference
does. Batches are put in the device's preferred memory layout (:mod:`scarlet.executor.layout`) first.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

from scarlet.executor.layout import batches_in_layout, memory_format as layout, to_layout
from scarlet.executor.norm import CalibrationNorm, EvalNorm
from scarlet.executor.plan import build_plan
from scarlet.executor.stacked import StackedForward


def _genes(model, arch) -> tuple[int, ...]:
    return tuple(model.arch(arch).genes)


def _default_chunk(model, images: torch.Tensor, num_paths: int) -> int:
    if images.device.type != "cuda":
        return num_paths
    from scarlet.executor.memory import activation_elements_per_image

    free, _ = torch.cuda.mem_get_info(images.device)
    # No autograd: a few activations alive at a time per path, far less than a training path.
    per_path = activation_elements_per_image(model) * images.shape[0] * images.element_size() / 4
    return max(1, min(num_paths, int(0.5 * free // max(per_path, 1))))


def _calibrated(forward: StackedForward, plan, routing, calib: list, device) -> EvalNorm:
    """Eval-mode BN for ``plan``'s paths: per-path statistics recalibrated on ``calib``, or the model's own."""
    if not calib:
        return EvalNorm(None)
    norm = CalibrationNorm()
    for images, _ in calib:
        norm.next_batch()
        x0 = forward.stem(images.to(device), norm, repeat=plan.num_paths)
        forward.logits(x0, plan, routing, norm)
    return EvalNorm(norm.stats)


@torch.no_grad()
def batched_logits(model, archs: Sequence, calib_batches: Iterable | None, images: torch.Tensor, *,
                   grouping: str = "shape", kernels: str = "auto", memory_format: str = "auto") -> torch.Tensor:
    """Logits (P, B, classes) of every architecture on ``images`` after per-path recalibration."""
    genes = [_genes(model, a) for a in archs]
    device = next(model.parameters()).device
    fmt = layout(memory_format, device)
    calib_batches, images = batches_in_layout(calib_batches or [], fmt), to_layout(images, fmt)
    forward = StackedForward(model, kernels)
    plan = build_plan(model, genes, grouping)
    routing = plan.routing().to(device)
    norm = _calibrated(forward, plan, routing, list(calib_batches or []), device)
    logits, order = forward.logits(forward.stem(images.to(device), norm, len(genes)), plan, routing, norm)
    return logits.index_select(1, order).transpose(0, 1)


@torch.no_grad()
def evaluate_batched(model, archs: Sequence, calib_batches: Iterable | None, val_batches: Iterable,
                     chunk: int | None = None, *, grouping: str = "shape", kernels: str = "auto",
                     memory_format: str = "auto") -> list[float]:
    """Top-1 accuracy of each architecture after per-path BN recalibration (in ``archs`` order).

    ``chunk``: paths evaluated together (default: all on a CPU, from free memory on a GPU); the batches are
    iterated once per chunk. Empty or None ``calib_batches``: the model's running statistics are used.
    """
    genes = [_genes(model, a) for a in archs]
    if not genes:
        return []
    device = next(model.parameters()).device
    fmt = layout(memory_format, device)
    calib = batches_in_layout(calib_batches, fmt) if calib_batches is not None else []
    val = batches_in_layout(val_batches, fmt)
    forward = StackedForward(model, kernels)
    if chunk is None:
        chunk = _default_chunk(model, val[0][0].to(device), len(genes)) if val else len(genes)
    out: list[float] = []
    for start in range(0, len(genes), chunk):
        part = genes[start:start + chunk]
        plan = build_plan(model, part, grouping)
        routing = plan.routing().to(device)
        norm = _calibrated(forward, plan, routing, calib, device)
        correct = torch.zeros(len(part), dtype=torch.int64, device=device)
        total = 0
        for images, labels in val:
            images, labels = images.to(device), labels.to(device)
            logits, order = forward.logits(forward.stem(images, norm, len(part)), plan, routing, norm)
            correct += (logits.argmax(-1) == labels[:, None]).sum(0).index_select(0, order)
            total += labels.numel()
        out.extend(c / max(total, 1) for c in correct.tolist())
    return out


def evaluate_one_by_one(model, archs: Sequence, calib_batches: Iterable | None, val_batches: Iterable,
                        chunk: int | None = None) -> list[float]:
    """The reference: :func:`scarlet.evaluate.evaluate_one_by_one` (``chunk`` is accepted and ignored)."""
    from scarlet.evaluate import evaluate_one_by_one as reference

    genes = [_genes(model, a) for a in archs]
    return reference(model, genes, [] if calib_batches is None else calib_batches, val_batches)
