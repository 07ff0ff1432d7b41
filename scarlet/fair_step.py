"""The sequential fair step: the definition of correctness for every faster executor.

One step (FairNAS Algorithm 1): clear the gradients; for each of the step's paths, forward the same batch through
that single-path model and back-propagate its loss, so that gradients accumulate; then update once. Faster
executors must reproduce its gradients, BatchNorm running statistics and updated weights.

``shared_grad`` says what the parts every path uses (stem, first block, head) receive: ``"sum"`` (FairNAS
Algorithm 1 as written: the m paths' gradients add up, so the shared parts step m times as far as a choice) or
``"mean"`` (their gradient divided by the number of paths, one path's worth, like every choice). Choices get one
gradient each under strict fairness either way. :func:`scale_shared_gradients` is the one definition, applied by
every executor after the backward passes and before the update.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from scarlet.errors import ScarletError
from scarlet.supernet import Supernet

SHARED_GRAD_MODES = ("sum", "mean")


def shared_parameters(model: Supernet):
    """The parameters every path of a step uses: stem, first block and head."""
    for part in (model.stem, model.first, model.head):
        yield from part.parameters()


@torch.no_grad()
def scale_shared_gradients(model: Supernet, num_paths: int, mode: str) -> None:
    """``mode="mean"``: divide the accumulated gradients of the shared parameters by ``num_paths``."""
    if mode not in SHARED_GRAD_MODES:
        raise ScarletError(f"unknown shared_grad {mode!r}; choose one of {', '.join(SHARED_GRAD_MODES)}")
    if mode == "sum" or num_paths == 1:
        return
    for p in shared_parameters(model):
        if p.grad is not None:
            p.grad.div_(num_paths)


def sequential_step(model: Supernet, images: torch.Tensor, labels: torch.Tensor, perms: torch.Tensor,
                    optimizer: torch.optim.Optimizer | None, autocast_dtype: torch.dtype | None = None,
                    shared_grad: str = "sum") -> torch.Tensor:
    """Train the paths given by the columns of ``perms`` (layers x paths) on one batch; return their losses.

    With ``optimizer=None`` the accumulated gradients are left in ``.grad`` and no update is made (for tests).
    """
    model.train()
    if optimizer is not None:
        optimizer.zero_grad(set_to_none=True)
    losses = []
    for k in range(perms.shape[1]):
        arch = perms[:, k].tolist()
        ctx = (torch.autocast(images.device.type, dtype=autocast_dtype) if autocast_dtype is not None
               else contextlib.nullcontext())
        with ctx:
            loss = F.cross_entropy(model(images, arch), labels)
        loss.backward()
        losses.append(loss.detach().float())
    scale_shared_gradients(model, perms.shape[1], shared_grad)
    if optimizer is not None:
        optimizer.step()
    return torch.stack(losses)
