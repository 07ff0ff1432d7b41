"""Search throughput: architectures evaluated per second (one by one, and batched when scarlet.executor has it),
cost-table lookups per second, and the cost of the NSGA-II machinery itself (a free evaluator).

    python benchmarks/search.py [--space scarlet-s2] [--width 0.25] [--resolution 32] [--archs 16] [--device cpu]

Prints one JSON object. The supernet is freshly initialised (evaluation speed does not depend on the weights) and
evaluated on the digits validation split after BN recalibration on training batches, as the search CLI does.
"""

from __future__ import annotations

import argparse
import json
import platform
import time

import numpy as np
import torch


def timed(fn, repeat: int = 1) -> float:
    """Best wall time of ``repeat`` runs (after one warm-up run)."""
    fn()
    best = float("inf")
    for _ in range(repeat):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        best = min(best, time.perf_counter() - t)
    return best


def bench_evaluation(args, device) -> dict:
    from scarlet.data import batches, load_dataset
    from scarlet.search.supernet_problem import SupernetEvaluator
    from scarlet.supernet import Supernet, SupernetConfig

    data = load_dataset("digits", args.resolution)
    torch.manual_seed(0)
    model = Supernet(SupernetConfig(space=args.space, width=args.width, resolution=args.resolution,
                                    in_channels=data.in_channels, num_classes=data.num_classes)).to(device).eval()
    calib = [(x.to(device), y.to(device)) for x, y in batches(data.train, 64, limit=args.recalib_batches)]
    val = [(x.to(device), y.to(device)) for x, y in batches(data.val, 256)]
    rng = np.random.default_rng(0)
    space = model.space
    archs = [tuple(int(g) for g in rng.integers(0, space.num_choices, space.num_layers)) for _ in range(args.archs)]
    out = {"archs": args.archs, "calib_images": sum(len(y) for _, y in calib),
           "val_images": sum(len(y) for _, y in val)}
    one = SupernetEvaluator(model, calib, val, "one-by-one")
    warm = archs[:2]
    one(warm)
    t = time.perf_counter()
    acc_one = one(archs)
    out["one_by_one_archs_per_s"] = args.archs / (time.perf_counter() - t)
    batched = SupernetEvaluator(model, calib, val, "batched")
    batched(warm)
    t = time.perf_counter()
    acc_batched = batched(archs)
    out["batched_archs_per_s"] = args.archs / (time.perf_counter() - t)
    out["batched_equals_one_by_one"] = acc_batched == acc_one
    return out


def bench_cost(args) -> dict:
    from scarlet.cost import CostModel
    from scarlet.space import get_space
    from scarlet.supernet import SupernetConfig

    space = get_space(args.space)
    rng = np.random.default_rng(1)
    archs = [tuple(int(g) for g in rng.integers(0, space.num_choices, space.num_layers)) for _ in range(20000)]
    t = time.perf_counter()
    model = CostModel(SupernetConfig(space=args.space))
    build = time.perf_counter() - t
    seconds = timed(lambda: [model.cost(a) for a in archs], repeat=3)
    return {"cost_lookups_per_s": len(archs) / seconds, "cost_table_build_s": build}


def bench_nsga2(args) -> dict:
    """Generations per second of NSGA-II itself (population 70, SCARLET's settings) with a free evaluator."""
    from scarlet.search import NSGA2, Constraint, Objective, Problem, SearchConfig
    from scarlet.space import get_space

    space = get_space(args.space)
    w = np.random.default_rng(2).random((space.num_layers, space.num_choices))

    def evaluate(genomes):
        return [float(w[np.arange(space.num_layers), list(g)].mean()) for g in genomes]

    def cost(g):
        return {"madds": float(sum(g)), "params": float(sum(x * x for x in g))}

    problem = Problem([space.num_choices] * space.num_layers,
                      [Objective("acc", "max", 0.4), Objective("madds", "min", 0.4), Objective("params", "max", 0.2)],
                      evaluate, cost, [Constraint("madds", maximum=0.6 * space.num_layers * (space.num_choices - 1))])
    generations = 20
    algo = NSGA2(problem, SearchConfig(population=70, generations=generations))
    t = time.perf_counter()
    algo.run()
    seconds = time.perf_counter() - t
    state = time.perf_counter()
    text = json.dumps(algo.state_dict())
    state = time.perf_counter() - state
    return {"nsga2_generations_per_s": generations / seconds, "nsga2_population": 70,
            "search_state_bytes": len(text), "search_state_serialise_s": state}


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--space", default="scarlet-s2")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--resolution", type=int, default=32)
    p.add_argument("--archs", type=int, default=16, help="architectures per timed evaluation call")
    p.add_argument("--recalib-batches", type=int, default=4)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads [torch's default]")
    p.add_argument("--skip-eval", action="store_true", help="only the cost model and the algorithm")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    result = {"benchmark": "search", "space": args.space, "width": args.width, "resolution": args.resolution,
              "device": str(device) if device.type != "cuda" else torch.cuda.get_device_name(device),
              "torch": torch.__version__, "threads": torch.get_num_threads(), "machine": platform.machine()}
    if not args.skip_eval:
        result.update(bench_evaluation(args, device))
    result.update(bench_cost(args))
    result.update(bench_nsga2(args))
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in result.items()}))


if __name__ == "__main__":
    main()
