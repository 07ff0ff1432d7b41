"""What the Triton kernels share: autotune configs (one when interpreting) and the accumulator type."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from scarlet_kernels.backend import triton_interpreting


def configs(*options: dict, interpreter: dict, num_warps: int = 4) -> list[triton.Config]:
    """One config per dict of block sizes, or only ``interpreter`` under the CPU interpreter: there tuning is
    meaningless and large blocks (few programs, long numpy vectors) are what makes it fast."""
    chosen = [interpreter] if triton_interpreting() else options
    return [triton.Config(dict(o), num_warps=num_warps) for o in chosen]


def accumulator(dtype: torch.dtype):
    """The Triton type of checks.accumulator_dtype(dtype)."""
    return tl.float64 if dtype == torch.float64 else tl.float32


def program_target(device: torch.device) -> int:
    """About how many programs fill the device: a few per streaming multiprocessor (a fixed number on CPU)."""
    if device.type == "cuda":
        return 4 * torch.cuda.get_device_properties(device).multi_processor_count
    return 4


INTERPRETED = tl.constexpr(triton_interpreting())


@triton.jit
def narrow(value, dtype: tl.constexpr):
    """``value.to(dtype)`` rounding to nearest even. Compiled kernels do that already; the CPU interpreter
    truncates float32 -> bfloat16, so there the rounding is done on the bits first (finite values)."""
    if INTERPRETED and dtype == tl.bfloat16:
        bits = value.to(tl.float32).to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        value = bits.to(tl.float32, bitcast=True)
    return value.to(dtype)
