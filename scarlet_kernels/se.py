"""Squeeze-and-excitation for stacked paths, and the gated 1x1 projection that can absorb its scaling.

Per path p: pooled = mean over H, W of x; s = gate(W_e[p] relu(W_r[p] pooled + b_r[p]) + b_e[p]); y = x * s.
A path switched off (``enabled[p]`` False) has s = 1: its x passes through unchanged and its SE weights get no
gradient. ``se_gate`` stops at s so that the caller can apply it inside the next 1x1 conv with
``scaled_pointwise`` (W diag(s) x), which never writes x * s.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from scarlet_kernels import backend as backends
from scarlet_kernels import checks
from scarlet_kernels.pointwise import pointwise

GATES = {"hsigmoid": F.hardsigmoid, "sigmoid": torch.sigmoid}


def excite(pooled, w_reduce, b_reduce, w_expand, b_expand, gate: str, enabled: torch.Tensor | None):
    """The gate (P, N, C) from pooled means (P, N, C): reduce FC, ReLU, expand FC, gate; 1 on disabled paths."""
    hidden = torch.relu(torch.baddbmm(b_reduce.unsqueeze(1), pooled, w_reduce.transpose(1, 2)))
    s = GATES[gate](torch.baddbmm(b_expand.unsqueeze(1), hidden, w_expand.transpose(1, 2)))
    return s if enabled is None else torch.where(enabled[:, None, None], s, torch.ones_like(s))


def se_gate_reference(x, w_reduce, b_reduce, w_expand, b_expand, gate="hsigmoid", enabled=None):
    return excite(x.mean((3, 4)), w_reduce, b_reduce, w_expand, b_expand, gate, enabled)


def fused_se_reference(x, w_reduce, b_reduce, w_expand, b_expand, gate="hsigmoid", enabled=None):
    return x * se_gate_reference(x, w_reduce, b_reduce, w_expand, b_expand, gate, enabled)[..., None, None]


def scaled_pointwise_reference(x, gate, w):
    return torch.einsum("poc,pnchw->pnohw", w, x * gate[..., None, None])


class _ChannelMean(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, name):
        ctx.shape, ctx.dtype = x.shape, x.dtype
        return backends.kernels(name).channel_sum(x) / (x.shape[-1] * x.shape[-2])

    @staticmethod
    def backward(ctx, g):
        return (g / (ctx.shape[-1] * ctx.shape[-2])).to(ctx.dtype)[..., None, None].expand(ctx.shape), None


class _FusedSE(torch.autograd.Function):
    """Forward: one pass to pool, the tiny FCs in PyTorch, one pass to scale. Backward: one pass for
    sum(dy * x), the FCs' backward, one pass for dx = dy * s + dpooled / HW."""

    @staticmethod
    def forward(ctx, x, w_reduce, b_reduce, w_expand, b_expand, enabled, gate, name):
        impl = backends.kernels(name)
        pooled = impl.channel_sum(x) / (x.shape[-1] * x.shape[-2])
        weights = [w.to(pooled.dtype) for w in (w_reduce, b_reduce, w_expand, b_expand)]
        s = excite(pooled, *weights, gate, enabled)
        ctx.save_for_backward(x, pooled, w_reduce, b_reduce, w_expand, b_expand, enabled)
        ctx.gate, ctx.name = gate, name
        return impl.channel_scale(x, s)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, dy):
        x, pooled, *weights, enabled = ctx.saved_tensors
        impl = backends.kernels(ctx.name)
        dy = checks.as_layout(dy, checks.channels_last("x", x))
        with torch.enable_grad():
            leaves = [pooled.detach().requires_grad_()]
            leaves += [w.detach().to(pooled.dtype).requires_grad_() for w in weights]
            s = excite(*leaves, ctx.gate, enabled)
        dpooled, *dweights = torch.autograd.grad(s, leaves, impl.channel_sum(dy, x))
        dx = None
        if ctx.needs_input_grad[0]:
            dx = impl.channel_scale(dy, s.detach(), dpooled / (x.shape[-1] * x.shape[-2]))
        return (dx, *(g.to(w.dtype) for g, w in zip(dweights, weights, strict=True)), None, None, None)


