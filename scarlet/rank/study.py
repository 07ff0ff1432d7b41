"""The ranking study: ground truth, supernet estimates, statistics, figures and one JSON with everything."""

from __future__ import annotations

import json
import math
import platform
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import torch

from scarlet.arch import Arch, random_arch
from scarlet.checkpoint import atomic_write_text
from scarlet.cost import CostModel
from scarlet.data import batches, load_dataset
from scarlet.errors import ScarletError
from scarlet.rank.cosine import layer_similarities, summarise_layers
from scarlet.rank.estimates import SupernetRun, estimate
from scarlet.rank.ground_truth import GroundTruth, Recipe, published_archs, stratified_archs
from scarlet.rank.plots import ranking_scatter, similarity_heatmaps
from scarlet.rank.stats import bootstrap_ci, kendall_tau, spearman_rho, summarise
from scarlet.supernet import SupernetConfig

# What every supernet of one study must share with the ground truth (the architectures' networks and data).
SHARED = ("space", "width", "resolution", "stem_stride", "in_channels", "num_classes")


def network_config(runs: Sequence[SupernetRun], flags: dict) -> SupernetConfig:
    """The deployed networks' configuration: the supernets', which must agree with each other and with ``flags``
    (only the fields in :data:`SHARED`: new supernet options never change the ground truth)."""
    first = runs[0]
    for run in runs:
        for key in SHARED:
            mine, theirs = getattr(run.config, key), getattr(first.config, key)
            if mine != theirs:
                raise ScarletError(f"supernet {run.label!r} has {key} {mine}, supernet {first.label!r} has "
                                   f"{theirs}: a study compares supernets of one space and network size")
            if flags.get(key) is not None and flags[key] != mine:
                raise ScarletError(f"--{key.replace('_', '-')} {flags[key]} conflicts with supernet "
                                   f"{run.label!r} ({key} = {mine})")
    return SupernetConfig(**{k: getattr(first.config, k) for k in SHARED})


def study_archs(config: SupernetConfig, n: int, seed: int, published: bool = True) -> list[tuple[str, Arch]]:
    """``n`` architectures stratified by MAdds, then the published ones that fit the space (duplicates dropped)."""
    entries = [(f"sampled-{i}", a) for i, a in enumerate(stratified_archs(config, n, seed))]
    seen = {a.genes for _, a in entries}
    for name, arch in published_archs(config.space) if published else []:
        if arch.genes not in seen:
            entries.append((name, arch))
            seen.add(arch.genes)
    return entries


def _environment() -> dict:
    return {"device": "cpu", "torch": torch.__version__, "threads": torch.get_num_threads(),
            "python": platform.python_version(), "machine": platform.machine()}


def run_study(runs: Sequence[SupernetRun], *, config: SupernetConfig, dataset: str, n: int, seeds: Sequence[int],
              recipe: Recipe, cache_dir: Path, out: Path, prefix: str = "ranking", sample_seed: int = 0,
              top_k: int | None = None, bootstrap: int = 1000, recalib_batches: int = 8, calib_batch_size: int = 64,
              evaluator: str = "auto", published: bool = True, progress: bool = True) -> dict:
    if n < 3:
        raise ScarletError(f"--n must be at least 3 architectures for a ranking, got {n}")
    if len(seeds) < 2:
        raise ScarletError(f"at least 2 seeds are needed (the seed-to-seed ceiling), got {len(seeds)}")
    started = time.time()
    out.mkdir(parents=True, exist_ok=True)
    data = load_dataset(dataset, config.resolution)
    if data.in_channels != config.in_channels or data.num_classes != config.num_classes:
        raise ScarletError(f"data set {dataset} has {data.in_channels} channels and {data.num_classes} classes, "
                           f"the networks expect {config.in_channels} and {config.num_classes}")
    entries = study_archs(config, n, sample_seed, published)
    names, archs = [e[0] for e in entries], [e[1] for e in entries]
    gt = GroundTruth(cache_dir, recipe, data, dataset, config)
    table = gt.table(archs, seeds, progress)
    accs = [[r["val_acc"] for r in row] for row in table]
    truth = [sum(a) / len(a) for a in accs]
    truth_loss = [sum(r["val_loss"] for r in row) / len(row) for row in table]
    k = top_k or max(1, round(0.2 * len(archs)))
    seed0, seed1 = [a[0] for a in accs], [a[1] for a in accs]
    ceiling = {"kendall_tau": kendall_tau(seed0, seed1), "kendall_tau_ci": list(bootstrap_ci(kendall_tau, seed0, seed1,
                                                                                             bootstrap, sample_seed)),
               "spearman_rho": spearman_rho(seed0, seed1),
               "spearman_rho_ci": list(bootstrap_ci(spearman_rho, seed0, seed1, bootstrap, sample_seed)),
               "seeds": [seeds[0], seeds[1]]}
    cost = CostModel(config)
    rows = [{"name": name, "arch": a.encoding(), "madds": cost.madds(a), "params": cost.params(a),
             "acc_per_seed": acc, "acc_mean": t, "loss_mean": tl,
             "seconds": sum(r["seconds"] for r in row)}
            for name, a, acc, t, tl, row in zip(names, archs, accs, truth, truth_loss, table)]
    madds = [r["madds"] for r in rows]

    def with_madds(values):
        """How far a ranking follows network size: Kendall tau against MAdds, with its interval."""
        return {"kendall_tau": kendall_tau(madds, values),
                "kendall_tau_ci": list(bootstrap_ci(kendall_tau, madds, values, bootstrap, sample_seed))}

    calib = list(batches(data.train, calib_batch_size, limit=recalib_batches))
    val = list(batches(data.val, 512))
    supernets = []
    for run in runs:
        est = estimate(run, archs, calib, val, evaluator)
        acc_est = [e["acc"] for e in est]
        stats = summarise(truth, acc_est, k, bootstrap, sample_seed)
        # The loss as a finer signal: higher is better for the ranking, hence the minus sign.
        stats_loss = summarise(truth, [-e["loss"] for e in est], k, bootstrap, sample_seed)
        png = out / f"{prefix}_scatter_{run.label}.png"
        ranking_scatter(png, run.label, truth, acc_est, names, stats)
        supernets.append({"label": run.label, "run_dir": str(run.path), "train_config": run.run_config,
                          "supernet_config": run.config.to_dict(), "top1": stats, "neg_loss": stats_loss,
                          "estimate_vs_madds": with_madds(acc_est), "estimates": est, "scatter_png": png.name})
    result = {"config": {"network": {k: getattr(config, k) for k in SHARED}, "dataset": dataset, "n_sampled": n,
                         "n_archs": len(archs), "seeds": list(seeds), "recipe": asdict(recipe), "top_k": k,
                         "bootstrap": bootstrap, "sample_seed": sample_seed, "recalib_batches": recalib_batches,
                         "calib_batch_size": calib_batch_size, "evaluator": evaluator,
                         "published": published},
              "environment": _environment(), "ground_truth": rows, "ceiling": ceiling,
              "truth_vs_madds": with_madds(truth), "supernets": supernets,
              "trained_now": gt.trained, "seconds": round(time.time() - started, 1)}
    atomic_write_text(out / f"{prefix}.json", json.dumps(json_safe(result), indent=1) + "\n")
    return result


