"""``python -m scarlet.search``: constrained, weighted NSGA-II (or random search) on a trained supernet.

Objectives by default: maximise accuracy, minimise MAdds, maximise parameters, crowding weights 0.4 / 0.4 / 0.2
(SCARLET). Constraints: ``--madds-max`` is checked before an architecture is evaluated, ``--acc-min`` after.
The defaults finish in a few minutes on a CPU on the default small supernet; ``--config paper``
(``scarlet/search/configs/paper.yaml``) has the paper's settings (population 70, 120 generations, MAdds at 224x224
at most 500M, accuracy at least 0.4).

The output directory holds ``pareto.json`` (the final front, K equispaced picks marked), ``evaluated.csv``,
``history.jsonl``, ``pareto.png`` and ``search_state.json``, written atomically after the initial population
and every generation: ``--resume`` continues the search exactly where it stopped.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
import time
from pathlib import Path

import torch

from scarlet.config import resolve_device
from scarlet.errors import ArgumentParser, ScarletError, cli_main
from scarlet.search.algorithm import SearchConfig

STATE_NAME = "search_state.json"
SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"
CLI_STATE_FORMAT = "scarlet-search-run"

DEFAULTS = {
    "supernet": None, "out": "runs/search", "strategy": "nsga2",
    "objectives": "acc:max,madds:min,params:max", "weights": "0.4,0.4,0.2", "madds_max": None, "acc_min": None,
    "population": 16, "generations": 8, "seed": 0, "k": 5, "budget": None, "max_draws": None,
    **{k: SearchConfig.__dataclass_fields__[k].default  # Table 7, defined once in the operators
       for k in ("mutation_ratio", "p_random", "p_roulette", "p_policy", "p_single", "p_multi", "multi_max",
                 "policy_lr")},
    "cost_model": "supernet", "space": None, "dataset": None, "recalib_batches": None, "calib_batch_size": None,
    "val_batches": None, "val_batch_size": 256, "evaluator": "auto", "eval_chunk": None, "device": "auto",
    "threads": None,
}
# What a resumed search may change; everything else must match the saved run. (The supernet may have moved; its
# space is checked.)
RESUMABLE = {"supernet", "generations", "k", "budget", "max_draws", "device", "out", "evaluator", "eval_chunk",
             "threads"}
SEARCH_KEYS = ("population", "generations", "seed", "k", "budget", "max_draws", "mutation_ratio", "p_random",
               "p_roulette", "p_policy", "p_single", "p_multi", "multi_max", "policy_lr")


_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}


def amount(text) -> float:
    """``500M``, ``12.5k``, ``5e8`` or a plain number."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    m = re.fullmatch(r"\s*([0-9.eE+-]+)\s*([kKmMgG]?)\s*", str(text))
    try:
        value = float(m.group(1)) * _SUFFIX[m.group(2).lower()]
    except (AttributeError, ValueError):
        raise ValueError(f"not an amount: {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"not an amount: {text!r}")
    return value


amount.__name__ = "amount (e.g. 500M)"


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m scarlet.search", description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--config", help="YAML or JSON file of option defaults (keys as the flags, - or _), or the name of a "
                       "shipped one: paper (SCARLET's settings)")
    a("--supernet", help="run directory of a trained supernet (or its checkpoint file)")
    a("--out", help=f"output directory [{DEFAULTS['out']}]")
    a("--resume", action="store_true", default=None, help="continue the search saved in --out exactly")
    a("--strategy", choices=("nsga2", "random"), help="[nsga2]")
    a("--objectives", type=str, help="NAME:min|max, comma separated, names from acc, madds, params "
                                     f"[{DEFAULTS['objectives']}]")
    a("--weights", type=str, help=f"crowding-distance weight per objective [{DEFAULTS['weights']}]")
    a("--madds-max", type=amount, help="keep MAdds <= this, checked before evaluation (e.g. 500M)")
    a("--acc-min", type=float, help="keep accuracy >= this (fraction, e.g. 0.4)")
    a("--cost-model", choices=("supernet", "paper"),
      help="MAdds/params at the supernet's resolution, classes and width, or at 224x224, 1000 classes [supernet]")
    a("--population", type=int, help=f"[{DEFAULTS['population']}]")
    a("--generations", type=int, help=f"[{DEFAULTS['generations']}]")
    a("--k", type=int, help="equispaced picks from the final front [5]")
    a("--seed", type=int, help="[0]")
    a("--budget", type=int, help="random search: evaluations [(generations + 1) x population]")
    a("--max-draws", type=int, help="draws allowed to fill one population [100 x population]")
    a("--mutation-ratio", type=float, help="share of children made by mutation [0.8]")
    a("--p-random", type=float, help="hierarchical mutation: random redraw [0.2]")
    a("--p-roulette", type=float, help="roulette wheel over the elites [0.65]")
    a("--p-policy", type=float, help="REINFORCE policy [0.15]")
    a("--p-single", type=float, help="mutate one gene [0.7]")
    a("--p-multi", type=float, help="mutate 2..multi-max genes [0.3]")
    a("--multi-max", type=int, help="[4]")
    a("--policy-lr", type=float, help="[0.1]")
    a("--space", help="refuse a supernet of any other search space")
    a("--dataset", help="digits, cifar10:PATH or imagefolder:PATH [the supernet run's]")
    a("--recalib-batches", type=int, help="training batches for BN recalibration [the run's, else 4]")
    a("--calib-batch-size", type=int, help="[the run's batch size, else 64]")
    a("--val-batches", type=int, help="validation batches per evaluation [all]")
    a("--val-batch-size", type=int, help="[256]")
    a("--evaluator", choices=("auto", "batched", "one-by-one"),
      help="all the architectures of a batch at once (scarlet.executor), or one by one; same accuracies "
           "[auto: batched]")
    a("--eval-chunk", type=int, help="batched evaluator: paths evaluated together [all on a CPU, from free "
                                     "memory on a GPU]")
    a("--device", help="auto, cpu, cuda, cuda:N [auto]")
    a("--threads", type=int, help="torch CPU threads [torch's default]")
    a("--no-progress", action="store_true", default=None, help="no progress bar")
    return p


