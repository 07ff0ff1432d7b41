"""Throughput of the fair step executors and of batched architecture evaluation; prints JSON.

Training: images per second (batch x m paths per step) of the sequential eager step (the reference), the batched
step, and on a GPU also the batched step without scarlet_kernels (``batched_torch_ops``) and the batched step
replayed from a CUDA graph, for scarlet-s2 at 32x32 (batch 128, stem stride 1 as for CIFAR) and 224x224 (batch 32
and 64), fp32 and bf16 autocast, with peak memory on CUDA. Executors are timed in interleaved rounds and each
keeps its best round, which suits a shared machine.

Evaluation: P = 16 and 64 random architectures, batched (:func:`scarlet.executor.evaluate_batched`) against one
by one (:func:`scarlet.executor.evaluate_one_by_one`), both with BN recalibration.

    python benchmarks/fair_step.py [--quick] [--device cpu|cuda] [--threads N] [--out FILE]

``--quick`` uses tiny shapes and a few steps (a CPU smoke run, well under a minute).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scarlet.arch import random_arch  # noqa: E402
from scarlet.executor import evaluate_batched, evaluate_one_by_one, make_step  # noqa: E402
from scarlet.samplers import FairSampler  # noqa: E402
from scarlet.supernet import Supernet  # noqa: E402

SPACE = "scarlet-s2"


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _train_configs(quick: bool):
    if quick:
        return [dict(resolution=32, stem_stride=1, batch=8, width=0.25, classes=10),
                dict(resolution=64, stem_stride=2, batch=8, width=0.25, classes=10)]
    return [dict(resolution=32, stem_stride=1, batch=128, width=1.0, classes=10),
            dict(resolution=224, stem_stride=2, batch=32, width=1.0, classes=1000),
            dict(resolution=224, stem_stride=2, batch=64, width=1.0, classes=1000)]


def bench_train(cfg, dtype_name, device, steps, rounds):
    autocast = {"fp32": None, "bf16": torch.bfloat16}[dtype_name]
    torch.manual_seed(0)
    model = Supernet(space=SPACE, width=cfg["width"], resolution=cfg["resolution"], stem_stride=cfg["stem_stride"],
                     num_classes=cfg["classes"]).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5)
    b = cfg["batch"]
    images = torch.randn(b, 3, cfg["resolution"], cfg["resolution"], device=device)
    labels = torch.randint(cfg["classes"], (b,), device=device)
    sampler = FairSampler(SPACE, 0)
    m = model.space.num_choices
    executors = {"sequential": make_step("sequential", model, optimizer, autocast_dtype=autocast),
                 "batched": make_step("batched", model, optimizer, autocast_dtype=autocast, cuda_graph=False)}
    if device.type == "cuda":
        executors["batched_torch_ops"] = make_step("batched", model, optimizer, autocast_dtype=autocast,
                                                   cuda_graph=False, kernels="off")
        executors["batched_graph"] = make_step("batched", model, optimizer, autocast_dtype=autocast,
                                               cuda_graph=True)
    best = {name: float("inf") for name in executors}
    peak = {}
    for name, step in executors.items():  # warm up (and, for the graph, capture)
        for _ in range(4 if name == "batched_graph" else 1):
            step(images, labels, sampler.permutations())
    for _ in range(rounds):
        for name, step in executors.items():
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            _sync(device)
            t = time.perf_counter()
            for _ in range(steps):
                step(images, labels, sampler.permutations())
            _sync(device)
            best[name] = min(best[name], (time.perf_counter() - t) / steps)
            if device.type == "cuda":
                peak[name] = torch.cuda.max_memory_allocated(device) / 2**20
    out = {**cfg, "space": SPACE, "paths": m, "dtype": dtype_name, "steps": steps, "rounds": rounds}
    for name in executors:
        out[name] = {"step_s": round(best[name], 5), "images_per_s": round(b * m / best[name], 1)}
        if name in peak:
            out[name]["peak_mib"] = round(peak[name], 1)
    out["batched_over_sequential"] = round(best["sequential"] / best["batched"], 3)
    if "batched_graph" in best:
        out["graph_over_sequential"] = round(best["sequential"] / best["batched_graph"], 3)
    return out


def bench_eval(num_archs, cfg, device, batches, rounds):
    torch.manual_seed(0)
    model = Supernet(space=SPACE, width=cfg["width"], resolution=cfg["resolution"], stem_stride=cfg["stem_stride"],
                     num_classes=cfg["classes"]).to(device)
    g = torch.Generator().manual_seed(1)
    archs = [random_arch(SPACE, g).genes for _ in range(num_archs)]
    b = cfg["batch"]
    data = [(torch.randn(b, 3, cfg["resolution"], cfg["resolution"], device=device),
             torch.randint(cfg["classes"], (b,), device=device)) for _ in range(2 * batches)]
    calib, val = data[:batches], data[batches:]
    times = {"one_by_one": float("inf"), "batched": float("inf")}
    fns = {"one_by_one": evaluate_one_by_one, "batched": evaluate_batched}
    results = {}
    for _ in range(rounds):
        for name, fn in fns.items():
            _sync(device)
            t = time.perf_counter()
            results[name] = fn(model, archs, calib, val)
            _sync(device)
            times[name] = min(times[name], time.perf_counter() - t)
    return {"archs": num_archs, **cfg, "calib_batches": batches, "val_batches": batches,
            "one_by_one_s": round(times["one_by_one"], 4), "batched_s": round(times["batched"], 4),
            "archs_per_s_one_by_one": round(num_archs / times["one_by_one"], 2),
            "archs_per_s_batched": round(num_archs / times["batched"], 2),
            "speedup": round(times["one_by_one"] / times["batched"], 3),
            "same_accuracies": results["one_by_one"] == results["batched"]}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores visible)"
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny shapes and few steps (CPU smoke run)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    steps, rounds = (2, 2) if args.quick else (10, 3)
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name(),
              "device_type": device.type, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "quick": args.quick, "train": [], "evaluate": []}
    configs = _train_configs(args.quick)
    for cfg in configs:
        for dtype_name in ("fp32", "bf16"):
            report["train"].append(bench_train(cfg, dtype_name, device, steps, rounds))
            print(json.dumps(report["train"][-1]), file=sys.stderr, flush=True)
    eval_cfg = ({"resolution": 32, "stem_stride": 1, "batch": 8, "width": 0.25, "classes": 10} if args.quick
                else {"resolution": 224, "stem_stride": 2, "batch": 64, "width": 1.0, "classes": 1000})
    for num_archs in (16, 64):
        report["evaluate"].append(bench_eval(num_archs, eval_cfg, device, 1 if args.quick else 2,
                                             1))
        print(json.dumps(report["evaluate"][-1]), file=sys.stderr, flush=True)
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
