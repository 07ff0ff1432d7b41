"""Speed and peak memory of the fair step and of architecture evaluation; prints JSON.

On a CPU (the default without CUDA) one run compares, side by side in interleaved rounds, today's configuration
(NCHW layout, eager, sequential step: ``baseline``) with the defaults (channels-last layout and the executor
that ``auto`` picks, :func:`scarlet.executor.choose_executor`), and the batched executor with the sequential one
in channels-last, at the default job's shapes (scarlet-s2, 32x32, stem stride 2, batch 64, 13 paths, 10 classes,
1 input channel) and widths 0.25, 0.5, 1.0, plus resolutions 16 and 64 at widths 0.25 and 1.0. All are timed
in one process in interleaved rounds; each keeps its best round and reports the range of its rounds. At 32x32
each configuration's peak resident memory is then measured in a fresh process (``peak_rss_mib``, and
``run_rss_mib``: its growth over two steps from before the first, gradients and optimizer state included).
Evaluation: the architectures the default
job evaluates (random subnets and the published ones, BN recalibrated on 4 batches of 64, digits-sized
validation) one by one in NCHW (today), one by one in channels-last (default) and batched in channels-last.

On CUDA: images per second of the sequential step, the batched step with and without scarlet_kernels and
replayed from a CUDA graph, at 32x32 and 224x224, fp32 and bf16, with peak memory; batched against one-by-one
evaluation of 16 and 64 architectures.

    python -m benchmarks.fair_step [--quick] [--device cpu|cuda] [--threads N] [--rounds R] [--out FILE]

``--quick`` uses tiny shapes and one step (a smoke run).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.machine import cpu_name  # noqa: E402
from scarlet.arch import random_arch  # noqa: E402
from scarlet.executor import choose_executor, evaluate_batched, evaluate_one_by_one, make_step  # noqa: E402
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



# -- CPU: one worker process per configuration --------------------------------------------------------------
DEFAULT_JOB = dict(space=SPACE, resolution=32, stem_stride=2, batch=64, classes=10, in_channels=1)  # digits


def _rss_mib(field: str = "VmRSS") -> float:
    """This process's resident memory now (VmRSS) or at its peak (VmHWM; unlike getrusage's maxrss it is not
    inherited from the parent across fork and exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _train_job(spec):
    """A closure that runs ``spec["steps"]`` training steps of one configuration."""
    from scarlet.executor.layout import memory_format, to_layout

    torch.manual_seed(0)
    model = Supernet(space=spec["space"], width=spec["width"], resolution=spec["resolution"],
                     stem_stride=spec["stem_stride"], num_classes=spec["classes"], in_channels=spec["in_channels"])
    fmt = memory_format(spec["layout"], "cpu")
    to_layout(model, fmt)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5)
    step = make_step(spec["executor"], model, optimizer)
    images = to_layout(torch.randn(spec["batch"], spec["in_channels"], spec["resolution"], spec["resolution"]), fmt)
    labels = torch.randint(spec["classes"], (spec["batch"],))
    sampler = FairSampler(spec["space"], 0)
    return lambda: step(images, labels, sampler.permutations())


def _eval_job(spec):
    """A closure that evaluates the default job's architectures once, as ``scarlet.train`` does at the end."""
    from scarlet.arch import NAMED_ARCHS, parse_arch
    from scarlet.data import batches, load_dataset
    from scarlet.errors import ScarletError
    from scarlet.evaluate import evaluate_one_by_one as one_by_one
    from scarlet.executor.layout import batches_in_layout, memory_format

    data = load_dataset("digits", spec["resolution"])
    torch.manual_seed(0)
    model = Supernet(space=spec["space"], width=spec["width"], resolution=spec["resolution"],
                     stem_stride=spec["stem_stride"], num_classes=data.num_classes, in_channels=data.in_channels)
    g = torch.Generator().manual_seed(1)
    archs = [random_arch(spec["space"], g).genes for _ in range(8)]
    for name in NAMED_ARCHS:
        try:
            archs.append(parse_arch(name, spec["space"]).genes)
        except ScarletError:
            pass
    calib = list(batches(data.train, 64, limit=4))
    val = list(batches(data.val, 256))
    fmt = spec["layout"]
    if spec["executor"] == "batched":
        cl = memory_format(fmt, "cpu")
        calib, val = batches_in_layout(calib, cl), batches_in_layout(val, cl)
        return lambda: evaluate_batched(model, archs, calib, val)
    return lambda: one_by_one(model, archs, calib, val, memory_format=fmt)


def _job(spec):
    return (_eval_job if spec["kind"] == "evaluate" else _train_job)(spec)


def _peak_memory(conn, spec, threads):
    """In a fresh process: peak resident memory over one warm-up and one timed run of ``spec``."""
    torch.set_num_threads(threads)
    run = _job(spec)
    before = _rss_mib()
    run()
    run()
    peak = _rss_mib("VmHWM")
    conn.send({"peak_rss_mib": round(peak, 1), "run_rss_mib": round(peak - before, 1)})


def _cpu_specs(quick: bool) -> list[dict]:
    base = dict(DEFAULT_JOB, kind="train")
    if quick:
        base.update(batch=8)
    specs = []
    sweep = [(w, 32) for w in (0.25, 0.5, 1.0)] + [(w, r) for r in (16, 64) for w in (0.25, 1.0)]
    if quick:
        sweep = [(0.25, 32)]
    for width, res in sweep:
        shape = dict(base, width=width, resolution=res)
        if res == 32:  # today's configuration
            specs.append(dict(shape, name="baseline", layout="contiguous", executor="sequential"))
        for executor in ("sequential", "batched"):
            specs.append(dict(shape, name=f"{executor}_channels_last", layout="channels_last", executor=executor))
    ev = dict(DEFAULT_JOB, kind="evaluate", width=0.25)
    specs += [dict(ev, name="eval_baseline", layout="contiguous", executor="one_by_one"),
              dict(ev, name="eval_one_by_one_channels_last", layout="channels_last", executor="one_by_one"),
              dict(ev, name="eval_batched_channels_last", layout="channels_last", executor="batched")]
    return specs


