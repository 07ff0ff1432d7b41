"""The CUDA backend: the operators of the compiled extension (csrc/) behind the same functions as the Triton one.

Outputs are allocated here, in the input's layout, and filled by the operators torch.ops.scarlet_kernels.*,
which exist once scarlet_kernels.backend has loaded the extension (the backend is not selectable otherwise).
"""

from __future__ import annotations

import torch

from scarlet_kernels import checks
from scarlet_kernels.depthwise import ENVELOPE, output_size

ops = torch.ops.scarlet_kernels


def depthwise_forward(x, weight, kernel_sizes, channels, stride):
    paths, n, c, h, w = x.shape
    cl = checks.channels_last("x", x)
    y = checks.empty_activation((paths, n, c, output_size(h, stride), output_size(w, stride)), x, cl)
    ops.depthwise_forward(x, weight, kernel_sizes, channels, stride, cl, y)
    return y


def depthwise_backward_input(dy, weight, kernel_sizes, channels, stride, x):
    cl = checks.channels_last("x", x)
    dx = checks.empty_activation(x.shape, x, cl)
    ops.depthwise_backward_input(dy, weight, kernel_sizes, channels, stride, cl, dx)
    return dx


def weight_grad_splits(paths: int, channels: int, positions: int, channels_last: bool,
                       device: torch.device) -> int:
    """Pieces of the (n, ho, wo) reduction: enough blocks for ~4 per multiprocessor, each piece >= 1024 positions."""
    blocks = paths * (-(-channels // 32) if channels_last else channels)
    sms = torch.cuda.get_device_properties(device).multi_processor_count if device.type == "cuda" else 1
    wanted = -(-4 * sms // max(1, blocks))
    return max(1, min(wanted, positions // 1024))


def depthwise_backward_weight(dy, x, kernel_sizes, channels, stride, splits=None):
    paths, n, c, _, _ = x.shape
    cl = checks.channels_last("x", x)
    if splits is None:
        splits = weight_grad_splits(paths, c, n * dy.shape[-2] * dy.shape[-1], cl, x.device)
    part = torch.zeros((splits, paths, c, ENVELOPE * ENVELOPE), dtype=checks.accumulator_dtype(x.dtype),
                       device=x.device)
    ops.depthwise_backward_weight_partial(dy, x, kernel_sizes, channels, stride, cl, part)
    return part.sum(0).to(x.dtype).view(paths, c, ENVELOPE, ENVELOPE)


def channel_sum(a, b=None):
    out = torch.empty(a.shape[:-2], dtype=checks.accumulator_dtype(a.dtype), device=a.device)
    ops.channel_sum(a, b, checks.channels_last("a", a), out)
    return out


def channel_scale(a, s, add=None):
    acc = checks.accumulator_dtype(a.dtype)
    cl = checks.channels_last("a", a)
    out = checks.empty_activation(a.shape, a, cl)
    ops.channel_scale(a, s.to(acc).contiguous(), None if add is None else add.to(acc).contiguous(), cl, out)
    return out


def pointwise(x, w, gate=None):
    paths, n, _, h, wd = x.shape
    y = checks.empty_activation((paths, n, w.shape[1], h, wd), x, checks.channels_last("x", x))
    ops.pointwise(x, w, None if gate is None else gate.to(checks.accumulator_dtype(x.dtype)).contiguous(), y)
    return y
