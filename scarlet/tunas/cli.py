"""``python -m scarlet.tunas``: a TuNAS search (REINFORCE policy + shared weights) on a TuNAS decision space.

Every flag can also be given in ``--config`` (YAML or JSON; keys as the flags). The run directory (``--out``) gets
``config.json``, ``metrics.jsonl`` (one line per ``--log-every`` steps, with every decision's probabilities),
``policy.png`` (those probabilities over time), atomic checkpoints (``checkpoint.pt``) that ``--resume`` continues
bit-exactly, ``cost_table.json`` for the table and latency costs, and ``summary.json`` with the final architecture
(the per-decision argmax), its cost, its measured latency and its accuracy with the supernet's weights.

The defaults are small (width 0.25, 32 px digits, 200 steps of 4 architectures) so that a run takes minutes on a
CPU; the paper's run is 27,050 steps of 32 architectures on ImageNet (sheet A4).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import time
from pathlib import Path

import torch

from scarlet.checkpoint import CHECKPOINT_NAME, atomic_write_text, save_checkpoint
from scarlet.config import Choice, Float, Int, Str, apply_resumed_flags, check_saved, flag, resolve, resolve_device
from scarlet.data import batches, load_dataset
from scarlet.decisions.arch import random_decision_arch
from scarlet.decisions.concrete import canonical
from scarlet.decisions.cost import DecisionCostModel
from scarlet.decisions.evaluate import evaluate_archs
from scarlet.errors import ArgumentParser, ScarletError, cli_main
from scarlet.rundir import open_new, open_resumed, read_jsonl, restart_metrics
from scarlet.tunas.cost import COST_SOURCES, MaddsCost, read_table
from scarlet.tunas.latency import TUNAS_SPACES, measure_table, network_ms
from scarlet.tunas.rewards import REWARDS
from scarlet.decisions.supernet import INIT_MODES
from scarlet.tunas.trainer import Search, run_space

DEFAULTS = {
    "space": "proxylessnas", "width": 0.25, "divisor": 8, "dataset": "digits", "resolution": 32,
    "supernet_init": "one-function",
    "steps": 200, "stop_after": None, "archs_per_step": 4, "batch_size": 16, "reward_batch_size": 64,
    "reward_fraction": 0.2, "lr": None, "lr_warmup": 0.025, "weight_decay": 4e-5, "label_smoothing": 0.1,
    "rl_lr": 0.05, "rl_delay": 0.25, "filter_warmup": 0.25, "op_warmup": 0.25, "entropy_weight": 0.0,
    "reward": "absolute", "beta": -0.10, "cost": "madds", "cost_table": None, "target": None,
    "latency_repeats": 10, "latency_statistic": "median", "seed": 0, "out": "runs/tunas", "device": "cpu",
    "checkpoint_every": 50, "log_every": 10,
}
FRACTION = Float(0, 1)
SCHEMA = {
    "space": Choice(*TUNAS_SPACES), "width": Float(0, 8, lo_open=True), "divisor": Int(1, 64), "dataset": Str(),
    "supernet_init": Choice(*INIT_MODES),
    "resolution": Int(8, 1024), "steps": Int(1, 10**9), "stop_after": Int(1, 10**9, none=True),
    "archs_per_step": Int(1, 1024), "batch_size": Int(1, 1 << 16), "reward_batch_size": Int(1, 1 << 16),
    "reward_fraction": Float(0, 1, lo_open=True, hi_open=True), "lr": Float(0, 100, lo_open=True, none=True),
    "lr_warmup": FRACTION, "weight_decay": Float(0, 1), "label_smoothing": Float(0, 1, hi_open=True),
    "rl_lr": Float(0, 100), "rl_delay": FRACTION, "filter_warmup": FRACTION, "op_warmup": FRACTION,
    "entropy_weight": Float(0, 100), "reward": Choice(*REWARDS), "beta": Float(-10, 10),
    "cost": Choice(*COST_SOURCES), "cost_table": Str(none=True), "target": Float(0, None, lo_open=True, none=True),
    "latency_repeats": Int(1, 10_000), "latency_statistic": Choice("median", "min"), "seed": Int(0, 2**63 - 1),
    "out": Str(), "device": Str(), "checkpoint_every": Int(1, 10**9), "log_every": Int(1, 10**9),
}
HELP = {
    "space": f"decision space: {', '.join(TUNAS_SPACES)}", "width": "width multiplier of the space",
    "divisor": "filters round to multiples of this", "dataset": "digits or cifar10:PATH (in memory)",
    "supernet_init": "one-function (every choice of a layer starts as one function; without it the 0.25-width "
    "digits supernet stalls at chance) or independent (every tensor drawn on its own, the papers' silence)",
    "resolution": "input resolution", "steps": "length of the search (all schedules)",
    "stop_after": "stop (with a checkpoint) after this many steps; --resume continues",
    "archs_per_step": "N architectures per step (TuNAS: 32, one per core)",
    "batch_size": "training images per architecture", "reward_batch_size": "held-out images per architecture "
    "for the reward (TuNAS: 4x the training batch)", "reward_fraction": "part of the training split held out "
    "for the reward", "lr": "peak weight learning rate [0.165 * N * batch / 256]",
    "lr_warmup": "fraction of steps of linear learning-rate warmup", "weight_decay": "L2 on conv kernels",
    "label_smoothing": "label smoothing of the weights' loss", "rl_lr": "policy base learning rate (the paper: "
    "0.0048 over 27,050 steps; a short run needs more)", "rl_delay": "fraction of steps with policy lr 0",
    "filter_warmup": "fraction of steps of filter warmup", "op_warmup": "fraction of steps of op warmup",
    "entropy_weight": "entropy bonus weight", "reward": "absolute, mnasnet-soft or mnasnet-hard",
    "beta": "cost exponent / weight (< 0)", "cost": "T(a): madds (millions), latency (measured here at the "
    "start, ms) or table (--cost-table)", "cost_table": "JSON table file for --cost table",
    "target": "T0 in the cost's unit [the median cost of 256 random architectures]",
    "latency_repeats": "timed calls per latency measurement", "latency_statistic": "median or min of them",
    "seed": "seed", "out": "run directory", "device": "cpu, cuda, cuda:N or auto",
    "checkpoint_every": "steps between checkpoints", "log_every": "steps between metrics lines",
}
RESUMABLE = {"out", "stop_after", "checkpoint_every", "log_every", "device"}
RUN_FILES = (CHECKPOINT_NAME, "config.json", "metrics.jsonl", "summary.json", "cost_table.json", "policy.png")
TARGET_SAMPLES = 256


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m scarlet.train --strategy tunas", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="YAML or JSON file of option values (keys as the flags, - or _)")
    p.add_argument("--resume", action="store_true", default=None, help="continue the run in --out exactly")
    types = {int: int, float: float}
    for key, option in SCHEMA.items():
        kind = types.get(option.kind, str)
        p.add_argument(flag(key), type=kind, help=f"{HELP[key]} [{DEFAULTS[key]}]")
    return p


def check_config(cfg: dict) -> dict:
    """Relations between values; derived defaults are filled by :func:`derive`."""
    for key in ("filter_warmup", "op_warmup"):
        if cfg[key] > cfg["rl_delay"]:  # TuNAS refuses this too (MAS L518-530)
            raise ScarletError(f"{flag(key)} {cfg[key]} must not exceed --rl-delay {cfg['rl_delay']}: the policy "
                               f"must not learn from warmed-up architectures")
    if cfg["cost"] == "table" and cfg["cost_table"] is None:
        raise ScarletError("--cost table needs --cost-table FILE")
    if cfg["cost"] != "table" and cfg["cost_table"] is not None:
        raise ScarletError(f"--cost-table is only read with --cost table (got --cost {cfg['cost']})")
    if cfg["reward"] == "absolute" and cfg["beta"] > 0:
        raise ScarletError(f"--beta {cfg['beta']} > 0 would reward distance from the target; use beta <= 0")
    return cfg


def make_cost(cfg: dict, space, num_classes: int, out: Path, resumed: bool):
    res = cfg["resolution"]
    if cfg["cost"] == "madds":
        return MaddsCost(space, res, num_classes)
    saved = out / "cost_table.json"
    if resumed:
        return read_table(str(saved), space, res, num_classes)
    if cfg["cost"] == "table":
        cost = read_table(cfg["cost_table"], space, res, num_classes)
        atomic_write_text(saved, Path(cfg["cost_table"]).read_text(encoding="utf-8"))
        return cost
    g = torch.Generator().manual_seed(cfg["seed"] + 3)
    table = measure_table(space, res, num_classes, cfg["latency_repeats"], 20, resolve_device(cfg["device"]), g,
                          cfg["latency_statistic"])
    atomic_write_text(saved, json.dumps(table) + "\n")
    return read_table(str(saved), space, res, num_classes)


def default_target(cost, space, seed: int) -> float:
    g = torch.Generator().manual_seed(seed + 4)
    return float(statistics.median(cost(random_decision_arch(space, g)) for _ in range(TARGET_SAMPLES)))


def load_state(path: Path) -> dict:
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ScarletError(f"checkpoint {path} is corrupt or not a Scarlet checkpoint ({first[:200]})") from None
    if not isinstance(state, dict) or state.get("kind") != "tunas" or "run_config" not in state:
        raise ScarletError(f"{path} is not a TuNAS search checkpoint")
    return state


def resumed_config(args, out: Path) -> tuple[dict, dict]:
    path = out / CHECKPOINT_NAME
    if not path.is_file():
        raise ScarletError(f"--resume: no checkpoint at {path}")
    state = load_state(path)
    cfg = check_config(check_saved(state["run_config"], SCHEMA, DEFAULTS, f"checkpoint {path}: run configuration"))
    for key in ("lr", "target"):
        if cfg[key] is None:
            raise ScarletError(f"checkpoint {path}: run configuration: {key} is null")
    apply_resumed_flags(cfg, args, DEFAULTS, SCHEMA, RESUMABLE, out)
    cfg["stop_after"] = None if args.stop_after is None else SCHEMA["stop_after"].check(args.stop_after,
                                                                                        "--stop-after")
    return cfg, state


@cli_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    with contextlib.ExitStack() as held:
        return _main(args, held)


def _main(args, held: contextlib.ExitStack) -> int:
    if args.resume:
        out = open_resumed(DEFAULTS["out"] if args.out is None else args.out, bool(args.config), held, RUN_FILES)
        cfg, state = resumed_config(args, out)
    else:
        cfg = check_config(resolve(args, DEFAULTS, SCHEMA))
        out = open_new(cfg["out"], held, RUN_FILES)
        state = None
    device = resolve_device(cfg["device"])
    data = load_dataset(cfg["dataset"], cfg["resolution"])
    space = run_space(cfg, data.in_channels)
    cost = make_cost(cfg, space, data.num_classes, out, state is not None)
    if cfg["lr"] is None:
        cfg["lr"] = 0.165 * cfg["archs_per_step"] * cfg["batch_size"] / 256  # TuNAS: 0.165 per 256 images
    if cfg["target"] is None:
        cfg["target"] = default_target(cost, space, cfg["seed"])
    search = Search(cfg, data, cost, device)
    metrics_path = out / "metrics.jsonl"
    if state is not None:
        search.load(state)
    restart_metrics(metrics_path, search.step if state is not None else None)
    atomic_write_text(out / "config.json", json.dumps(cfg, indent=2) + "\n")
    unit = getattr(cost, "unit", "")
    print(f"TuNAS on {cfg['space']} (width {cfg['width']}), {data.name} {cfg['resolution']}px: steps "
          f"{search.step} -> {cfg['steps']}, {cfg['archs_per_step']} architectures per step, cost {cfg['cost']} "
          f"target {cfg['target']:.4g} {unit}; run dir {out}")
    stop = cfg["steps"] if cfg["stop_after"] is None else min(cfg["steps"], cfg["stop_after"])
    started = time.time()
    with open(metrics_path, "ab", buffering=0) as metrics:
        while search.step < stop:
            line = search.run_step()
            step = search.step
            if step % cfg["log_every"] == 0 or step == stop:
                line["elapsed_s"] = round(time.time() - started, 3)
                line["probabilities"] = search.policy.probabilities_by_key()
                metrics.write((json.dumps(line) + "\n").encode())
            if step % cfg["checkpoint_every"] == 0 or step == stop:
                save_checkpoint(out / CHECKPOINT_NAME, {"kind": "tunas", "run_config": cfg, **search.state()})
    if search.step < cfg["steps"]:
        print(f"stopped at step {search.step} of {cfg['steps']}; --resume --out {out} continues")
        return 0
    summary = summarise(search, cfg, data, out, unit)
    plot_policy(read_jsonl(metrics_path), out / "policy.png", {d.key: d.choices for d in search.space.decisions})
    print(f"final architecture: cost {summary['cost']:.4g} {unit} (target {cfg['target']:.4g}), measured "
          f"{summary['measured_latency_ms']:.3f} ms, supernet top-1 {summary['supernet_test_acc']:.3f}; "
          f"{out / 'summary.json'}")
    return 0


def summarise(search: Search, cfg: dict, data, out: Path, unit: str) -> dict:
    arch = canonical(search.space, search.final_arch())
    madds, params = DecisionCostModel(search.space, cfg["resolution"], data.num_classes).cost(arch)
    calib = list(batches(search.train_stream.split, 64, limit=4))
    acc = evaluate_archs(search.supernet.cpu(), [arch], calib, list(batches(data.val, 256)))[0]
    latency = network_ms(search.space, arch, data.num_classes, cfg["resolution"], cfg["latency_repeats"],
                         torch.device("cpu"), cfg["latency_statistic"])
    summary = {"space": cfg["space"], "steps": search.step, "final_arch": arch.as_dict(),
               "cost": float(search.cost(arch)), "cost_source": cfg["cost"], "cost_unit": unit,
               "target": cfg["target"], "madds": madds, "params": params,
               "measured_latency_ms": latency, "latency_statistic": cfg["latency_statistic"],
               "latency_note": "BN folded, batch 1, CPU, 1 thread unless set otherwise; other processes load the "
                               "machine", "threads": torch.get_num_threads(), "torch": torch.__version__,
               "supernet_test_acc": acc, "probabilities": search.policy.probabilities_by_key()}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=1) + "\n")
    return summary


def plot_policy(records: list[dict], path: Path, choices: dict | None = None) -> None:
    """A heat map: one row per (searched decision, choice), one column per logged step, colour = probability.

    (One axes: a panel per decision takes matplotlib tens of seconds to lay out for the larger spaces.)
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in records if "probabilities" in r]
    if not records:
        return
    keys = [k for k, p in records[0]["probabilities"].items() if len(p) > 1]
    rows, labels = [], []
    for key in keys:
        for j in range(len(records[0]["probabilities"][key])):
            rows.append([r["probabilities"][key][j] for r in records])
            labels.append(f"{key}={choices[key][j]}" if choices else f"{key}[{j}]")
    steps = [r["step"] for r in records]
    fig, ax = plt.subplots(figsize=(7, 1.5 + 0.11 * len(rows)))
    image = ax.imshow(rows, aspect="auto", interpolation="nearest", vmin=0, vmax=1, cmap="viridis",
                      extent=(steps[0] - 0.5, steps[-1] + 0.5, len(rows) - 0.5, -0.5))
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels(labels, fontsize=5)
    ax.set_xlabel("step")
    ax.set_title("TuNAS policy: probability of each choice over the search", fontsize=9)
    fig.colorbar(image, ax=ax, fraction=0.03)
    fig.subplots_adjust(left=0.25, right=0.95, top=1 - 0.6 / fig.get_figheight(), bottom=0.5 / fig.get_figheight())
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=90)
    plt.close(fig)
    tmp.replace(path)
