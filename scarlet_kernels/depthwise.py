"""Masked depthwise convolution over stacked paths: each path has its own kernel size and active channel count.

``x`` is (P, N, C, H, W): P paths (slots of a layer) stacked, each with N images. ``weight`` is (P, C, 7, 7): each
path's k x k kernel sits centred in a 7 x 7 envelope. Path p convolves with its centred k_p x k_p window (padding
k_p // 2) and only its first ``channels[p]`` channels; the other channels give zeros and get zero gradient, and
the envelope taps outside the window are never read (the fast kernels skip them, they do not multiply by zero).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from scarlet_kernels import backend as backends
from scarlet_kernels import checks

ENVELOPE = 7
KERNEL_SIZES = (3, 5, 7)


def output_size(size: int, stride: int) -> int:
    """Output height or width: (size + 2 * (k // 2) - k) // stride + 1, the same for every odd k."""
    return (size - 1) // stride + 1


def reference(x: torch.Tensor, weight: torch.Tensor, kernel_sizes: Sequence[int], stride: int = 1,
              channels: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """The definition: one grouped ``F.conv2d`` per path with its centred k x k window, inactive channels zeroed."""
    c = x.shape[2]
    outs = []
    for p, k in enumerate(kernel_sizes):
        lo = (ENVELOPE - k) // 2
        kernel = weight[p, :, None, lo:lo + k, lo:lo + k]
        outs.append(F.conv2d(x[p], kernel, stride=stride, padding=k // 2, groups=c))
    y = torch.stack(outs)
    if channels is None:
        return y
    active = torch.arange(c, device=x.device) < torch.as_tensor(channels, device=x.device)[:, None]
    return y * active[:, None, :, None, None]


class _MaskedDepthwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, kernel_sizes, channels, stride, name):
        impl = backends.kernels(name)
        ctx.save_for_backward(x, weight, kernel_sizes, channels)
        ctx.stride, ctx.name = stride, name
        return impl.depthwise_forward(x, weight, kernel_sizes, channels, stride)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        x, weight, kernel_sizes, channels = ctx.saved_tensors
        impl = backends.kernels(ctx.name)
        dy = checks.as_layout(dy, checks.channels_last("x", x))
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = impl.depthwise_backward_input(dy, weight, kernel_sizes, channels, ctx.stride, x)
        if ctx.needs_input_grad[1]:
            dw = impl.depthwise_backward_weight(dy, x, kernel_sizes, channels, ctx.stride)
        return dx, dw, None, None, None, None


def masked_depthwise_conv2d(x: torch.Tensor, weight: torch.Tensor, kernel_sizes: Sequence[int] | torch.Tensor,
                            stride: int = 1, channels: Sequence[int] | torch.Tensor | None = None,
                            backend: str | None = None) -> torch.Tensor:
    """Depthwise conv of P stacked paths, path p with kernel ``kernel_sizes[p]`` and ``channels[p]`` channels.

    x: (P, N, C, H, W), standard or channels-last; weight: (P, C, 7, 7) contiguous, same dtype and device;
    kernel_sizes: 3, 5 or 7 per path (list or integer tensor); stride: 1 or 2; channels: active channels per
    path in [0, C] (default all). Returns (P, N, C, H_out, W_out) in x's layout. Accumulates in fp32 (fp64 for
    fp64 data).
    """
    checks.tensor("x", x, 5)
    checks.tensor("weight", weight, 4)
    paths, _, c, _, _ = x.shape
    checks.shape("weight", weight, (paths, c, ENVELOPE, ENVELOPE))
    checks.same_device_and_dtype("x", x, weight=weight)
    checks.contiguous("weight", weight)
    checks.channels_last("x", x)
    if stride not in (1, 2) or isinstance(stride, bool):
        raise ValueError(f"stride must be 1 or 2, got {stride!r}")
    ks, ks_host = checks.int_per_path("kernel_sizes", kernel_sizes, paths, x.device, allowed=KERNEL_SIZES)
    ch, _ = checks.int_per_path("channels", [c] * paths if channels is None else channels, paths, x.device,
                                low=0, high=c)
    name = backends.select(backend, x, weight)
    if name == "torch":
        return reference(x, weight, ks.tolist() if ks_host is None else ks_host, stride,
                         None if channels is None else ch)
    return _MaskedDepthwise.apply(x, weight, ks, ch, stride, name)
