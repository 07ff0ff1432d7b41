"""Compiles the Triton kernels of scarlet_kernels for an NVIDIA GPU without one (Triton's own compiler and ptxas).

The CPU interpreter accepts things a GPU compile rejects (globals that are not constexpr, unsupported ops or
types); this catches them on a CPU-only machine. It must run where TRITON_INTERPRET is unset, so the tests start
it as a subprocess: ``python tests/kernels/compile_triton_for_gpu.py [--all] [--arch 90]``. By default it compiles
the first GPU config of each kernel in bfloat16 (and float32 for the GEMM, whose fp32 path differs); ``--all``
compiles every config in every dtype (a few minutes).
"""

from __future__ import annotations

import argparse
import os
import sys

import triton
import triton.language as tl
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource

from scarlet_kernels.triton_kernels import channel, depthwise, pointwise_conv

TYPES = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16", "float64": "fp64"}


def kernels(dtype: str):
    """(autotuned kernel, pointer types, extra constexprs) for every kernel, data in ``dtype``."""
    acc = "fp64" if dtype == "fp64" else "fp32"
    acc_type = tl.float64 if dtype == "fp64" else tl.float32
    data = f"*{dtype}"
    index = {"ks_ptr": "*i32", "ch_ptr": "*i32"}
    return [
        (depthwise._forward, {"x_ptr": data, "w_ptr": data, "y_ptr": data, **index}, {"STRIDE": 2, "ACC": acc_type}),
        (depthwise._backward_input, {"dy_ptr": data, "w_ptr": data, "dx_ptr": data, **index},
         {"STRIDE": 2, "ACC": acc_type}),
        (depthwise._backward_weight, {"dy_ptr": data, "x_ptr": data, "part_ptr": f"*{acc}", **index},
         {"STRIDE": 1, "ACC": acc_type}),
        (channel._channel_sum, {"a_ptr": data, "b_ptr": data, "out_ptr": f"*{acc}"}, {"HAS_B": True, "ACC": acc_type}),
        (channel._channel_scale, {"a_ptr": data, "s_ptr": f"*{acc}", "add_ptr": f"*{acc}", "out_ptr": data},
         {"HAS_ADD": True, "ACC": acc_type}),
        (pointwise_conv._pointwise, {"x_ptr": data, "w_ptr": data, "g_ptr": f"*{acc}", "y_ptr": data},
         {"HAS_GATE": True, "UPCAST": False, "ACC": acc_type, "PRECISION": "ieee" if dtype == "fp32" else "tf32"}),
    ]


def compile_jobs(jobs, every_config: bool, arch: int) -> int:
    count = 0
    for autotuned, pointers, constexprs in jobs:
        for config in autotuned.configs if every_config else autotuned.configs[:1]:
            fixed = {**config.kwargs, **constexprs}
            signature = {name: "constexpr" if name in fixed else pointers.get(name, "i32")
                         for name in autotuned.fn.arg_names}
            triton.compile(ASTSource(autotuned.fn, signature, fixed), target=GPUTarget("cuda", arch, 32),
                           options={"num_warps": config.num_warps})
            count += 1
    return count


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--all", action="store_true", help="every config in every dtype")
    parser.add_argument("--arch", type=int, default=90, help="compute capability, e.g. 80 or 90")
    args = parser.parse_args(argv)
    if os.environ.get("TRITON_INTERPRET") == "1":
        print("error: unset TRITON_INTERPRET to compile for a GPU", file=sys.stderr)
        return 2
    if args.all:
        jobs = [job for dtype in TYPES.values() for job in kernels(dtype)]
    else:  # everything in bfloat16, and the GEMM's separate float32 path
        jobs = kernels("bf16") + kernels("fp32")[-1:]
    print(f"compiled {compile_jobs(jobs, args.all, args.arch)} kernels for sm_{args.arch}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
