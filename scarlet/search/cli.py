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
import contextlib
import json
import math
import re
import sys
import time
from pathlib import Path

import torch

from scarlet import distributed
from scarlet.config import describe, flag
from scarlet.errors import ArgumentParser, ScarletError, cli_main, reason
from scarlet.rundir import RunLock, output_dir, require_files
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
DEFAULTS["dist_timeout"] = distributed.DEFAULT_TIMEOUT_S
# What a resumed search may change; everything else must match the saved run. (The supernet may have moved; its
# space is checked.)
RESUMABLE = {"supernet", "generations", "k", "budget", "max_draws", "device", "out", "evaluator", "eval_chunk",
             "threads", "dist_timeout"}
SEARCH_KEYS = ("population", "generations", "seed", "k", "budget", "max_draws", "mutation_ratio", "p_random",
               "p_roulette", "p_policy", "p_single", "p_multi", "multi_max", "policy_lr")


_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "g": 1e9}


def amount(text) -> float:
    """``500M``, ``12.5k``, ``5e8`` or a plain number."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        return float(text)
    if not isinstance(text, str):
        raise ValueError(f"not an amount: a {type(text).__name__}")
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
    distributed.add_arguments(p)  # --dist-timeout (under torchrun, the evaluations are split across ranks)
    return p


def weights_list(value) -> str:
    """Crowding weights as ``"0.4,0.4,0.2"`` (or a list of numbers in a config file): finite, >= 0, some > 0."""
    if isinstance(value, (list, tuple)):
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise ValueError(value)
        numbers = [float(v) for v in value]
    elif isinstance(value, str):
        numbers = [float(t) for t in re.split(r"[\s,;]+", value.strip().strip("[]()")) if t]
    else:
        raise ValueError(value)
    if not numbers or not all(math.isfinite(w) and w >= 0 for w in numbers) or not any(numbers):
        raise ValueError(value)
    return ",".join(map(str, numbers))


weights_list.__name__ = "list of weights (e.g. 0.4,0.4,0.2; finite, >= 0)"


def objectives_spec(value) -> str:
    """``NAME:min|max,...``; the sense is required: a bare ``acc`` would have to guess whether to minimise it."""
    if not isinstance(value, str):
        raise ValueError(value)
    for item in value.split(","):
        if item.strip() and item.partition(":")[2].strip() not in ("min", "max"):
            raise ValueError(f"say whether to minimise or maximise {describe(item.strip())}, e.g. acc:max or "
                             f"madds:min")
    return value


objectives_spec.__name__ = "list of objectives (NAME:min or NAME:max, comma separated)"


def _floats(text: str) -> list[float]:
    return [float(t) for t in re.split(r"[\s,;]+", text.strip().strip("[]()")) if t]


def _out(args) -> Path:
    return output_dir(DEFAULTS["out"] if args.out is None else args.out, create=False)


def _settings(args) -> tuple[dict, dict | None]:
    """Resolved settings of a new search, or of the saved one when resuming, checked by the search schema."""
    from scarlet.config import check_saved, resolve, schema

    options = schema("search")
    out = _out(args)
    state_path = out / STATE_NAME
    if args.resume:
        if args.config:
            raise ScarletError("--config cannot be combined with --resume: the search continues with its saved "
                               "settings")
        if not state_path.exists():
            raise ScarletError(f"--resume: no search state at {state_path}")
        saved = _read_state(state_path)
        settings = saved["settings"]
        if isinstance(settings, dict):  # searches written before the schema also saved the flags below
            settings = {k: v for k, v in settings.items() if k not in ("resume", "no_progress", "config")}
        cfg = check_saved(settings, options, DEFAULTS, f"search state {state_path}: settings")
        for key, value in vars(args).items():
            if value is None or key not in DEFAULTS:
                continue
            value = options[key].check(value, flag(key))
            if key in RESUMABLE:
                cfg[key] = str(Path(value).resolve()) if key == "supernet" else value
            elif cfg.get(key) != value:
                raise ScarletError(f"{flag(key)} {describe(value)} conflicts with the search in {out} "
                                   f"({key} = {describe(cfg.get(key))}); drop the flag or start a new --out")
        cfg["out"] = str(out)
        return cfg, saved
    if args.config and not Path(args.config).exists() and (SHIPPED_CONFIGS / f"{args.config}.yaml").is_file():
        args.config = str(SHIPPED_CONFIGS / f"{args.config}.yaml")  # --config paper
    cfg = resolve(args, DEFAULTS, options)
    out = output_dir(cfg["out"], create=False)  # an out: key in the config file is honoured
    cfg["out"] = str(out)
    if cfg["supernet"] is None:
        raise ScarletError("--supernet RUN_DIR is required")
    cfg["supernet"] = str(Path(cfg["supernet"]).resolve())
    return cfg, None


def _read_state(path: Path) -> dict:
    try:
        state = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise ScarletError(f"search state {path} is unreadable ({reason(e)})") from None
    if not isinstance(state, dict) or state.get("format") != CLI_STATE_FORMAT or "search" not in state \
            or "settings" not in state or not isinstance(state.get("space"), str):
        raise ScarletError(f"{path} is not a search state written by python -m scarlet.search")
    elapsed = state.get("elapsed", [])
    if not isinstance(elapsed, list) or not all(isinstance(t, (int, float)) and not isinstance(t, bool)
                                                and math.isfinite(t) for t in elapsed):
        raise ScarletError(f"search state {path}: elapsed must be a list of finite numbers")
    return state


def _search_config(cfg: dict, objectives) -> SearchConfig:
    values = {k: cfg[k] for k in SEARCH_KEYS}
    values["pick_by"] = "madds" if any(o.name == "madds" for o in objectives) else None  # picks along MAdds
    try:
        return SearchConfig(**values)
    except (TypeError, ValueError) as e:
        raise ScarletError(f"bad search setting: {e}") from None


RUN_KEYS = ("dataset", "recalib_batches", "batch_size")  # what the search takes from the training run


def _run_config(supernet_path: Path) -> dict:
    """What the search uses of the training run's configuration (config.json beside the checkpoint), checked by
    the training schema; {} when there is no such file."""
    from scarlet.config import schema

    path = (supernet_path if supernet_path.is_dir() else supernet_path.parent) / "config.json"
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError) as e:
        raise ScarletError(f"{path} is unreadable ({reason(e)}); pass --dataset and move it away") from None
    if not isinstance(data, dict):
        raise ScarletError(f"{path} is not a training run configuration (not a mapping)")
    options = schema("train")
    return {k: options[k].check(data[k], f"{path}: {k}") for k in RUN_KEYS if k in data}


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


def _objectives(cfg: dict):
    from scarlet.search.problem import parse_objectives

    weights = _floats(cfg["weights"]) if cfg["weights"] is not None else None
    try:
        return parse_objectives(cfg["objectives"], weights)
    except ValueError as e:
        raise ScarletError(f"--objectives/--weights: {e}") from None


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    with contextlib.ExitStack() as held:  # the output directory's lock, released however main ends
        return _main(args, held)


def _main(args, held: contextlib.ExitStack) -> int:
    if args.resume and (_out(args) / STATE_NAME).is_file():
        held.enter_context(RunLock(_out(args)))  # before reading the state: a search still writing it must wait
    cfg, saved = _settings(args)
    locked = saved is not None or Path(cfg["out"]).is_dir()
    if saved is None and locked:  # refuse a second writer before loading anything
        held.enter_context(RunLock(Path(cfg["out"])))
    if saved is None and (Path(cfg["out"]) / STATE_NAME).exists():
        raise ScarletError(f"{cfg['out']} already holds a search; pass --resume to continue it or choose another "
                           f"--out")
    objectives = _objectives(cfg)
    search_config = _search_config(cfg, objectives)
    dist = distributed.setup(cfg["device"], cfg["dist_timeout"])
    device = dist.device
    if cfg["threads"]:
        torch.set_num_threads(cfg["threads"])

    import scarlet
    from scarlet.search import STRATEGIES
    from scarlet.search.supernet_problem import SupernetEvaluator, cost_model_for, supernet_problem

    supernet_path = Path(cfg["supernet"])
    run_cfg = _run_config(supernet_path)
    model = scarlet.load_supernet(supernet_path, map_location=device)
    if cfg["space"] is not None and model.space.name != cfg["space"]:
        raise ScarletError(f"{supernet_path} is a {model.space.name} supernet, not {cfg['space']}")
    if saved is not None and saved["space"] != model.space.name:
        raise ScarletError(f"{supernet_path} is now a {model.space.name} supernet; the search in {cfg['out']} ran "
                           f"on {saved['space']}")
    fingerprint = _fingerprint(model)
    if saved is not None and saved.get("supernet_fingerprint", fingerprint) != fingerprint:
        raise ScarletError(f"{supernet_path} is not the supernet the search in {cfg['out']} evaluated (its weights "
                           f"differ); resume with that supernet or start a new --out")
    calib, val, data_spec = _batches(cfg, model, run_cfg, device)
    evaluator = SupernetEvaluator(model, calib, val, cfg["evaluator"], cfg["eval_chunk"])
    if dist.parallel:  # every rank runs the same search; each batch of evaluations is split across the ranks
        evaluator = distributed.ShardedEvaluator(evaluator, dist)
    problem = supernet_problem(model, evaluator, objectives, cost_model_for(model, cfg["cost_model"]),
                               madds_max=cfg["madds_max"], acc_min=cfg["acc_min"])
    algo = STRATEGIES[cfg["strategy"]](problem, search_config)
    elapsed: list[float] = []
    out = Path(cfg["out"])
    if saved is not None:
        _load_search_state(algo, saved["search"], out / STATE_NAME)
        elapsed = list(saved.get("elapsed", []))
    elif not locked:
        output_dir(str(out))
        held.enter_context(RunLock(out))
        if (out / STATE_NAME).exists():  # another search started here between our check and our lock
            raise ScarletError(f"{out} already holds a search; pass --resume to continue it or choose another --out")
    if not dist.is_main:  # the other ranks only evaluate their share; rank 0 writes and prints
        algo.run()
        return 0
    require_files(out, OUTPUT_FILES)
    return _search(algo, cfg, out, elapsed, model.space.name, fingerprint, data_spec, progress=not args.no_progress)


OUTPUT_FILES = (STATE_NAME, "history.jsonl", "pareto.json", "evaluated.csv", "pareto.png")


def _fingerprint(model) -> str:
    """A hash of the supernet's weights: a resumed search must evaluate the supernet it started on."""
    import hashlib

    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _load_search_state(algo, state, path: Path) -> None:
    """Restore a saved search; a state that does not fit this problem (tampered, another space) is one line."""
    try:
        algo.load_state_dict(state)
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, RuntimeError, OverflowError) as e:
        raise ScarletError(f"search state {path} is damaged or belongs to another search "
                           f"({type(e).__name__}: {reason(e)})") from None
    choices = algo.problem.num_choices
    for genome in algo.archive.records:
        if len(genome) != len(choices) or not all(0 <= g < c for g, c in zip(genome, choices)):
            raise ScarletError(f"search state {path} holds architectures that are not in this search space")


