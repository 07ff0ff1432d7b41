"""Triton kernels over (..., C, H, W) activations seen as planes: per-channel sums and per-channel scaling.

They carry squeeze-and-excitation: the pooled sums (forward) and sum(dy * x) (backward of the gate) are
``channel_sum``; the scaling x * s (forward) and dy * s + dpooled / HW (backward) are ``channel_scale``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from scarlet_kernels import checks
from scarlet_kernels.triton_kernels.common import accumulator, configs, narrow

_SUM_TILES = configs(dict(BLOCK_C=1, BLOCK_HW=512), dict(BLOCK_C=4, BLOCK_HW=128), dict(BLOCK_C=64, BLOCK_HW=16),
                     dict(BLOCK_C=32, BLOCK_HW=32), interpreter=dict(BLOCK_C=4, BLOCK_HW=256))
_SCALE_TILES = configs(dict(BLOCK_C=1, BLOCK_HW=1024), dict(BLOCK_C=4, BLOCK_HW=256), dict(BLOCK_C=64, BLOCK_HW=16),
                       dict(BLOCK_C=32, BLOCK_HW=32), interpreter=dict(BLOCK_C=4, BLOCK_HW=256))


def _planes(t: torch.Tensor) -> tuple[int, int, int, int, int, int]:
    """(rows, C, HW, row stride, C stride, HW stride) of a (..., C, H, W) tensor in either layout."""
    b = t.numel() // (t.shape[-3] * t.shape[-2] * t.shape[-1]) if t.numel() else 0
    return b, t.shape[-3], t.shape[-2] * t.shape[-1], t.stride(-4) if t.dim() > 3 else 0, t.stride(-3), t.stride(-1)


@triton.autotune(configs=_SUM_TILES, key=["C", "HW", "SAC", "SAHW"])
@triton.jit
def _channel_sum(a_ptr, b_ptr, out_ptr, C, HW, SAB, SAC, SAHW, SBB, SBC, SBHW,
                 HAS_B: tl.constexpr, ACC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr):
    row = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    a_base = a_ptr + row.to(tl.int64) * SAB + c[:, None] * SAC
    b_base = b_ptr + row.to(tl.int64) * SBB + c[:, None] * SBC
    acc = tl.zeros((BLOCK_C, BLOCK_HW), dtype=ACC)
    for hw0 in range(0, HW, BLOCK_HW):
        hw = hw0 + tl.arange(0, BLOCK_HW)
        on = (c < C)[:, None] & (hw < HW)[None, :]
        v = tl.load(a_base + hw[None, :] * SAHW, mask=on, other=0.0).to(ACC)
        if HAS_B:
            v *= tl.load(b_base + hw[None, :] * SBHW, mask=on, other=0.0).to(ACC)
        acc += v
    tl.store(out_ptr + row * C + c, tl.sum(acc, axis=1), mask=c < C)


@triton.autotune(configs=_SCALE_TILES, key=["C", "HW", "SAC", "SAHW"])
@triton.jit
def _channel_scale(a_ptr, s_ptr, add_ptr, out_ptr, C, HW, SAB, SAC, SAHW, SOB, SOC, SOHW,
                   HAS_ADD: tl.constexpr, ACC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr):
    row = tl.program_id(0)
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    hw = tl.program_id(2) * BLOCK_HW + tl.arange(0, BLOCK_HW)
    on = (c < C)[:, None] & (hw < HW)[None, :]
    s = tl.load(s_ptr + row * C + c, mask=c < C, other=0.0).to(ACC)
    v = tl.load(a_ptr + row.to(tl.int64) * SAB + c[:, None] * SAC + hw[None, :] * SAHW, mask=on, other=0.0)
    v = v.to(ACC) * s[:, None]
    if HAS_ADD:
        v += tl.load(add_ptr + row * C + c, mask=c < C, other=0.0).to(ACC)[:, None]
    out = out_ptr + row.to(tl.int64) * SOB + c[:, None] * SOC + hw[None, :] * SOHW
    tl.store(out, narrow(v, out_ptr.dtype.element_ty), mask=on)


def channel_sum(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """sum over H, W of a (times b when given, same shape and layout) -> (..., C) in the accumulator dtype."""
    rows, c, hw, sab, sac, sahw = _planes(a)
    out = torch.empty(a.shape[:-2], dtype=checks.accumulator_dtype(a.dtype), device=a.device)
    sbb, sbc, sbhw = (sab, sac, sahw) if b is None else _planes(b)[3:]
    grid = lambda meta: (rows, triton.cdiv(c, meta["BLOCK_C"]))
    _channel_sum[grid](a, a if b is None else b, out, c, hw, sab, sac, sahw, sbb, sbc, sbhw,
                       HAS_B=b is not None, ACC=accumulator(a.dtype))
    return out


def channel_scale(a: torch.Tensor, s: torch.Tensor, add: torch.Tensor | None = None) -> torch.Tensor:
    """a * s[..., c] (+ add[..., c]) with s, add contiguous (..., C); the result has a's dtype and layout."""
    rows, c, hw, sab, sac, sahw = _planes(a)
    out = checks.empty_activation(a.shape, a, checks.channels_last("a", a))
    sob, soc, sohw = _planes(out)[3:]
    grid = lambda meta: (rows, triton.cdiv(c, meta["BLOCK_C"]), triton.cdiv(hw, meta["BLOCK_HW"]))
    _channel_scale[grid](a, s, s if add is None else add, out, c, hw, sab, sac, sahw, sob, soc, sohw,
                         HAS_ADD=add is not None, ACC=accumulator(a.dtype))
    return out
