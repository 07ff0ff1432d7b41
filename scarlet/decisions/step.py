"""The sequential K-path step for decision supernets: the reference for any batched executor of these spaces.

The idea of :func:`scarlet.fair_step.sequential_step`, for architectures that are decision values rather than one
choice index per layer: clear the gradients; for each of the step's K architectures, forward its batch through
that path and back-propagate, so that gradients accumulate; then update once.

TuNAS trains one sampled architecture per TPU core on the core's own 128 images and averages the gradients over
the cores (sheet A4, A8.4): ``micro_batches=True`` splits the batch into K equal parts, one per path, and
``reduction="mean"`` scales each path's loss by 1/K. FairNAS-style steps (every path on the whole batch, summed
gradients) are ``micro_batches=False, reduction="sum"``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from scarlet.decisions.supernet import DecisionSupernet
from scarlet.errors import ScarletError


def sequential_k_path_step(model: DecisionSupernet, images: torch.Tensor, labels: torch.Tensor, archs: list,
                           optimizer: torch.optim.Optimizer | None, micro_batches: bool = True,
                           reduction: str = "mean", label_smoothing: float = 0.0) -> torch.Tensor:
    """Train the K paths ``archs`` on one batch and update once; return the K (unscaled) losses.

    ``label_smoothing`` is passed to the cross-entropy (TuNAS trains with 0.1).

    With ``optimizer=None`` the accumulated gradients are left in ``.grad`` and no update is made (for tests).
    """
    k = len(archs)
    if k < 1:
        raise ScarletError("a K-path step needs at least one architecture")
    if reduction not in ("mean", "sum"):
        raise ScarletError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
    if micro_batches and images.shape[0] % k:
        raise ScarletError(f"batch of {images.shape[0]} images does not split into {k} equal micro-batches")
    model.train()
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
    xs = images.chunk(k) if micro_batches else [images] * k
    ys = labels.chunk(k) if micro_batches else [labels] * k
    scale = 1.0 / k if reduction == "mean" else 1.0
    losses = []
    for arch, x, y in zip(archs, xs, ys):
        loss = F.cross_entropy(model(x, arch), y, label_smoothing=label_smoothing)
        (loss * scale).backward()
        losses.append(loss.detach())
    if optimizer is not None:
        optimizer.step()
    return torch.stack(losses)