def _floats(text) -> list[float]:
    parts = [t for t in re.split(r"[\s,;]+", str(text).strip().strip("[]()")) if t]
    try:
        return [float(t) for t in parts]
    except ValueError:
        raise ScarletError(f"--weights {text!r}: expected numbers separated by commas") from None


def _settings(args, parser) -> tuple[dict, dict | None]:
    """Resolved settings of a new search, or of the saved one when resuming."""
    from scarlet.config import resolve

    out = Path(args.out or DEFAULTS["out"])
    state_path = out / STATE_NAME
    if args.resume:
        if args.config:
            raise ScarletError("--config cannot be combined with --resume: the search continues with its saved "
                               "settings")
        if not state_path.exists():
            raise ScarletError(f"--resume: no search state at {state_path}")
        saved = _read_state(state_path)
        cfg = {**DEFAULTS, **saved["settings"]}
        explicit = {k: v for k, v in vars(args).items()
                    if v is not None and k not in ("resume", "config", "no_progress")}
        for key, value in explicit.items():
            if key in RESUMABLE:
                cfg[key] = str(Path(value).resolve()) if key == "supernet" else value
            elif cfg.get(key) != value:
                raise ScarletError(f"--{key.replace('_', '-')} {value} conflicts with the search in {out} "
                                   f"({key} = {cfg.get(key)}); drop the flag or start a new --out")
        cfg["out"] = str(out)
        return cfg, saved
    if state_path.exists():
        raise ScarletError(f"{out} already holds a search; pass --resume to continue it or choose another --out")
    if args.config and not Path(args.config).exists() and (SHIPPED_CONFIGS / f"{args.config}.yaml").is_file():
        args.config = str(SHIPPED_CONFIGS / f"{args.config}.yaml")  # --config paper
    cfg = resolve(args, DEFAULTS, parser)
    for key in ("resume", "no_progress"):
        cfg.pop(key, None)
    cfg["out"] = str(out)
    if cfg["supernet"] is None:
        raise ScarletError("--supernet RUN_DIR is required")
    cfg["supernet"] = str(Path(cfg["supernet"]).resolve())
    return cfg, None


