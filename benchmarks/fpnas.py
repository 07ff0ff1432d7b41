"""FP-NAS adaptive sampling against the fixed-K baseline on the embedded digits data.

    python benchmarks/fpnas.py [--epochs 4] [--resolution 16] [--alpha-lr 0.1] \
        [--json benchmarks/results/fpnas_digits_cpu.json]

Two searches with the same seed, data, schedule and options, differing only in K: ``adaptive`` (K = max(1,
floor(lambda H)), lambda 1/4) and ``fixed`` (K = the adaptive run's initial K, the paper's K = 14 baseline scaled to
this space). Each reports the samples drawn (sum of K over steps, the paper's "# samples"), wall and CPU time, the
entropy and K over the run, and the most probable architecture's MAdds against the target and its top-1 with the
supernet's weights (BN recalibrated). The JSON records device, torch version and threads.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scarlet.fpnas.cli import DEFAULTS  # noqa: E402
from scarlet.fpnas.sampling import adaptive_k  # noqa: E402
from scarlet.fpnas.trainer import Search  # noqa: E402


def run(cfg: dict) -> dict:
    search = Search(dict(cfg), torch.device("cpu"))
    wall, cpu = time.perf_counter(), time.process_time()
    trace = []
    while search.step < search.total_steps:
        record = search.train_step()
        trace.append({"step": record["step"], "entropy": round(record["entropy"], 3), "k": record["k"],
                      "distribution": record["distribution"]})
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    report = search.final_report()
    per_epoch = {}
    for t in trace:
        per_epoch.setdefault(math.ceil(t["step"] / search.steps_per_epoch), []).append(t["k"])
    return {"samples": search.samples, "steps": search.step, "wall_s": round(wall, 2), "cpu_s": round(cpu, 2),
            "initial_entropy": trace[0]["entropy"], "final_entropy": round(search.dist.entropy().item(), 3),
            "mean_k_per_epoch": {e: round(sum(k) / len(k), 2) for e, k in per_epoch.items()},
            "final_k": trace[-1]["k"], "mode_madds": report["madds"], "flops_target": report["flops_target"],
            "mode_within_target": report["madds"] <= report["flops_target"],
            "mode_val_acc_inherited": report["val_acc_inherited"], "mode_arch": report["arch"],
            "trace_every_10": trace[::10]}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="fbnetv2-f")
    p.add_argument("--epochs", type=float, default=4.0)
    p.add_argument("--warmup-epochs", type=float, default=1.0)
    p.add_argument("--theta", type=float, default=2.0)
    p.add_argument("--resolution", type=int, default=16)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--alpha-lr", type=float, default=0.1)
    # 0.1 is the value the committed result ran with; at width 0.25 the supernet's loss did not fall with it in 4
    # epochs (nor at 0.02); 0.01 (the CLI's default) lowers it slowly for a fixed path.
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default="benchmarks/results/fpnas_digits_cpu.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = {**DEFAULTS, "space": args.space, "epochs": args.epochs, "warmup_epochs": args.warmup_epochs,
           "theta": args.theta, "resolution": args.resolution, "batch_size": args.batch_size,
           "alpha_lr": args.alpha_lr, "lr": args.lr, "seed": args.seed}
    probe = Search(dict(cfg), torch.device("cpu"))
    k0 = adaptive_k(probe.dist.entropy().item(), cfg["lam"])
    cfg["flops_target"] = probe.cfg["flops_target"]
    del probe
    results = {}
    for name, fixed_k in (("adaptive", None), ("fixed", k0)):
        results[name] = run({**cfg, "fixed_k": fixed_k})
        print(name, {k: v for k, v in results[name].items() if k not in ("mode_arch", "trace_every_10")}, flush=True)
    a, f = results["adaptive"], results["fixed"]
    out = {"benchmark": "fpnas adaptive vs fixed K", "device": "cpu", "cpu": platform.processor() or platform.machine(),
           "torch": torch.__version__, "threads": torch.get_num_threads(), "config": cfg, "fixed_k": k0,
           "results": results,
           "samples_saved_fraction": round(1 - a["samples"] / f["samples"], 4),
           "cpu_speedup": round(f["cpu_s"] / a["cpu_s"], 3), "wall_speedup": round(f["wall_s"] / a["wall_s"], 3),
           "acc_difference_adaptive_minus_fixed": round(a["mode_val_acc_inherited"] - f["mode_val_acc_inherited"], 4),
           "note": "one seed, a few epochs on 1797 8x8 digits: samples and time are measured; the accuracies are of "
                   "the most probable architecture with shared weights (near chance when the supernet has not "
                   "learnt yet, so they show no accuracy target reached); the "
                   "machine's 2 cores were shared with other jobs, so wall time is noisier than CPU time"}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({k: v for k, v in out.items() if k not in ("results", "config")}, indent=2))


if __name__ == "__main__":
    main()