def _search(algo, cfg: dict, out: Path, elapsed: list[float], space: str, fingerprint: str, data_spec: str,
            progress: bool) -> int:
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
    resumed = algo.generation if elapsed else None

    saved_at: list[int] = []  # generations whose state this process wrote

    def checkpoint(algorithm, record):
        elapsed.append(time.time() - started)
        state = {"format": CLI_STATE_FORMAT, "settings": cfg, "space": space, "supernet_fingerprint": fingerprint,
                 "elapsed": elapsed, "search": algorithm.state_dict()}
        atomic_write_text(out / STATE_NAME, json.dumps(state) + "\n")
        saved_at.append(algorithm.generation)
        write_history_jsonl(out / "history.jsonl", algorithm.history, elapsed)
        bar.update(1)
        bar.set_postfix(front=record["front_size"], best_acc=f"{record['best'].get('acc', float('nan')):.4f}",
                        evaluated=record["evaluated"])

    try:
        result = algo.run(callback=checkpoint)
        write_pareto_json(out / "pareto.json", result, space)
        write_evaluated_csv(out / "evaluated.csv", algo, result)
        write_history_jsonl(out / "history.jsonl", algo.history, elapsed)
        plotted = plot_pareto(out / "pareto.png", algo, result)
    except OSError as e:
        if saved_at or resumed:
            saved = (f"the search state in {out} (generation {saved_at[-1] if saved_at else resumed}) is intact and "
                     f"--resume continues it")
        else:
            saved = "no search state has been written yet"
        raise ScarletError(f"cannot write {e.filename or out} ({e.strerror}); {saved}") from None
    finally:
        bar.close()
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
