"""A latency table measured on this machine: ``python -m scarlet.tunas.latency --space S --device cpu --out DIR``.

What is timed is the network as deployed: each layer's standalone module with BN folded into its convs
(``decisions.standalone.fold_bn``), in eval mode, at batch 1, at the chosen resolution, under ``torch.no_grad``;
a time is the **median** of ``repeats`` calls after a few warm-up calls (medians, because other processes share
the machine). The table holds every concrete form of every layer (``cost.layer_forms``); the fit
``T = sum(layer entries) + bias`` takes the median offset over ``fit_archs`` random whole networks, and the
table is then validated on ``validate_archs`` *other* random networks (never used in the fit): mean absolute
percentage error, and Spearman and Kendall rank correlations between predicted and measured latency.

Writes ``DIR/latency_table.json`` (readable by ``--cost table --cost-table``) and ``DIR/latency_validation.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
from torch import nn

from scarlet.checkpoint import atomic_write_text
from scarlet.config import Choice, Float, Int, resolve_device
from scarlet.decisions.arch import random_decision_arch
from scarlet.decisions.concrete import ConcreteLayer
from scarlet.decisions.space import SPACES, Space, get_space
from scarlet.decisions.standalone import DecisionLayer, DecisionStandaloneNet, fold_bn
from scarlet.errors import cli_main
from scarlet.rundir import RunLock, output_dir
from scarlet.tunas.cost import TableCost, form_of, layer_forms, table_header

TUNAS_SPACES = tuple(name for name in SPACES if get_space(name).family == "tunas")
WARMUP_CALLS = 3


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@torch.no_grad()
def call_ms(fn, x: torch.Tensor, repeats: int, statistic: str = "median") -> float:
    """Wall time of ``fn(x)`` in milliseconds, the median (or minimum) over ``repeats`` calls after warm-up calls.

    Other processes only ever add time, so on a loaded machine the minimum is the steadier estimate of the
    undisturbed time; the median is the default.
    """
    for _ in range(WARMUP_CALLS):
        fn(x)
    _sync(x.device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(x)
        _sync(x.device)
        times.append(time.perf_counter() - start)
    return 1000.0 * (min(times) if statistic == "min" else statistics.median(times))


class _Holder(nn.Module):
    """What ``fold_bn`` folds: a module with ``layers``."""

    def __init__(self, layer: DecisionLayer):
        super().__init__()
        self.layers = nn.ModuleList([layer])


def layer_ms(c: ConcreteLayer, repeats: int, device: torch.device, statistic: str = "median") -> float:
    module = fold_bn(_Holder(DecisionLayer(c))).layers[0].to(device).eval()
    size = 1 if c.kind == "conv_bias" else c.in_size
    return call_ms(module, torch.randn(1, c.c_in, size, size, device=device), repeats, statistic)


def network_ms(space: Space, arch, num_classes: int, resolution: int, repeats: int, device: torch.device,
               statistic: str = "median") -> float:
    """Measured latency of the deployed (BN-folded) network of ``arch`` at batch 1."""
    net = fold_bn(DecisionStandaloneNet(space, arch, num_classes, resolution)).to(device).eval()
    return call_ms(net, torch.randn(1, space.in_channels, resolution, resolution, device=device), repeats,
                   statistic)


def fit_bias(sums: list[float], measured: list[float]) -> float:
    """The bias of ``T = sum + bias``: the median of (measured - sum) over the fit networks.

    The scale stays 1 (the layers' own times): with timings disturbed by other processes, a least-squares slope
    from a few dozen networks follows the outliers (we saw slopes of 12), a median offset does not.
    """
    return statistics.median(m - s for s, m in zip(sums, measured))


def measure_table(space: Space, resolution: int, num_classes: int, repeats: int, fit_archs: int,
                  device: torch.device, generator: torch.Generator, statistic: str = "median", log=print) -> dict:
    """Time every layer form and fit the per-layer sum to ``fit_archs`` random whole networks."""
    forms = layer_forms(space, resolution)
    n = sum(len(v) for v in forms.values())
    log(f"timing {n} layer forms of {space.name} at {resolution}px, batch 1, {statistic} of {repeats}")
    layers = {name: [{"form": form_of(c), "cost": round(layer_ms(c, repeats, device, statistic), 6)} for c in cs]
              for name, cs in forms.items()}
    table = {**table_header(space, resolution, num_classes), "unit": "ms", "device": describe_device(device),
             "torch": torch.__version__, "threads": torch.get_num_threads(), "repeats": repeats, "statistic": statistic,
             "fit": {"scale": 1.0, "bias": 0.0}, "layers": layers}
    cost = TableCost(table, space, resolution, num_classes, "measured table")
    archs = [random_decision_arch(space, generator) for _ in range(fit_archs)]
    sums = [cost.layer_sum(a) for a in archs]
    measured = [network_ms(space, a, num_classes, resolution, repeats, device, statistic) for a in archs]
    table["fit"] = {"scale": 1.0, "bias": fit_bias(sums, measured), "archs": fit_archs}
    return table


def validate(cost: TableCost, space: Space, resolution: int, num_classes: int, n: int, repeats: int,
             device: torch.device, generator: torch.Generator, statistic: str = "median") -> dict:
    """Predicted against measured latency on ``n`` random networks: MAPE, Spearman and Kendall correlations."""
    from scipy.stats import kendalltau, spearmanr

    archs = [random_decision_arch(space, generator) for _ in range(n)]
    predicted = [cost(a) for a in archs]
    measured = [network_ms(space, a, num_classes, resolution, repeats, device, statistic) for a in archs]
    ape = [abs(p - m) / m for p, m in zip(predicted, measured)]
    return {"networks": n, "mape_percent": 100.0 * sum(ape) / n, "max_ape_percent": 100.0 * max(ape),
            "spearman": float(spearmanr(predicted, measured).statistic),
            "kendall": float(kendalltau(predicted, measured).statistic),
            "measured_ms": {"min": min(measured), "median": statistics.median(measured), "max": max(measured)},
            "pairs": [[round(p, 5), round(m, 5)] for p, m in zip(predicted, measured)]}


def describe_device(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({platform.processor() or platform.machine()}, {torch.get_num_threads()} thread(s))"


OPTIONS = {"space": Choice(*TUNAS_SPACES), "width": Float(0, 8, lo_open=True), "divisor": Int(1, 64),
           "in_channels": Int(1, 64), "resolution": Int(8, 1024), "num_classes": Int(2, 100_000),
           "repeats": Int(1, 10_000), "fit_archs": Int(2, 10_000), "validate_archs": Int(2, 10_000),
           "threads": Int(1, 1024), "seed": Int(0, 2**63 - 1), "statistic": Choice("median", "min")}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m scarlet.tunas.latency", description=__doc__.split("\n\n")[0])
    a = p.add_argument
    a("--space", required=True, help=f"one of {', '.join(TUNAS_SPACES)}")
    a("--device", default="cpu", help="cpu, cuda or cuda:N [cpu]")
    a("--out", required=True, help="directory for latency_table.json and latency_validation.json")
    a("--width", type=float, default=0.25, help="width multiplier of the space [0.25]")
    a("--divisor", type=int, default=8, help="filter rounding multiple [8]")
    a("--in-channels", type=int, default=1, help="input channels (digits: 1) [1]")
    a("--resolution", type=int, default=32, help="input resolution [32]")
    a("--num-classes", type=int, default=10, help="classifier outputs [10]")
    a("--repeats", type=int, default=20, help="timed calls per measurement (the median is kept) [20]")
    a("--fit-archs", type=int, default=20, help="random networks for the fit [20]")
    a("--validate-archs", type=int, default=50, help="other random networks for validation [50]")
    a("--statistic", default="median", help="median or min of the repeated calls [median]")
    a("--threads", type=int, default=1, help="torch threads [1]")
    a("--seed", type=int, default=0, help="[0]")
    return p


@cli_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    for key, option in OPTIONS.items():
        setattr(args, key, option.check(getattr(args, key), "--" + key.replace("_", "-")))
    device = resolve_device(args.device)
    out = output_dir(args.out)
    with RunLock(out, "latency"):
        torch.set_num_threads(args.threads)
        from dataclasses import replace

        space = replace(get_space(args.space, args.width, args.divisor), in_channels=args.in_channels)
        g = torch.Generator().manual_seed(args.seed)
        started = time.time()
        table = measure_table(space, args.resolution, args.num_classes, args.repeats, args.fit_archs, device, g,
                              args.statistic)
        atomic_write_text(out / "latency_table.json", json.dumps(table) + "\n")
        cost = TableCost(table, space, args.resolution, args.num_classes, "measured table")
        report = validate(cost, space, args.resolution, args.num_classes, args.validate_archs, args.repeats,
                          device, g, args.statistic)
        report = {"space": args.space, "width": args.width, "resolution": args.resolution, "batch": 1,
                  "device": table["device"], "torch": torch.__version__, "threads": args.threads,
                  "repeats": args.repeats, "statistic": args.statistic, "fit": table["fit"],
                  "seconds": round(time.time() - started, 1),
                  "note": f"{args.statistic}s of repeated batch-1 calls on a machine shared with other processes",
                  **report}
        atomic_write_text(out / "latency_validation.json", json.dumps(report, indent=1) + "\n")
    print(f"{args.space}: MAPE {report['mape_percent']:.1f}% on {report['networks']} held-out networks, "
          f"Spearman {report['spearman']:.3f}, Kendall {report['kendall']:.3f}; table in {out}/latency_table.json")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
