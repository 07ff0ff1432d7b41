"""TuNAS on this CPU: the measured latency table's error on held-out networks, and a tiny TuNAS-vs-random-search
run under a latency target with the found architectures' latencies measured.

    python -m benchmarks.tunas [--steps 200] [--out benchmarks/results]   (from the repository root)

Writes ``tunas_latency_cpu.json`` (the table's validation, timed with the median and with the minimum of the
repeated calls), ``tunas_cpu.json`` (search trajectory, random baseline, stand-alone results),
``tunas_search_summary.json`` and ``tunas_policy.png``.
Everything runs on 1 thread at batch 1; other processes load the machine, so single timings are noisy.

Equal cost: TuNAS's search processes ``steps * N * batch`` training images (forward and backward) and
``steps * N * reward_batch`` reward images (forward only, counted as 1/3 of a training image); the random search
gets as many stand-alone trainings of ``Recipe.steps * Recipe.batch_size`` images as that buys. Both winners are
then trained with the same recipe; CPU seconds of each phase are reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import torch

from scarlet.data import load_dataset
from scarlet.decisions.arch import parse_decision_arch
from scarlet.decisions.cost import DecisionCostModel
from scarlet.decisions.space import get_space
from scarlet.tunas import cli, latency
from scarlet.tunas.cost import read_table
from scarlet.tunas.random_search import sample_in_window
from scarlet.tunas.retrain import Recipe, split_accuracy, train_standalone
from scarlet.tunas.trainer import split_reward

SPACE, WIDTH, RES = "proxylessnas", 0.25, 32
N, BATCH, REWARD_BATCH = 4, 16, 64
LATENCY_REPEATS = 30


def measure(space, arch, repeats=LATENCY_REPEATS) -> dict:
    dev = torch.device("cpu")
    return {s: latency.network_ms(space, arch, 10, RES, repeats, dev, s) for s in ("median", "min")}


def standalone(space, arch, data, train, held, recipe, cost) -> dict:
    t = time.process_time()
    net = train_standalone(space, arch, train, data.num_classes, RES, recipe)
    return {"arch": arch.as_dict(), "predicted_ms": cost(arch), "measured_ms": measure(space, arch),
            "madds": DecisionCostModel(space, RES, data.num_classes).madds(arch),
            "heldout_acc": split_accuracy(net, held), "test_acc": split_accuracy(net, data.val),
            "cpu_s": round(time.process_time() - t, 1)}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--rl-lr", type=float, default=0.05, help="policy base learning rate")
    p.add_argument("--window", type=float, default=0.05, help="random search: |T/T0 - 1| <= window")
    p.add_argument("--out", default="benchmarks/results")
    args = p.parse_args()
    torch.set_num_threads(1)
    out = Path(args.out)
    work = Path(tempfile.mkdtemp(prefix="tunas_bench_"))
    report = {"device": f"cpu ({platform.processor() or platform.machine()})", "threads": 1,
              "torch": torch.__version__, "load_average_start": os.getloadavg(),
              "note": "2 shared CPU cores loaded by other processes: timings are noisy; batch 1, 1 thread"}

    # 1. latency tables (median and min statistics) and their validation on 50 held-out random networks
    tables = {}
    for stat in ("median", "min"):
        d = work / f"latency_{stat}"
        t = time.process_time()
        assert latency.main(["--space", SPACE, "--out", str(d), "--repeats", "20", "--statistic", stat]) == 0
        v = json.loads((d / "latency_validation.json").read_text())
        v["cpu_s"] = round(time.process_time() - t, 1)
        tables[stat] = v
    (out / "tunas_latency_cpu.json").write_text(json.dumps(tables, indent=1) + "\n")
    report["latency_table"] = {s: {k: v[k] for k in ("networks", "mape_percent", "max_ape_percent", "spearman",
                                                        "kendall", "measured_ms", "fit", "cpu_s")}
                               for s, v in tables.items()}

    # 2. TuNAS under the latency target (the table timed with minima: the steadier one on a loaded machine)
    run = work / "search"
    t = time.process_time()
    assert cli.main(["--space", SPACE, "--width", str(WIDTH), "--steps", str(args.steps), "--archs-per-step", str(N),
                     "--batch-size", str(BATCH), "--reward-batch-size", str(REWARD_BATCH), "--cost", "table",
                     "--cost-table", str(work / "latency_min" / "latency_table.json"), "--out", str(run),
                     "--latency-repeats", str(LATENCY_REPEATS), "--latency-statistic", "min",
                     "--log-every", "5", "--rl-lr", str(args.rl_lr)]) == 0
    search_cpu = time.process_time() - t
    summary = json.loads((run / "summary.json").read_text())
    config = json.loads((run / "config.json").read_text())
    shutil.copy(run / "policy.png", out / "tunas_policy.png")
    shutil.copy(run / "summary.json", out / "tunas_search_summary.json")
    metrics = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    trajectory = [{k: m[k] for k in ("step", "loss", "accuracy", "cost", "reward", "baseline", "rl_lr")}
                  for m in metrics]

    data = load_dataset("digits", RES)
    space = replace(get_space(SPACE, WIDTH, 8), in_channels=data.in_channels)
    cost = read_table(str(run / "cost_table.json"), space, RES, data.num_classes)
    train, held = split_reward(data.train, config["reward_fraction"])
    recipe = Recipe(steps=150, batch_size=32, lr=0.1)
    target = config["target"]

    tunas_arch = parse_decision_arch(summary["final_arch"], space)
    tunas = standalone(space, tunas_arch, data, train, held, recipe, cost)
    tunas.update(search_cpu_s=round(search_cpu, 1), supernet_test_acc=summary["supernet_test_acc"])

    # 3. random search at equal cost
    images = args.steps * N * (BATCH + REWARD_BATCH / 3)
    m = max(1, round(images / (recipe.steps * recipe.batch_size)))
    g = torch.Generator().manual_seed(0)
    archs, draws = sample_in_window(space, cost, target, args.window, m, g)
    t = time.process_time()
    candidates = [standalone(space, a, data, train, held, recipe, cost) for a in archs]
    random_cpu = time.process_time() - t
    best = max(candidates, key=lambda c: c["heldout_acc"])

    report.update({
        "space": SPACE, "width": WIDTH, "resolution": RES, "dataset": "digits (1437 train: 1150 weights / 287 "
        "reward-heldout; 360 test)", "target_ms": target, "cost": "latency table (min statistic), ms",
        "search": {k: config[k] for k in ("steps", "archs_per_step", "batch_size", "reward_batch_size", "lr",
                                          "rl_lr", "beta", "reward", "filter_warmup", "op_warmup", "rl_delay",
                                          "supernet_init")},
        "recipe": recipe.as_dict(),
        "equal_cost": {"tunas_image_equivalents": images, "random_candidates": m,
                       "random_window": args.window, "random_draws": draws,
                       "tunas_search_cpu_s": round(search_cpu, 1), "random_training_cpu_s": round(random_cpu, 1)},
        "search_trajectory": trajectory, "tunas": tunas, "random_best": best, "random_candidates": candidates,
        "table": [{"method": "TuNAS", "heldout_acc": tunas["heldout_acc"], "test_acc": tunas["test_acc"],
                   "predicted_ms": tunas["predicted_ms"], "measured_ms_min": tunas["measured_ms"]["min"],
                   "measured_ms_median": tunas["measured_ms"]["median"]},
                  {"method": f"random search (best of {m})", "heldout_acc": best["heldout_acc"],
                   "test_acc": best["test_acc"], "predicted_ms": best["predicted_ms"],
                   "measured_ms_min": best["measured_ms"]["min"],
                   "measured_ms_median": best["measured_ms"]["median"]}],
        "load_average_end": os.getloadavg(),
    })
    (out / "tunas_cpu.json").write_text(json.dumps(report, indent=1) + "\n")
    for row in report["table"]:
        print(json.dumps(row))
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