def _check_se(x, w_reduce, b_reduce, w_expand, b_expand, gate, enabled):
    checks.tensor("x", x, 5)
    paths, _, c, _, _ = x.shape
    reduced = checks.tensor("w_reduce", w_reduce, 3).shape[1]
    checks.shape("w_reduce", w_reduce, (paths, reduced, c))
    checks.shape("b_reduce", checks.tensor("b_reduce", b_reduce, 2), (paths, reduced))
    checks.shape("w_expand", checks.tensor("w_expand", w_expand, 3), (paths, c, reduced))
    checks.shape("b_expand", checks.tensor("b_expand", b_expand, 2), (paths, c))
    checks.same_device_and_dtype("x", x, w_reduce=w_reduce, b_reduce=b_reduce, w_expand=w_expand,
                                 b_expand=b_expand)
    checks.channels_last("x", x)
    if gate not in GATES:
        raise ValueError(f"gate must be one of {', '.join(GATES)}, got {gate!r}")
    return None if enabled is None else checks.bool_per_path("enabled", enabled, paths, x.device)


def fused_se(x: torch.Tensor, w_reduce: torch.Tensor, b_reduce: torch.Tensor, w_expand: torch.Tensor,
             b_expand: torch.Tensor, gate: str = "hsigmoid", enabled: Sequence[bool] | torch.Tensor | None = None,
             backend: str | None = None) -> torch.Tensor:
    """x * SE gate for P stacked paths: x (P, N, C, H, W) in either layout; w_reduce (P, Cr, C), b_reduce
    (P, Cr), w_expand (P, C, Cr), b_expand (P, C); gate 'hsigmoid' (relu6(z + 3) / 6) or 'sigmoid';
    enabled: one bool per path (default all on). Returns x's shape, dtype and layout."""
    enabled = _check_se(x, w_reduce, b_reduce, w_expand, b_expand, gate, enabled)
    name = backends.select(backend, x)
    if name == "torch":
        return fused_se_reference(x, w_reduce, b_reduce, w_expand, b_expand, gate, enabled)
    return _FusedSE.apply(x, w_reduce, b_reduce, w_expand, b_expand, enabled, gate, name)


def se_gate(x: torch.Tensor, w_reduce: torch.Tensor, b_reduce: torch.Tensor, w_expand: torch.Tensor,
            b_expand: torch.Tensor, gate: str = "hsigmoid", enabled: Sequence[bool] | torch.Tensor | None = None,
            backend: str | None = None) -> torch.Tensor:
    """The SE gate alone, (P, N, C) in x's dtype (ones on disabled paths); arguments as for :func:`fused_se`."""
    enabled = _check_se(x, w_reduce, b_reduce, w_expand, b_expand, gate, enabled)
    name = backends.select(backend, x)
    if name == "torch":
        return se_gate_reference(x, w_reduce, b_reduce, w_expand, b_expand, gate, enabled)
    pooled = _ChannelMean.apply(x, name)
    weights = [w.to(pooled.dtype) for w in (w_reduce, b_reduce, w_expand, b_expand)]
    return excite(pooled, *weights, gate, enabled).to(x.dtype)


def scaled_pointwise(x: torch.Tensor, gate: torch.Tensor, w: torch.Tensor, backend: str | None = None) -> torch.Tensor:
    """1x1 conv of x * gate per path: y[p, n] = w[p] diag(gate[p, n]) x[p, n].

    x (P, N, C, H, W) in either layout, gate (P, N, C), w (P, Cout, C) or (P, Cout, C, 1, 1), one dtype and
    device, P * N at most 65535. Returns (P, N, Cout, H, W) in x's layout. The fast backends scale the weight
    tile by the gate in registers instead of writing x * gate.
    """
    checks.tensor("x", x, 5)
    paths, n, c, _, _ = x.shape
    checks.shape("gate", checks.tensor("gate", gate, 3), (paths, n, c))
    checks.tensor("w", w, (3, 5))
    if w.dim() == 5:
        checks.shape("w", w, (paths, w.shape[1], c, 1, 1))
        w = w.flatten(2)
    checks.shape("w", w, (paths, w.shape[1], c))
    checks.same_device_and_dtype("x", x, gate=gate, w=w)
    checks.channels_last("x", x)
    checks.path_images(paths, n)
    name = backends.select(backend, x)
    if name == "torch":
        return scaled_pointwise_reference(x, gate, w)
    return pointwise(x, w, gate.contiguous(), name)
