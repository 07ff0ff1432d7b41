"""Benchmark of the scarlet_kernels ops on the layer shapes of the 19-layer mobile space; prints JSON.

For each op, shape, dtype and pass (forward, backward) it times every available backend and the PyTorch
baselines (the stock way to compute the same thing, in the standard and the channels-last layout), and reports
the speedup over the best baseline and the bandwidth achieved, also as a fraction of the device's measured copy
bandwidth. ``--quick`` is a CPU smoke run: the PyTorch backend and baselines only, a few small shapes, seconds.

    python -m benchmarks.kernels [--quick] [--ops ...] [--dtypes ...] [--batches ...] [--resolutions ...]
"""

from __future__ import annotations

import argparse
import functools
import json
import statistics
import sys
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

import scarlet_kernels as sk
from scarlet_kernels import backend, se
from scarlet_kernels.depthwise import output_size

# Searchable layers of the 19-layer space (REFERENCE section 1): input channels, output channels, stride and
# input size at 224 x 224. The depthwise conv runs on in * e hidden channels at that size with that stride.
LAYERS = [(16, 32, 2, 112), (32, 32, 1, 56), (32, 40, 2, 56), (40, 40, 1, 28), (40, 80, 2, 28), (80, 80, 1, 14),
          (80, 96, 1, 14), (96, 96, 1, 14), (96, 192, 2, 14), (192, 192, 1, 7), (192, 320, 1, 7)]
EXPANSIONS = (3, 6)
KERNELS = [3, 5, 7]  # one stacked path per kernel size, as in a strictly fair step
BACKENDS = ("torch", "triton", "cuda")
DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def timer(device: torch.device, reps: int) -> Callable[[Callable[[], object]], float]:
    """Median milliseconds of fn over ``reps`` runs after warm-up (CUDA events on a GPU)."""

    def measure(fn):
        for _ in range(3):
            fn()
        times = []
        for _ in range(reps):
            if device.type == "cuda":
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn()
                end.record()
                torch.cuda.synchronize()
                times.append(start.elapsed_time(end))
            else:
                t0 = time.perf_counter()
                fn()
                times.append((time.perf_counter() - t0) * 1e3)
        return statistics.median(times)

    return measure