def bench_cpu(quick: bool, threads: int, rounds: int) -> dict:
    """Every configuration timed in one process, in interleaved rounds (a shared machine's load hits them all
    alike); peak memory measured afterwards in a fresh process per default-shape configuration."""
    specs = _cpu_specs(quick)
    jobs = [_job(spec) for spec in specs]
    for job in jobs:  # warm-up (oneDNN primitive caches)
        job()
    times = [[] for _ in specs]
    results = [None] * len(specs)
    for r in range(rounds):
        for i, job in enumerate(jobs):
            t = time.perf_counter()
            results[i] = job()
            times[i].append(time.perf_counter() - t)
        print(f"round {r + 1}/{rounds} done", file=sys.stderr, flush=True)
    del jobs
    ctx = mp.get_context("spawn")
    rows = []
    for spec, ts, result in zip(specs, times, results):
        row = dict(spec, best_s=round(min(ts), 4), times_s=[round(t, 4) for t in ts])
        if spec["kind"] == "evaluate":
            row["accuracies"] = result
        if spec["resolution"] == 32:  # one configuration at a time: the machine's memory is shared
            parent, child = ctx.Pipe()
            proc = ctx.Process(target=_peak_memory, args=(child, spec, threads))
            proc.start()
            row.update(parent.recv())
            proc.join()
        rows.append(row)
    return {"rows": rows, "summary": _summarise(rows)}


def _ratios(slow: dict, fast: dict) -> list[float]:
    """Time of ``slow`` over time of ``fast`` in each round (side by side, so under the same load)."""
    return [round(a / b, 3) for a, b in zip(slow["times_s"], fast["times_s"])]


def _summarise(rows: list[dict]) -> list[dict]:
    """Per shape: speed-ups of the defaults over today's configuration and of batched over sequential."""
    out = []
    train = [r for r in rows if r["kind"] == "train"]
    for key in sorted({(r["width"], r["resolution"]) for r in train}, key=lambda k: (k[1], k[0])):
        at = {r["name"]: r for r in train if (r["width"], r["resolution"]) == key}
        seq, bat = at["sequential_channels_last"], at["batched_channels_last"]
        auto = choose_executor("auto", torch.device("cpu"), "fair", width=key[0], resolution=key[1])
        default = at[f"{auto}_channels_last"]
        line = {"width": key[0], "resolution": key[1], "auto_picks": auto,
                "batched_over_sequential": round(seq["best_s"] / bat["best_s"], 3),
                "batched_over_sequential_per_round": _ratios(seq, bat),
                "default_s": default["best_s"],
                "auto_over_faster": round(min(seq["best_s"], bat["best_s"]) / default["best_s"], 3)}
        if "baseline" in at:
            base = at["baseline"]
            line.update(baseline_s=base["best_s"], default_over_baseline=round(base["best_s"] / default["best_s"], 3),
                        default_over_baseline_per_round=_ratios(base, default),
                        **{f"{who}_{k}": r[k] for who, r in (("baseline", base), ("default", default))
                           for k in ("peak_rss_mib", "run_rss_mib")})
        out.append(line)
    ev = {r["name"]: r for r in rows if r["kind"] == "evaluate"}
    if ev:
        base = ev["eval_baseline"]["best_s"]
        one, bat = ev["eval_one_by_one_channels_last"], ev["eval_batched_channels_last"]
        out.append({"evaluate": True, "archs": len(ev["eval_baseline"]["accuracies"]),
                    "one_by_one_channels_last_over_baseline": round(base / one["best_s"], 3),
                    "batched_channels_last_over_baseline": round(base / bat["best_s"], 3),
                    "same_accuracies": ev["eval_baseline"]["accuracies"] == one["accuracies"] == bat["accuracies"]})
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny shapes and few steps (smoke run)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads per configuration [1]")
    p.add_argument("--rounds", type=int, default=None, help="interleaved timing rounds [CPU: 3, quick: 1]")
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name(),
              "device_type": device.type, "torch": torch.__version__, "threads": torch.get_num_threads(),
              "quick": args.quick}
    if device.type == "cpu":
        report["command"] = "python -m benchmarks.fair_step " + " ".join(argv if argv is not None else sys.argv[1:])
        report.update(bench_cpu(args.quick, args.threads, args.rounds or (1 if args.quick else 3)))
    else:
        report.update(_bench_cuda(args.quick, device))
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


def _bench_cuda(quick: bool, device) -> dict:
    steps, rounds = (2, 2) if quick else (10, 3)
    report = {"train": [], "evaluate": []}
    for cfg in _train_configs(quick):
        for dtype_name in ("fp32", "bf16"):
            report["train"].append(bench_train(cfg, dtype_name, device, steps, rounds))
            print(json.dumps(report["train"][-1]), file=sys.stderr, flush=True)
    eval_cfg = ({"resolution": 32, "stem_stride": 1, "batch": 8, "width": 0.25, "classes": 10} if quick
                else {"resolution": 224, "stem_stride": 2, "batch": 64, "width": 1.0, "classes": 1000})
    for num_archs in (16, 64):
        report["evaluate"].append(bench_eval(num_archs, eval_cfg, device, 1 if quick else 2, 1))
        print(json.dumps(report["evaluate"][-1]), file=sys.stderr, flush=True)
    return report


if __name__ == "__main__":
    main()