def json_safe(value):
    """``value`` with every nan (an undefined statistic, e.g. all estimates tied) as None: strict JSON has no NaN."""
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def print_table(result: dict) -> None:
    c = result["ceiling"]
    print(f"{len(result['ground_truth'])} architectures, {len(result['config']['seeds'])} seeds; "
          f"seed-to-seed Kendall tau (ceiling) {c['kendall_tau']:.3f} "
          f"[{c['kendall_tau_ci'][0]:.3f}, {c['kendall_tau_ci'][1]:.3f}]; ground truth vs MAdds: Kendall tau "
          f"{result['truth_vs_madds']['kendall_tau']:.3f}")
    k = result["config"]["top_k"]
    print(f"{'supernet':<14} {'Kendall tau [95% CI]':>24} {'Spearman rho [95% CI]':>24} "
          f"{f'top-{k} overlap':>22} {'tau (loss)':>11} {'tau vs MAdds':>13}")
    for s in result["supernets"]:
        t = s["top1"]

        def cell(name):
            lo, hi = t[name + "_ci"]
            return f"{t[name]:.3f} [{lo:.2f}, {hi:.2f}]"

        print(f"{s['label']:<14} {cell('kendall_tau'):>24} {cell('spearman_rho'):>24} {cell('top_k_overlap'):>22} "
              f"{s['neg_loss']['kendall_tau']:>11.3f} {s['estimate_vs_madds']['kendall_tau']:>13.3f}")


def cosine_analysis(run: SupernetRun, dataset: str, out: Path, prefix: str, path: Arch | None = None,
                    batch: int = 64, seed: int = 0) -> dict:
    """SCARLET's per-layer similarity matrices of one supernet: a heatmap grid PNG and a JSON."""
    config = run.config
    data = load_dataset(dataset, config.resolution)
    images, _ = next(batches(data.val, batch))
    if path is None:
        path = random_arch(config.space, torch.Generator().manual_seed(seed))
    path = run.model.arch(path)
    matrices = layer_similarities(run.model, images, path.genes)
    tokens = [c.token for c in run.model.space.choices]
    out.mkdir(parents=True, exist_ok=True)
    png = out / f"{prefix}_cosine_{run.label}.png"
    similarity_heatmaps(png, f"{run.label} ({config.skip}): channel-wise cosine similarity of the choices' outputs, "
                             f"input from path {path.encoding()}", [m.numpy() for m in matrices], tokens)
    result = {"label": run.label, "run_dir": str(run.path), "skip": config.skip, "path": path.encoding(),
              "images": int(images.shape[0]), "dataset": dataset, "tokens": tokens,
              "per_layer_mean": summarise_layers(matrices, run.model.space.identity_index),
              "matrices": [m.tolist() for m in matrices], "png": png.name, "environment": _environment()}
    atomic_write_text(out / f"{prefix}_cosine_{run.label}.json", json.dumps(result, indent=1) + "\n")
    return result
