"""The autograd wrapper of the fast batched 1x1 convolution y[p, n] = W[p] diag(g[p, n]) x[p, n] (gate optional).

Shared by ``scaled_pointwise`` and ``els_pointwise``; the forward never writes x * g. The backward uses the same
kernel for W^T dy, the channel kernels for the gate, and a PyTorch GEMM for the weight gradient.
"""

from __future__ import annotations

import torch

from scarlet_kernels import backend as backends
from scarlet_kernels import checks


class _Pointwise(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, gate, name):
        ctx.save_for_backward(x, w, gate)
        ctx.name = name
        return backends.kernels(name).pointwise(x, w, gate)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        x, w, gate = ctx.saved_tensors
        impl = backends.kernels(ctx.name)
        dy = checks.as_layout(dy, checks.channels_last("x", x))
        dx = dw = dgate = None
        if ctx.needs_input_grad[0] or ctx.needs_input_grad[2]:
            wt_dy = impl.pointwise(dy, w.transpose(1, 2))
            if ctx.needs_input_grad[0]:
                dx = wt_dy if gate is None else impl.channel_scale(wt_dy, gate)
            if ctx.needs_input_grad[2]:
                dgate = impl.channel_sum(wt_dy, x).to(gate.dtype)
        if ctx.needs_input_grad[1]:
            gated = x if gate is None else impl.channel_scale(x, gate)
            dw = torch.einsum("pnohw,pnchw->poc", dy, gated)
        return dx, dw, dgate, None


def pointwise(x: torch.Tensor, w: torch.Tensor, gate: torch.Tensor | None, name: str) -> torch.Tensor:
    """x (P, N, C, H, W), w (P, Cout, C), gate (P, N, C) contiguous or None, on backend ``name`` (not 'torch')."""
    return _Pointwise.apply(x, w, gate, name)