def copy_bandwidth(device: torch.device, measure, megabytes: int) -> float:
    """GB/s of a large tensor copy (bytes read plus bytes written), the practical ceiling of these ops."""
    src = torch.empty(megabytes * 2**20, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    return 2 * src.numel() / (measure(lambda: dst.copy_(src)) * 1e-3) / 1e9


def channels_last(x: torch.Tensor) -> torch.Tensor:
    n = x.dim() - 3
    return x.permute(*range(n), n + 1, n + 2, n).contiguous().permute(*range(n), n + 2, n, n + 1)


def depthwise_case(cin, cout, stride, size, e, batch, dtype, device):
    c = cin * e
    x = torch.randn(len(KERNELS), batch, c, size, size, device=device, dtype=dtype)
    w = torch.randn(len(KERNELS), c, 7, 7, device=device, dtype=dtype) * 0.1
    out = output_size(size, stride)
    shape = dict(paths=len(KERNELS), batch=batch, channels=c, size=size, stride=stride, kernels=KERNELS)

    def per_path(x, w):  # the stock way: one grouped F.conv2d per path, each with its own k x k weight
        return [F.conv2d(x[p], w[p, :, None, 3 - k // 2:4 + k // 2, 3 - k // 2:4 + k // 2], stride=stride,
                         padding=k // 2, groups=c) for p, k in enumerate(KERNELS)]

    ops = {name: functools.partial(sk.masked_depthwise_conv2d, kernel_sizes=KERNELS, stride=stride, backend=name)
           for name in BACKENDS}
    baselines = {"conv2d_nchw": (per_path, x), "conv2d_channels_last": (per_path, channels_last(x))}
    element = x.element_size()
    traffic = {"forward": (x.numel() + x.numel() // size**2 * out**2) * element,
               "backward": (x.numel() * 2 + x.numel() // size**2 * out**2) * element}
    return shape, (x, w), ops, baselines, traffic


def se_case(cin, cout, stride, size, e, batch, dtype, device):
    c, out = cin * e, output_size(size, stride)
    x = torch.randn(len(KERNELS), batch, c, out, out, device=device, dtype=dtype)
    params = [torch.randn(len(KERNELS), *s, device=device, dtype=dtype) * 0.1
              for s in ((c // 4, c), (c // 4,), (c, c // 4), (c,))]
    shape = dict(paths=len(KERNELS), batch=batch, channels=c, reduced=c // 4, size=out)
    ops = {name: functools.partial(sk.fused_se, backend=name) for name in BACKENDS}
    reference = lambda x, *p: se.fused_se_reference(x, *p)  # noqa: E731
    baselines = {"pytorch_nchw": (reference, x), "pytorch_channels_last": (reference, channels_last(x))}
    size_x = x.numel() * x.element_size()
    return shape, (x, *params), ops, baselines, {"forward": 3 * size_x, "backward": 4 * size_x}


def scaled_pointwise_case(cin, cout, stride, size, e, batch, dtype, device):
    c, out = cin * e, output_size(size, stride)
    x = torch.randn(len(KERNELS), batch, c, out, out, device=device, dtype=dtype)
    gate = torch.rand(len(KERNELS), batch, c, device=device, dtype=dtype)
    w = torch.randn(len(KERNELS), cout, c, device=device, dtype=dtype) * 0.1
    shape = dict(paths=len(KERNELS), batch=batch, channels=c, out_channels=cout, size=out)
    ops = {name: functools.partial(sk.scaled_pointwise, backend=name) for name in BACKENDS}

    def per_path(x, g, w):  # the stock way: scale, then a 1x1 F.conv2d per path
        xg = x * g[..., None, None]
        return [F.conv2d(xg[p], w[p, :, :, None, None]) for p in range(len(KERNELS))]

    baselines = {"conv2d_nchw": (per_path, x), "conv2d_channels_last": (per_path, channels_last(x))}
    element = x.element_size()
    y = x.numel() // c * cout
    return shape, (x, gate, w), ops, baselines, {"forward": (x.numel() + y) * element,
                                                 "backward": (2 * x.numel() + y) * element}


def els_case(cin, cout, stride, size, e, batch, dtype, device):
    # ELS on a layer (cin -> cout, at the layer's output size), then the next block's expansion cout -> 6 cout.
    out = output_size(size, stride)
    x = torch.randn(batch, cin, out, out, device=device, dtype=dtype)
    w_els = torch.randn(cout, cin, device=device, dtype=dtype) * 0.1
    w_next = torch.randn(6 * cout, cout, device=device, dtype=dtype) * 0.1
    shape = dict(batch=batch, in_channels=cin, els_channels=cout, out_channels=6 * cout, size=out)
    ops = {name: functools.partial(sk.els_pointwise, backend=name) for name in BACKENDS}
    sequential = lambda x, a, b: F.conv2d(F.conv2d(x, a[..., None, None]), b[..., None, None])  # noqa: E731
    baselines = {"two_conv2d_nchw": (sequential, x), "two_conv2d_channels_last": (sequential, channels_last(x))}
    element = x.element_size()
    y = x.numel() // cin * 6 * cout
    return shape, (x, w_els, w_next), ops, baselines, {"forward": (x.numel() + y) * element,
                                                       "backward": (2 * x.numel() + y) * element}


CASES = {"masked_depthwise_conv2d": depthwise_case, "fused_se": se_case,
         "scaled_pointwise": scaled_pointwise_case, "els_pointwise": els_case}


def passes(fn, args):
    """(forward, backward) thunks: the op, and the backward alone on a retained graph."""
    leaves = [a.detach().requires_grad_() for a in args]
    out = fn(*leaves)
    outs = out if isinstance(out, list) else [out]
    grads = [torch.ones_like(o) for o in outs]

    def forward():
        with torch.no_grad():
            fn(*args)

    def backward():
        torch.autograd.grad(outs, leaves, grads, retain_graph=True)

    return forward, backward


def measure_case(op, case, measure, bandwidth, names):
    shape, args, ops, baselines, traffic = case
    rows = []
    thunks = {name: passes(ops[name], args) for name in names}
    for name, (fn, x) in baselines.items():
        thunks[name] = passes(fn, (x, *args[1:]))
    for index, pass_name in enumerate(("forward", "backward")):
        ms = {name: measure(t[index]) for name, t in thunks.items()}
        best = min(baselines, key=ms.get)
        bytes_moved = traffic[pass_name]
        rows.append({
            "op": op, "pass": pass_name, "shape": shape, "dtype": str(args[0].dtype).removeprefix("torch."),
            "bytes": bytes_moved, "ms": ms, "best_baseline": best,
            "speedup_over_best_baseline": {n: ms[best] / ms[n] for n in names},
            "GBps": {n: bytes_moved / (ms[n] * 1e-3) / 1e9 for n in ms},
            "fraction_of_copy_bandwidth": {n: bytes_moved / (ms[n] * 1e-3) / 1e9 / bandwidth for n in ms},
        })
    return rows


def environment(device: torch.device) -> dict:
    try:
        import triton
        triton_version = triton.__version__
    except ImportError:
        triton_version = None
    return {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "torch": torch.__version__, "triton": triton_version, "cuda": torch.version.cuda,
            "cuda_extension": backend.CUDA_EXTENSION_LOADED}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CPU smoke run: PyTorch only, a few small shapes")
    parser.add_argument("--ops", nargs="+", choices=sorted(CASES), default=sorted(CASES))
    parser.add_argument("--dtypes", nargs="+", choices=sorted(DTYPES), default=["float32", "bfloat16"])
    parser.add_argument("--batches", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--resolutions", nargs="+", type=int, default=[224, 32])
    parser.add_argument("--reps", type=int, default=20)
    args = parser.parse_args(argv)

    if args.quick:
        device, names, reps = torch.device("cpu"), ["torch"], 3
        layers, batches, resolutions, dtypes = LAYERS[5:7], [2], [32], ["float32"]
    elif not torch.cuda.is_available():
        print("error: no CUDA device; the full benchmark measures GPU kernels (use --quick on a CPU)",
              file=sys.stderr)
        return 2
    else:
        device, reps = torch.device("cuda"), args.reps
        names = [n for n in BACKENDS if backend.available()[n]]
        layers, batches, resolutions, dtypes = LAYERS, args.batches, args.resolutions, args.dtypes

    measure = timer(device, reps)
    report = environment(device)
    report["copy_bandwidth_GBps"] = copy_bandwidth(device, measure, 64 if args.quick else 1024)
    report["backends"] = names
    report["results"] = []
    torch.manual_seed(0)
    for op in args.ops:
        expansions = (1,) if op == "els_pointwise" else EXPANSIONS
        for resolution in resolutions:
            for cin, cout, stride, size in layers:
                size = max(1, size * resolution // 224)
                for e in expansions:
                    for batch in batches:
                        for dtype in dtypes:
                            case = CASES[op](cin, cout, stride, size, e, batch, DTYPES[dtype], device)
                            report["results"].extend(measure_case(op, case, measure,
                                                                  report["copy_bandwidth_GBps"], names))
    json.dump(report, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
