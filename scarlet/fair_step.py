"""The sequential fair step: the definition of correctness for every faster executor.

One step (FairNAS Algorithm 1): clear the gradients; for each of the step's paths, forward the same batch through
that single-path model and back-propagate its loss, so that gradients accumulate; then update once. Faster
executors must reproduce its gradients, BatchNorm running statistics and updated weights.
"""

from __future__ import annotations

import contextlib

import torch
import torch.nn.functional as F

from scarlet.supernet import Supernet


def sequential_step(model: Supernet, images: torch.Tensor, labels: torch.Tensor, perms: torch.Tensor,
                    optimizer: torch.optim.Optimizer | None, autocast_dtype: torch.dtype | None = None) -> torch.Tensor:
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
    if optimizer is not None:
        optimizer.step()
    return torch.stack(losses)