def _read_state(path: Path) -> dict:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ScarletError(f"search state {path} is unreadable ({str(e).splitlines()[0]})") from None
    if not isinstance(state, dict) or state.get("format") != CLI_STATE_FORMAT or "search" not in state:
        raise ScarletError(f"{path} is not a search state written by python -m scarlet.search")
    return state


def _search_config(cfg: dict, objectives) -> SearchConfig:
    values = {k: cfg[k] for k in SEARCH_KEYS}
    values["pick_by"] = "madds" if any(o.name == "madds" for o in objectives) else None  # picks along MAdds
    try:
        return SearchConfig(**values)
    except (TypeError, ValueError) as e:
        raise ScarletError(f"bad search setting: {e}") from None


def _run_config(supernet_path: Path) -> dict:
    """The training run's configuration (config.json beside the checkpoint), if there is one."""
    folder = supernet_path if supernet_path.is_dir() else supernet_path.parent
    try:
        return json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}


def _batches(cfg: dict, model, run_cfg: dict, device: torch.device):
    from scarlet.data import batches, load_dataset

    spec = cfg["dataset"] or run_cfg.get("dataset")
    if not spec:
        raise ScarletError(f"no config.json beside {cfg['supernet']} says which data set it was trained on; "
                           f"pass --dataset")
    data = load_dataset(spec, model.resolution)
    if data.num_classes != model.config.num_classes or data.in_channels != model.config.in_channels:
        raise ScarletError(f"data set {spec} has {data.num_classes} classes and {data.in_channels} channels, the "
                           f"supernet {model.config.num_classes} and {model.config.in_channels}")
    recalib = cfg["recalib_batches"] if cfg["recalib_batches"] is not None else run_cfg.get("recalib_batches", 4)
    calib_bs = cfg["calib_batch_size"] or run_cfg.get("batch_size", 64)
    calib = [(x.to(device), y.to(device)) for x, y in batches(data.train, calib_bs, limit=recalib)]
    val = [(x.to(device), y.to(device)) for x, y in batches(data.val, cfg["val_batch_size"], limit=cfg["val_batches"])]
    return calib, val, spec


def _check(cfg: dict) -> None:
    for key in ("population", "k", "val_batch_size", "multi_max"):
        if cfg[key] is None or cfg[key] < 1:
            raise ScarletError(f"--{key.replace('_', '-')} must be positive, got {cfg[key]}")
    for key in ("generations", "recalib_batches", "val_batches", "calib_batch_size", "budget", "max_draws",
                "eval_chunk", "threads"):
        if cfg[key] is not None and cfg[key] < (0 if key in ("generations", "recalib_batches") else 1):
            raise ScarletError(f"--{key.replace('_', '-')} is out of range: {cfg[key]}")
    if cfg["acc_min"] is not None and not 0 <= cfg["acc_min"] <= 1:
        raise ScarletError(f"--acc-min is a fraction in [0, 1], got {cfg['acc_min']}")


def _objectives(cfg: dict):
    from scarlet.search.problem import parse_objectives

    weights = _floats(cfg["weights"]) if cfg["weights"] is not None else None
    try:
        return parse_objectives(cfg["objectives"], weights)
    except ValueError as e:
        raise ScarletError(f"--objectives/--weights: {e}") from None


