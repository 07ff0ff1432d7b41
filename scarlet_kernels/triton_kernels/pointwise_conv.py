"""Triton kernel of a batched 1x1 convolution with an optional per-sample channel gate: y = W diag(g) x.

Used by ``scaled_pointwise`` (the SE gate applied inside the projection that follows it: the gate scales the
weight tile in registers, x * g is never written) and by ``els_pointwise`` (no gate, composed weight).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from scarlet_kernels import checks
from scarlet_kernels.backend import triton_interpreting
from scarlet_kernels.triton_kernels.common import accumulator, configs, narrow

_TILES = configs(dict(BLOCK_O=64, BLOCK_HW=64, BLOCK_K=32), dict(BLOCK_O=32, BLOCK_HW=128, BLOCK_K=32),
                 dict(BLOCK_O=128, BLOCK_HW=64, BLOCK_K=32), dict(BLOCK_O=16, BLOCK_HW=128, BLOCK_K=16),
                 dict(BLOCK_O=128, BLOCK_HW=128, BLOCK_K=32), interpreter=dict(BLOCK_O=16, BLOCK_HW=256, BLOCK_K=16))


@triton.autotune(configs=_TILES, key=["C", "COUT", "HW", "SXC", "HAS_GATE"])
@triton.jit
def _pointwise(x_ptr, w_ptr, g_ptr, y_ptr, N, C, COUT, HW, SXP, SXN, SXC, SXHW, SWP, SWO, SWC,
               SYP, SYN, SYC, SYHW, HAS_GATE: tl.constexpr, UPCAST: tl.constexpr, ACC: tl.constexpr,
               PRECISION: tl.constexpr, BLOCK_O: tl.constexpr, BLOCK_HW: tl.constexpr, BLOCK_K: tl.constexpr):
    pn = tl.program_id(0)
    p = pn // N
    n = pn % N
    o = tl.program_id(1) * BLOCK_O + tl.arange(0, BLOCK_O)
    hw = tl.program_id(2) * BLOCK_HW + tl.arange(0, BLOCK_HW)
    x_base = x_ptr + p.to(tl.int64) * SXP + n.to(tl.int64) * SXN
    w_base = w_ptr + p.to(tl.int64) * SWP
    acc = tl.zeros((BLOCK_O, BLOCK_HW), dtype=ACC)
    for k0 in range(0, C, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        wt = tl.load(w_base + o[:, None] * SWO + kk[None, :] * SWC, mask=(o < COUT)[:, None] & (kk < C)[None, :],
                     other=0.0)
        if HAS_GATE:
            g = tl.load(g_ptr + pn * C + kk, mask=kk < C, other=0.0)
            wt = narrow(wt.to(ACC) * g.to(ACC)[None, :], x_ptr.dtype.element_ty)
        xt = tl.load(x_base + kk[:, None] * SXC + hw[None, :] * SXHW, mask=(kk < C)[:, None] & (hw < HW)[None, :],
                     other=0.0)
        if ACC == tl.float64:
            acc += tl.sum(wt[:, :, None] * xt[None, :, :], axis=1)
        elif UPCAST:  # the CPU interpreter mis-multiplies bfloat16 dots
            acc = tl.dot(wt.to(tl.float32), xt.to(tl.float32), acc, input_precision="ieee")
        else:
            acc = tl.dot(wt, xt, acc, input_precision=PRECISION)
    y = y_ptr + p.to(tl.int64) * SYP + n.to(tl.int64) * SYN + o[:, None] * SYC + hw[None, :] * SYHW
    tl.store(y, narrow(acc, y_ptr.dtype.element_ty), mask=(o < COUT)[:, None] & (hw < HW)[None, :])


def pointwise(x: torch.Tensor, w: torch.Tensor, gate: torch.Tensor | None = None) -> torch.Tensor:
    """y[p, n] = w[p] @ diag(gate[p, n]) @ x[p, n] over pixels; x (P, N, C, H, W), w (P, Cout, C) any strides,
    gate (P, N, C) contiguous or None. The result has x's dtype and layout."""
    paths, n, c, h, wd = x.shape
    cout = w.shape[1]
    cl = checks.channels_last("x", x)
    y = checks.empty_activation((paths, n, cout, h, wd), x, cl)
    grid = lambda meta: (paths * n, triton.cdiv(cout, meta["BLOCK_O"]), triton.cdiv(h * wd, meta["BLOCK_HW"]))
    _pointwise[grid](x, w, x if gate is None else gate, y, n, c, cout, h * wd,
                     x.stride(0), x.stride(1), x.stride(2), x.stride(4), w.stride(0), w.stride(1), w.stride(2),
                     y.stride(0), y.stride(1), y.stride(2), y.stride(4),
                     HAS_GATE=gate is not None, UPCAST=triton_interpreting() and x.dtype == torch.bfloat16,
                     ACC=accumulator(x.dtype), PRECISION="ieee" if x.dtype == torch.float32 else "tf32")
    return y
