"""Triton kernels of the masked depthwise convolution: forward, input gradient, weight gradient.

A program works on one path, so its kernel size k and active channel count are uniform: the tap loops run
``range(k)`` (taps outside the path's window are never visited) and a channel block with no active channel runs no
tap at all. Tiles are (channels x pixels) with explicit strides, so one kernel serves the standard and the
channels-last layout; offsets are computed in int64 where a tensor can exceed 2**31 elements.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from scarlet_kernels import checks
from scarlet_kernels.depthwise import ENVELOPE, output_size
from scarlet_kernels.triton_kernels.common import accumulator, configs, narrow, program_target

_ENVELOPE = tl.constexpr(ENVELOPE)  # readable inside the kernels

# (channels, pixels) per tile: thin in channels suits the standard layout, wide suits channels-last.
_TILES = configs(dict(BLOCK_C=1, BLOCK_HW=256), dict(BLOCK_C=2, BLOCK_HW=128), dict(BLOCK_C=4, BLOCK_HW=64),
                 dict(BLOCK_C=32, BLOCK_HW=16), dict(BLOCK_C=64, BLOCK_HW=8), dict(BLOCK_C=16, BLOCK_HW=32),
                 interpreter=dict(BLOCK_C=4, BLOCK_HW=256))
_WGRAD_TILES = configs(dict(BLOCK_C=1, BLOCK_HW=64), dict(BLOCK_C=2, BLOCK_HW=32), dict(BLOCK_C=16, BLOCK_HW=4),
                       dict(BLOCK_C=32, BLOCK_HW=2), interpreter=dict(BLOCK_C=4, BLOCK_HW=128))


@triton.autotune(configs=_TILES, key=["C", "H", "W", "N", "CL"])
@triton.jit
def _forward(x_ptr, w_ptr, ks_ptr, ch_ptr, y_ptr, N, C, H, W, HO, WO,
             sxp, sxn, sxc, sxh, sxw, syp, syn, syc, syh, syw, CL,
             STRIDE: tl.constexpr, ACC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr):
    pn = tl.program_id(0)
    p = pn // N
    n = pn % N
    k = tl.minimum(tl.load(ks_ptr + p), _ENVELOPE)
    active = tl.minimum(tl.load(ch_ptr + p), C)
    pad = k // 2
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    hw = tl.program_id(2) * BLOCK_HW + tl.arange(0, BLOCK_HW)
    ho = hw // WO
    wo = hw % WO
    c_on = c < active
    taps = tl.where(tl.program_id(1) * BLOCK_C < active, k, 0)
    x_base = x_ptr + p.to(tl.int64) * sxp + n.to(tl.int64) * sxn + c[:, None].to(tl.int64) * sxc
    w_base = w_ptr + (p * C + c) * (_ENVELOPE * _ENVELOPE) + (3 - pad) * (_ENVELOPE + 1)
    acc = tl.zeros((BLOCK_C, BLOCK_HW), dtype=ACC)
    for ky in range(0, taps):
        hi = ho * STRIDE - pad + ky
        row_on = (hi >= 0) & (hi < H) & (hw < HO * WO)
        for kx in range(0, taps):
            wi = wo * STRIDE - pad + kx
            on = row_on & (wi >= 0) & (wi < W)
            xv = tl.load(x_base + (hi * sxh + wi * sxw)[None, :], mask=c_on[:, None] & on[None, :], other=0.0)
            wv = tl.load(w_base + ky * _ENVELOPE + kx, mask=c_on, other=0.0)
            acc += xv.to(ACC) * wv.to(ACC)[:, None]
    y = y_ptr + p.to(tl.int64) * syp + n.to(tl.int64) * syn + c[:, None].to(tl.int64) * syc
    y += (ho * syh + wo * syw)[None, :]
    tl.store(y, narrow(acc, y_ptr.dtype.element_ty), mask=(c < C)[:, None] & (hw < HO * WO)[None, :])


@triton.autotune(configs=_TILES, key=["C", "H", "W", "N", "CL"])
@triton.jit
def _backward_input(dy_ptr, w_ptr, ks_ptr, ch_ptr, dx_ptr, N, C, H, W, HO, WO,
                    sdp, sdn, sdc, sdh, sdw, sxp, sxn, sxc, sxh, sxw, CL,
                    STRIDE: tl.constexpr, ACC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr):
    # dx[hi, wi] = sum over taps (ky, kx) of dy[ho, wo] * w[ky, kx] where ho * STRIDE = hi + pad - ky.
    pn = tl.program_id(0)
    p = pn // N
    n = pn % N
    k = tl.minimum(tl.load(ks_ptr + p), _ENVELOPE)
    active = tl.minimum(tl.load(ch_ptr + p), C)
    pad = k // 2
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    hw = tl.program_id(2) * BLOCK_HW + tl.arange(0, BLOCK_HW)
    hi = hw // W
    wi = hw % W
    c_on = c < active
    taps = tl.where(tl.program_id(1) * BLOCK_C < active, k, 0)
    dy_base = dy_ptr + p.to(tl.int64) * sdp + n.to(tl.int64) * sdn + c[:, None].to(tl.int64) * sdc
    w_base = w_ptr + (p * C + c) * (_ENVELOPE * _ENVELOPE) + (3 - pad) * (_ENVELOPE + 1)
    acc = tl.zeros((BLOCK_C, BLOCK_HW), dtype=ACC)
    for ky in range(0, taps):
        th = hi + pad - ky
        ho = th // STRIDE
        row_on = (th >= 0) & (th % STRIDE == 0) & (ho < HO) & (hw < H * W)
        for kx in range(0, taps):
            tw = wi + pad - kx
            wo = tw // STRIDE
            on = row_on & (tw >= 0) & (tw % STRIDE == 0) & (wo < WO)
            g = tl.load(dy_base + (ho * sdh + wo * sdw)[None, :], mask=c_on[:, None] & on[None, :], other=0.0)
            wv = tl.load(w_base + ky * _ENVELOPE + kx, mask=c_on, other=0.0)
            acc += g.to(ACC) * wv.to(ACC)[:, None]
    dx = dx_ptr + p.to(tl.int64) * sxp + n.to(tl.int64) * sxn + c[:, None].to(tl.int64) * sxc
    dx += (hi * sxh + wi * sxw)[None, :]
    tl.store(dx, narrow(acc, dx_ptr.dtype.element_ty), mask=(c < C)[:, None] & (hw < H * W)[None, :])


@triton.autotune(configs=_WGRAD_TILES, key=["C", "H", "W", "N", "CL", "SPLITS"])
@triton.jit
def _backward_weight(dy_ptr, x_ptr, ks_ptr, ch_ptr, part_ptr, P, N, C, H, W, HO, WO, SPLITS,
                     sdp, sdn, sdc, sdh, sdw, sxp, sxn, sxc, sxh, sxw, CL,
                     STRIDE: tl.constexpr, ACC: tl.constexpr, BLOCK_C: tl.constexpr, BLOCK_HW: tl.constexpr):
    # Stage one of the split reduction: program (p, channel block, split) reads its share of the (n, ho, wo)
    # positions of dy and x once, keeping all taps of the 8 x 8 tap grid (the k x k window in its corner) in
    # registers, and writes part[split, p, c, envelope tap]. Stage two sums the splits in a fixed order.
    p = tl.program_id(0)
    split = tl.program_id(2)
    k = tl.minimum(tl.load(ks_ptr + p), _ENVELOPE)
    active = tl.minimum(tl.load(ch_ptr + p), C)
    pad = k // 2
    c = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    c_on = c < active
    t = tl.arange(0, 64)
    ty = t // 8
    tx = t % 8
    tap_on = (ty < k) & (tx < k)
    plane = HO * WO
    total = N * plane
    chunk = tl.cdiv(tl.cdiv(total, SPLITS), BLOCK_HW) * BLOCK_HW
    start = split * chunk
    stop = tl.where(tl.program_id(1) * BLOCK_C < active, tl.minimum(start + chunk, total), start)
    dy_base = dy_ptr + p.to(tl.int64) * sdp + c.to(tl.int64) * sdc
    x_base = x_ptr + p.to(tl.int64) * sxp + c.to(tl.int64) * sxc
    acc = tl.zeros((BLOCK_C, 64), dtype=ACC)
    for q0 in range(start, stop, BLOCK_HW):
        q = q0 + tl.arange(0, BLOCK_HW)
        q_on = q < stop
        n = q // plane
        ho = (q % plane) // WO
        wo = q % WO
        g = tl.load(dy_base[:, None] + (n.to(tl.int64) * sdn + ho * sdh + wo * sdw)[None, :],
                    mask=c_on[:, None] & q_on[None, :], other=0.0)
        hi = ho[:, None] * STRIDE - pad + ty[None, :]
        wi = wo[:, None] * STRIDE - pad + tx[None, :]
        on = q_on[:, None] & tap_on[None, :] & (hi >= 0) & (hi < H) & (wi >= 0) & (wi < W)
        offsets = n[:, None].to(tl.int64) * sxn + hi * sxh + wi * sxw
        xv = tl.load(x_base[:, None, None] + offsets[None, :, :], mask=c_on[:, None, None] & on[None, :, :],
                     other=0.0)
        acc += tl.sum(xv.to(ACC) * g.to(ACC)[:, :, None], axis=1)
    envelope_tap = (3 - pad + ty) * _ENVELOPE + (3 - pad + tx)
    out = part_ptr + ((split * P + p) * C + c[:, None]).to(tl.int64) * (_ENVELOPE * _ENVELOPE) + envelope_tap[None, :]
    tl.store(out, acc, mask=(c < C)[:, None] & tap_on[None, :])


def _strides(t: torch.Tensor) -> tuple[int, ...]:
    return tuple(t.stride())


def depthwise_forward(x, weight, kernel_sizes, channels, stride):
    paths, n, c, h, w = x.shape
    cl = checks.channels_last("x", x)
    ho, wo = output_size(h, stride), output_size(w, stride)
    y = checks.empty_activation((paths, n, c, ho, wo), x, cl)
    grid = lambda meta: (paths * n, triton.cdiv(c, meta["BLOCK_C"]), triton.cdiv(ho * wo, meta["BLOCK_HW"]))
    _forward[grid](x, weight, kernel_sizes, channels, y, n, c, h, w, ho, wo, *_strides(x), *_strides(y), int(cl),
                   STRIDE=stride, ACC=accumulator(x.dtype))
    return y


def depthwise_backward_input(dy, weight, kernel_sizes, channels, stride, x):
    paths, n, c, h, w = x.shape
    cl = checks.channels_last("x", x)
    ho, wo = dy.shape[-2:]
    dx = checks.empty_activation(x.shape, x, cl)
    grid = lambda meta: (paths * n, triton.cdiv(c, meta["BLOCK_C"]), triton.cdiv(h * w, meta["BLOCK_HW"]))
    _backward_input[grid](dy, weight, kernel_sizes, channels, dx, n, c, h, w, ho, wo, *_strides(dy),
                          *_strides(dx), int(cl), STRIDE=stride, ACC=accumulator(x.dtype))
    return dx


def weight_grad_splits(paths: int, channels: int, positions: int, device: torch.device) -> int:
    """How many pieces the (n, ho, wo) reduction is cut into: enough programs to fill the device, each >= 256."""
    per_split = max(1, program_target(device) // max(1, paths * triton.cdiv(channels, 16)))
    return max(1, min(per_split, positions // 256))


def depthwise_backward_weight(dy, x, kernel_sizes, channels, stride, splits=None):
    paths, n, c, h, w = x.shape
    ho, wo = dy.shape[-2:]
    splits = weight_grad_splits(paths, c, n * ho * wo, x.device) if splits is None else splits
    part = torch.zeros((splits, paths, c, ENVELOPE * ENVELOPE), dtype=checks.accumulator_dtype(x.dtype),
                       device=x.device)
    grid = lambda meta: (paths, triton.cdiv(c, meta["BLOCK_C"]), splits)
    _backward_weight[grid](dy, x, kernel_sizes, channels, part, paths, n, c, h, w, ho, wo, splits, *_strides(dy),
                           *_strides(x), int(checks.channels_last("x", x)), STRIDE=stride,
                           ACC=accumulator(x.dtype))
    return part.sum(0).to(x.dtype).view(paths, c, ENVELOPE, ENVELOPE)