@cli_main
def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    cfg, saved = _settings(args, parser)
    _check(cfg)
    objectives = _objectives(cfg)
    search_config = _search_config(cfg, objectives)
    device = resolve_device(cfg["device"])
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])

    import scarlet
    from scarlet.search import STRATEGIES
    from scarlet.search.supernet_problem import SupernetEvaluator, cost_model_for, supernet_problem

    supernet_path = Path(cfg["supernet"])
    model = scarlet.load_supernet(supernet_path, map_location=device)
    if cfg["space"] is not None and model.space.name != cfg["space"]:
        raise ScarletError(f"{supernet_path} is a {model.space.name} supernet, not {cfg['space']}")
    if saved is not None and saved["space"] != model.space.name:
        raise ScarletError(f"{supernet_path} is now a {model.space.name} supernet; the search in {cfg['out']} ran "
                           f"on {saved['space']}")
    calib, val, data_spec = _batches(cfg, model, _run_config(supernet_path), device)
    evaluator = SupernetEvaluator(model, calib, val, cfg["evaluator"], cfg["eval_chunk"])
    problem = supernet_problem(model, evaluator, objectives, cost_model_for(model, cfg["cost_model"]),
                               madds_max=cfg["madds_max"], acc_min=cfg["acc_min"])
    algo = STRATEGIES[cfg["strategy"]](problem, search_config)
    elapsed: list[float] = []
    if saved is not None:
        algo.load_state_dict(saved["search"])
        elapsed = list(saved.get("elapsed", []))
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    return _search(algo, cfg, out, elapsed, model.space.name, data_spec, progress=not args.no_progress)


def _search(algo, cfg: dict, out: Path, elapsed: list[float], space: str, data_spec: str, progress: bool) -> int:
    from tqdm import tqdm

    from scarlet.checkpoint import atomic_write_text
    from scarlet.search.report import plot_pareto, write_evaluated_csv, write_history_jsonl, write_pareto_json

    config = algo.config
    if cfg["strategy"] == "nsga2":
        total, unit = config.generations + 1, "gen"
    else:
        total, unit = math.ceil(config.evaluation_budget / config.population) + 1, "batch"
    print(f"searching {space} ({algo.problem.num_choices[0]}^{len(algo.problem.num_choices)} architectures) with "
          f"{cfg['strategy']}: population {config.population}, "
          + (f"{config.generations} generations" if cfg["strategy"] == "nsga2"
             else f"{config.evaluation_budget} evaluations")
          + f", {algo.problem.describe_constraints()}, accuracy on {data_spec} "
          f"({getattr(algo.problem.evaluate, 'mode', 'custom')} evaluator); output in {out}")
    bar = tqdm(total=total, initial=min(len(algo.history), total), disable=not progress, unit=unit,
               dynamic_ncols=True)
    started = time.time() - (elapsed[-1] if elapsed else 0.0)

    def checkpoint(algorithm, record):
        elapsed.append(time.time() - started)
        state = {"format": CLI_STATE_FORMAT, "settings": cfg, "space": space, "elapsed": elapsed,
                 "search": algorithm.state_dict()}
        atomic_write_text(out / STATE_NAME, json.dumps(state) + "\n")
        write_history_jsonl(out / "history.jsonl", algorithm.history, elapsed)
        bar.update(1)
        bar.set_postfix(front=record["front_size"], best_acc=f"{record['best'].get('acc', float('nan')):.4f}",
                        evaluated=record["evaluated"])

    try:
        result = algo.run(callback=checkpoint)
    finally:
        bar.close()
    write_pareto_json(out / "pareto.json", result, space)
    write_evaluated_csv(out / "evaluated.csv", algo, result)
    write_history_jsonl(out / "history.jsonl", algo.history, elapsed)
    plotted = plot_pareto(out / "pareto.png", algo, result)
    picks = {ind.genome for ind in result.picks}
    print(f"{result.evaluated} architectures evaluated; Pareto front of {len(result.front)}, "
          f"{len(result.picks)} picks:")
    print(f"{'top-1':>7} {'MAdds':>9} {'params':>8}  arch")
    for ind in result.front:
        if ind.genome in picks:
            v = ind.values
            print(f"{v['acc']:>7.4f} {v['madds'] / 1e6:>8.2f}M {v['params'] / 1e6:>7.3f}M  "
                  f"{','.join(map(str, ind.genome))}")
    print(f"wrote {out / 'pareto.json'}, evaluated.csv, history.jsonl"
          + (", pareto.png" if plotted else " (no matplotlib: no pareto.png)"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
