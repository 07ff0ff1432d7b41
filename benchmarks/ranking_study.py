"""The ranking study of issue 9: train the papers' ablation supernets at equal compute, then measure how well each
ranks architectures against training them from scratch (``python -m scarlet.rank study``).

    python benchmarks/ranking_study.py [--quick] [--rows fair-els,spos-els] [--epochs 5] [--n 24] [--seeds 2]

Every row of ``ABLATIONS`` below is one supernet: ``python -m scarlet.train`` with the common flags plus the row's
flags. Equal compute means equal gradient evaluations (paths trained x steps): a fair or EF step trains m paths
(m = choices per layer), a uniform (SPOS) step one, so SPOS rows run m times as many epochs (FairNAS Table 6).
Supernets whose run directory already holds a ``summary.json`` are reused, so the study can be extended row by
row; the from-scratch ground truth is cached under ``RUNS/ground_truth``.

Writes ``benchmarks/results/ranking_TAG.json`` (everything: ground truth, estimates, statistics with intervals,
the ceiling, and per row its flags, epochs, steps, gradient evaluations, training time and final loss),
``ranking_TAG_scatter_LABEL.png`` per supernet and ``ranking_TAG_cosine_LABEL.{png,json}`` (SCARLET's
cosine-similarity heatmaps). TAG is ``cpu`` (or ``cuda``), ``smoke`` with ``--quick`` (tiny sizes: proves the
pipeline, measures nothing).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# (label, extra flags of `python -m scarlet.train`). The default job's init is same-function (every MBConv choice of a
# layer starts as one function, on top of the stable init); the init rows compare it with the papers' independent
# init and with the stable init alone, everything else equal.
ABLATIONS: list[tuple[str, list[str]]] = [
    ("fair-els", []),                          # the default: strict fairness, ELS
    ("spos-els", ["--sampler", "uniform"]),    # SPOS, m times the steps
    ("ef-els", ["--sampler", "ef"]),           # expectation fairness: one path trained m times per step
    ("fair-skip", ["--skip", "skip"]),         # SCARLET section 6: without ELS
    ("fair-els-relu", ["--skip", "els-relu"]),  # SCARLET section 6: non-equivariant stabiliser
    ("fair-els-stable", ["--init", "stable"]),             # zero-init residual BN + ELS as identity only
    ("fair-els-independent", ["--init", "independent"]),   # the papers' (and the authors' code's) init
]

QUICK_TRAIN = ["--width", "0.125", "--resolution", "16", "--batch-size", "32", "--eval-archs", "0",
               "--recalib-batches", "2"]
QUICK_RANK = ["--n", "4", "--seeds", "2", "--epochs", "1", "--batch-size", "128", "--warmup-steps", "2",
              "--bootstrap", "200", "--no-published"]


def _flag(flags: list[str], name: str, default: str) -> str:
    return flags[flags.index(name) + 1] if name in flags else default


def choices_per_layer(flags: list[str]) -> int:
    from scarlet.space import get_space

    return get_space(_flag(flags, "--space", "scarlet-s2")).num_choices


def paths_per_step(flags: list[str]) -> int:
    """Single-path models trained (gradient evaluations) per step: m for fair and EF, 1 for uniform (SPOS)."""
    return 1 if _flag(flags, "--sampler", "fair") == "uniform" else choices_per_layer(flags)


def train_row(label: str, flags: list[str], common: list[str], base_epochs: int, quick_steps: int | None,
              runs: Path) -> dict:
    """Train (or reuse) one ablation supernet at equal gradient evaluations; what it cost."""
    from scarlet.train import main as train_main

    out = runs / label
    scale = choices_per_layer(flags) // paths_per_step(flags)  # SPOS: m times the steps of a fair run
    argv = [*common, *flags, "--epochs", str(base_epochs * scale), "--out", str(out), "--no-progress"]
    if quick_steps is not None:
        argv += ["--max-steps", str(quick_steps * scale)]
    started = time.time()
    # A reused run must have been trained with this row's arguments, not an earlier version of the table.
    recorded = out / "ranking_study_argv.json"
    if recorded.exists() and json.loads(recorded.read_text()) != argv:
        raise SystemExit(f"{out} was trained with other flags ({recorded}); delete it or rename the row")
    if not (out / "summary.json").exists():
        out.mkdir(parents=True, exist_ok=True)
        recorded.write_text(json.dumps(argv) + "\n")
        if (out / "checkpoint.pt").exists():  # interrupted: resume (the flags come from its checkpoint)
            train_main(["--out", str(out), "--no-progress", "--resume"])
        else:
            train_main(argv)
    summary = json.loads((out / "summary.json").read_text())
    return {"label": label, "flags": flags, "argv": argv, "epochs": base_epochs * scale, "steps": summary["steps"],
            "paths_per_step": paths_per_step(flags), "gradient_evaluations": summary["steps"] * paths_per_step(flags),
            "final_train_loss": summary["final_train_loss"], "train_seconds_this_call": round(time.time() - started, 1)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="tiny smoke run: width 0.125, 16px, a few steps")
    p.add_argument("--rows", default=None, help="comma-separated labels of ABLATIONS to run [all]")
    p.add_argument("--epochs", type=int, default=5, help="epochs of a fair run (others: equal gradient evaluations)")
    p.add_argument("--n", type=int, default=24, help="architectures stratified by MAdds")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--runs", default="runs/ranking_study", help="supernet run directories and the ground-truth cache")
    p.add_argument("--results", default=str(Path(__file__).resolve().parent / "results"))
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--train-args", default="", help="extra flags for every supernet, e.g. '--lr 0.1'")
    p.add_argument("--rank-args", default="", help="extra flags for scarlet.rank study, e.g. '--epochs 6'")
    p.add_argument("--name", default="", help="suffix of the result files, e.g. 'long' for ranking_cpu_long.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    rows = ABLATIONS
    if args.rows:
        wanted = args.rows.split(",")
        unknown = set(wanted) - {label for label, _ in ABLATIONS}
        if unknown:
            p.error(f"unknown rows {sorted(unknown)}; ABLATIONS has {[label for label, _ in ABLATIONS]}")
        rows = [r for r in ABLATIONS if r[0] in wanted]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    tag = "smoke" if args.quick else device
    runs = Path(args.runs) / tag
    common = (QUICK_TRAIN if args.quick else []) + args.train_args.split()
    trained = [train_row(label, flags, common, 1 if args.quick else args.epochs, 2 if args.quick else None, runs)
               for label, flags in rows]

    from scarlet.rank.cli import main as rank_main

    results = Path(args.results)
    prefix = f"ranking_{tag}" + (f"_{args.name}" if args.name else "")
    rank_argv = ["study", *[a for label, _ in rows for a in ("--supernet", f"{label}={runs / label}")],
                 "--out", str(results), "--prefix", prefix, "--cache", str(runs / "ground_truth"), "--cosine",
                 "--no-progress"]
    rank_argv += (QUICK_RANK if args.quick else ["--n", str(args.n), "--seeds", str(args.seeds)])
    rank_argv += args.rank_args.split()
    rank_main(rank_argv)
    path = results / f"{prefix}.json"
    result = json.loads(path.read_text())
    result["ablations"] = trained
    result["driver"] = {"command": " ".join(["python", "benchmarks/ranking_study.py", *(argv or sys.argv[1:])]),
                        "rank_argv": rank_argv, "device": device, "torch": torch.__version__,
                        "threads": torch.get_num_threads()}
    from scarlet.checkpoint import atomic_write_text

    atomic_write_text(path, json.dumps(result, indent=1) + "\n")
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
