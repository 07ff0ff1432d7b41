"""Memory layout of models and batches: channels-last on a CPU, PyTorch's default (NCHW) elsewhere.

On a CPU, oneDNN runs convolutions, depthwise ones above all, far faster on NHWC ("channels-last") tensors: one
sequential fair step of the default job (scarlet-s2, width 0.25, 32x32, batch 64, 13 paths, 1 thread) takes
about 0.4x the time of the same step in NCHW (``benchmarks/results/fair_step_cpu.json``). The result is the same
computation in another summation order, equal within floating-point tolerance (tests/executor/test_layout.py).
On CUDA the layout is left as it is: nothing was measured there.

Only the layout of the model's parameters and of the input batch is chosen; every op keeps the layout of its
input, so activations follow.
"""

from __future__ import annotations

import torch

from scarlet.errors import ScarletError

MEMORY_FORMATS = {"channels_last": torch.channels_last, "contiguous": torch.contiguous_format}
CHOICES = ("auto", *MEMORY_FORMATS)


def memory_format(name: str, device) -> torch.memory_format:
    """The layout for ``name`` ("auto", "channels_last", "contiguous") on ``device``."""
    if name == "auto":
        return torch.channels_last if torch.device(device).type == "cpu" else torch.contiguous_format
    if name not in MEMORY_FORMATS:
        raise ScarletError(f"unknown memory format {name!r}; choose one of {', '.join(CHOICES)}")
    return MEMORY_FORMATS[name]


def to_layout(x, fmt: torch.memory_format):
    """A module (in place, returned) or a 4-d tensor in layout ``fmt``; other tensors (labels) unchanged."""
    if isinstance(x, torch.nn.Module):
        return x.to(memory_format=fmt)
    if isinstance(x, torch.Tensor) and x.dim() == 4:
        return x.contiguous(memory_format=fmt)
    return x


def batches_in_layout(batches, fmt: torch.memory_format) -> list:
    """``[(images, labels), ...]`` with the images in layout ``fmt``."""
    return [(to_layout(images, fmt), labels) for images, labels in batches]
