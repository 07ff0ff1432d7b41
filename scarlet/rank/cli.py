"""``python -m scarlet.rank``: does a supernet rank architectures like training them from scratch does?

- ``study --supernet LABEL=DIR [...] --out DIR``: ground truth (N architectures stratified by MAdds plus the
  published ones, trained from scratch with one recipe and several seeds, cached), each supernet's
  BN-recalibrated estimates, Kendall tau / Spearman rho / top-k overlap with bootstrap 95% intervals, the
  seed-to-seed ceiling, a scatter plot per supernet and ``PREFIX.json``.
- ``cosine --supernet [LABEL=]DIR --out DIR``: SCARLET's per-layer cosine similarity of the choices' outputs,
  as a grid of heatmaps and a JSON.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import torch

from scarlet.errors import ArgumentParser, ScarletError, cli_main
from scarlet.rank.estimates import EVALUATORS, load_run
from scarlet.rank.ground_truth import Recipe
from scarlet.space import SPACES

_LABEL = re.compile(r"^[A-Za-z0-9_.-]+$")


def parse_supernet(text: str, default_label: str | None = None) -> tuple[str, str]:
    """``LABEL=DIR`` (or ``DIR`` when a default label is allowed) -> (label, dir)."""
    label, sep, path = text.partition("=")
    if not sep:
        if default_label is None:
            raise ScarletError(f"--supernet {text!r}: expected LABEL=DIR, e.g. fair=runs/a")
        label, path = Path(text).name or default_label, text
    if not _LABEL.match(label) or not path:
        raise ScarletError(f"--supernet {text!r}: the label may hold letters, digits, '.', '_' and '-' only, "
                           f"and the directory must be given")
    return label, path


def load_runs(specs, default_label=None):
    pairs = [parse_supernet(s, default_label) for s in specs]
    labels = [label for label, _ in pairs]
    duplicates = {x for x in labels if labels.count(x) > 1}
    if duplicates:
        raise ScarletError(f"--supernet labels must be unique; repeated: {', '.join(sorted(duplicates))}")
    return [load_run(label, path) for label, path in pairs]


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m scarlet.rank", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    d = Recipe()
    s = sub.add_parser("study", help="ground truth vs supernet estimates",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = s.add_argument
    a("--supernet", action="append", default=[], metavar="LABEL=DIR", help="a trained supernet run; repeatable")
    a("--out", required=True, help="directory for PREFIX.json and the PNGs")
    a("--prefix", default="ranking", help="name prefix of the output files")
    a("--cache", default="runs/ground_truth", help="cache directory of from-scratch results (shared by studies)")
    a("--n", type=int, default=24, help="architectures drawn stratified by MAdds (plus the published ones)")
    a("--seeds", type=int, default=2, help="seeds per architecture (0..S-1); the first two give the ceiling")
    a("--sample-seed", type=int, default=0, help="seed of the architecture draw and of the bootstrap")
    a("--epochs", type=int, default=d.epochs, help="recipe: epochs from scratch")
    a("--batch-size", type=int, default=d.batch_size, help="recipe: batch size")
    a("--lr", type=float, default=d.lr, help="recipe: peak learning rate (SGD, Nesterov momentum 0.9, cosine)")
    a("--weight-decay", type=float, default=d.weight_decay, help="recipe: weight decay")
    a("--warmup-steps", type=int, default=d.warmup_steps, help="recipe: linear warm-up steps")
    a("--dataset", default=None, help="data set [the supernets' run configuration, else digits]")
    a("--space", choices=list(SPACES), help="without --supernet: search space [scarlet-s2]")
    a("--width", type=float, help="without --supernet: width multiplier [0.25]")
    a("--resolution", type=int, help="without --supernet: resolution [32]")
    a("--top-k", type=int, default=None, help="k of the top-k overlap [20%% of the architectures]")
    a("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    a("--recalib-batches", type=int, default=8, help="training batches for BN recalibration of each subnet")
    a("--evaluator", choices=EVALUATORS, default="auto", help="supernet evaluation: batched, or one by one")
    a("--no-published", action="store_true", help="leave out the papers' architectures (sampled ones only)")
    a("--cosine", action="store_true", help="also run the cosine-similarity analysis of every supernet")
    a("--no-progress", action="store_true", help="no progress bar")
    c = sub.add_parser("cosine", help="per-layer cosine similarity of the choices' outputs")
    a = c.add_argument
    a("--supernet", action="append", default=[], required=True, metavar="[LABEL=]DIR", help="repeatable")
    a("--out", required=True)
    a("--prefix", default="ranking")
    a("--dataset", default=None, help="[the supernet's run configuration, else digits]")
    a("--path", default=None, help="architecture whose path produces each layer's input [random, --seed]")
    a("--batch", type=int, default=64, help="images")
    a("--seed", type=int, default=0)
    return p


def _dataset(args, runs) -> str:
    if args.dataset:
        return args.dataset
    found = {run.run_config.get("dataset", "digits") for run in runs}
    if len(found) > 1:
        raise ScarletError(f"the supernets were trained on different data sets ({', '.join(sorted(found))}); "
                           f"pass --dataset")
    return found.pop() if found else "digits"


def _check_positive(**values):
    for name, v in values.items():
        if v is not None and not v > 0:
            raise ScarletError(f"--{name.replace('_', '-')} must be positive, got {v}")


def _study(args) -> int:
    from scarlet.rank.study import cosine_analysis, network_config, print_table, run_study

    _check_positive(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, bootstrap=args.bootstrap,
                    top_k=args.top_k, width=args.width, resolution=args.resolution)
    if args.weight_decay < 0 or args.warmup_steps < 0 or args.recalib_batches < 0:
        raise ScarletError("--weight-decay, --warmup-steps and --recalib-batches must be >= 0")
    if args.n < 3:
        raise ScarletError(f"--n must be at least 3 architectures for a ranking, got {args.n}")
    if args.seeds < 2:
        raise ScarletError(f"--seeds must be at least 2 (the seed-to-seed ceiling), got {args.seeds}")
    runs = load_runs(args.supernet)
    dataset = _dataset(args, runs)
    if runs:
        config = network_config(runs, {"space": args.space, "width": args.width, "resolution": args.resolution})
    else:
        from scarlet.data import load_dataset
        from scarlet.supernet import SupernetConfig

        data = load_dataset(dataset, args.resolution or 32)
        config = SupernetConfig(space=args.space or "scarlet-s2", width=args.width or 0.25,
                                resolution=args.resolution or 32, in_channels=data.in_channels,
                                num_classes=data.num_classes)
    recipe = Recipe(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, weight_decay=args.weight_decay,
                    warmup_steps=args.warmup_steps)
    out = Path(args.out)
    result = run_study(runs, config=config, dataset=dataset, n=args.n, seeds=list(range(args.seeds)), recipe=recipe,
                       cache_dir=Path(args.cache), out=out, prefix=args.prefix, sample_seed=args.sample_seed,
                       top_k=args.top_k, bootstrap=args.bootstrap, recalib_batches=args.recalib_batches,
                       evaluator=args.evaluator, published=not args.no_published, progress=not args.no_progress)
    print_table(result)
    if args.cosine:
        for run in runs:
            cosine_analysis(run, dataset, out, args.prefix)
    print(f"wrote {out / (args.prefix + '.json')} ({result['trained_now']} networks trained now, "
          f"{result['seconds']} s)")
    return 0


def _cosine(args) -> int:
    from scarlet.rank.study import cosine_analysis

    _check_positive(batch=args.batch)
    runs = load_runs(args.supernet, default_label="supernet")
    dataset = _dataset(args, runs)
    for run in runs:
        result = cosine_analysis(run, dataset, Path(args.out), args.prefix, args.path, args.batch, args.seed)
        means = result["per_layer_mean"]
        line = f"{run.label}: mean cosine similarity per layer, between MBConv choices " + \
            " ".join(f"{v:.2f}" for v in means["mbconv_pairs"])
        if means["skip_vs_mbconv"] is not None:
            line += "; skip vs MBConv " + " ".join(f"{v:.2f}" for v in means["skip_vs_mbconv"])
        print(f"{line}; wrote {Path(args.out) / result['png']}")
    return 0


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)  # the from-scratch trainings and the evaluations are measured on one thread
    return _study(args) if args.command == "study" else _cosine(args)


if __name__ == "__main__":
    sys.exit(main())
