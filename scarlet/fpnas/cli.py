"""``python -m scarlet.fpnas``: FP-NAS search (adaptive sampling, coarse-to-fine distributions, FLOPs hinge).

The run directory holds ``checkpoint.pt`` (atomic), ``config.json`` (the resolved configuration), ``metrics.jsonl``
(per step: entropy, K, samples so far, expected MAdds, the most probable architecture and its MAdds),
``final_arch.json`` (the most probable architecture with its MAdds, parameters and accuracy with the supernet's
weights; ``scarlet.fpnas.trainer.final_network`` builds it) and ``summary.json``. ``--resume`` continues exactly.

Defaults are small (width 0.25, 32 px digits) so that a run takes minutes on a CPU; the paper's settings are
lambda 1/4, beta 0.3, Adam 0.016 for alpha, theta 80 of 315 epochs with 45 warmup epochs.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
from pathlib import Path

from scarlet.checkpoint import CHECKPOINT_NAME, atomic_write_text, save_checkpoint
from scarlet.config import (COUNT, SEED, Choice, Float, Int, Str, apply_resumed_flags, check_saved, describe, flag,
                            resolve, resolve_device)
from scarlet.decisions.supernet import INIT_MODES
from scarlet.errors import ArgumentParser, ScarletError, cli_main
from scarlet.fpnas.gradient import LIKELIHOODS, WEIGHTINGS
from scarlet.optim import DECAY_ON
from scarlet.rundir import open_new, open_resumed, restart_metrics

FPNAS_SPACES = ("fbnetv2-f", "fbnetv2-f-fine", "fbnetv2-f++")
SCHEDULES = ("mixed", "factorized", "joint")

DEFAULTS = {
    "space": "fbnetv2-f", "width": 0.25, "divisor": 2, "resolution": 32, "dataset": "digits",
    "depthwise": "separate", "supernet_init": "independent",
    "epochs": 6.0, "max_steps": None, "batch_size": 32, "lr": 0.01, "momentum": 0.9,
    "weight_decay": 4e-5, "weight_decay_on": "weights", "warmup_epochs": 1.0, "distribution": "mixed",
    "theta": 3.0, "lam": 0.25, "fixed_k": None, "alpha_lr": 0.016, "beta": 0.3, "flops_target": None,
    "likelihood": "sum", "weighting": "importance", "seed": 0, "out": "runs/fpnas", "device": "cpu",
    "checkpoint_every": None, "log_every": 1, "recalib_batches": 4,
}
HELP = {
    "space": "decision space", "width": "width multiplier of every filter value",
    "divisor": "channel rounding multiple", "resolution": "input resolution (px)",
    "dataset": "digits, cifar10:PATH or imagefolder:PATH", "depthwise": "kernels 3/5: separate weights or centre-crop",
    "supernet_init": "independent or one-function (every choice of a layer starts as one function; it does not "
    "help fbnetv2-f at width 0.25, whose kernel-0 skips at stride-2 layers cannot start as the block)",
    "epochs": "epochs over the weights' half of the training split", "max_steps": "stop after this many steps",
    "batch_size": "images per batch (both halves)", "lr": "SGD learning rate of the weights (cosine to 0)",
    "momentum": "SGD momentum", "weight_decay": "SGD weight decay", "weight_decay_on": "parameters decayed",
    "warmup_epochs": "epochs with alpha frozen (paper 45 of 315)",
    "distribution": "mixed (factorized, joint from epoch theta), factorized or joint",
    "theta": "epoch of the switch to the joint distribution (paper 80)",
    "lam": "adaptive sampling K = max(1, floor(lam * entropy in nats)) (paper 1/4)",
    "fixed_k": "sample this fixed K instead (the PARSEC baseline; paper 14)", "alpha_lr": "Adam lr of alpha",
    "beta": "weight of the FLOPs hinge", "flops_target": "MAdds target (default: 25th percentile of uniform archs)",
    "likelihood": "log-likelihood of a batch: sum over images (literal) or mean",
    "weighting": "weights' gradient over the K paths: importance (Eq. 3) or average",
    "seed": "random seed", "out": "run directory", "device": "cpu, cuda, cuda:N or auto",
    "checkpoint_every": "steps between checkpoints (default: each epoch)", "log_every": "steps between metric lines",
    "recalib_batches": "BN recalibration batches for the final evaluation",
}
# What a resumed run may change; everything else comes from the run's saved configuration.
RESUMABLE = {"epochs", "max_steps", "checkpoint_every", "log_every", "device", "out", "recalib_batches"}
RUN_FILES = (CHECKPOINT_NAME, "config.json", "metrics.jsonl", "summary.json", "final_arch.json")


def fpnas_schema() -> dict:
    """What every FP-NAS option may be, whether it comes from a flag, a config file or a checkpoint."""
    epochs = Float(0, 100_000, lo_open=True)
    return {
        "space": Choice(*FPNAS_SPACES), "width": Float(0, 8, lo_open=True), "divisor": Int(1, 64),
        "resolution": Int(8, 4096), "dataset": Str(), "depthwise": Choice("separate", "centre-crop"),
        "supernet_init": Choice(*INIT_MODES),
        "epochs": epochs, "max_steps": Int(1, COUNT, none=True), "batch_size": Int(1, 1 << 16),
        "lr": Float(0, 100, lo_open=True), "momentum": Float(0, 1, hi_open=True), "weight_decay": Float(0, 1),
        "weight_decay_on": Choice(*DECAY_ON), "warmup_epochs": Float(0, 100_000), "distribution": Choice(*SCHEDULES),
        "theta": Float(0, 100_000), "lam": Float(0, 1000, lo_open=True), "fixed_k": Int(1, 10_000, none=True),
        "alpha_lr": Float(0, 100, lo_open=True), "beta": Float(0, 100), "flops_target": Float(0, 1e15, lo_open=True,
                                                                                              none=True),
        "likelihood": Choice(*LIKELIHOODS), "weighting": Choice(*WEIGHTINGS), "seed": SEED, "out": Str(),
        "device": Str(), "checkpoint_every": Int(1, COUNT, none=True), "log_every": Int(1, COUNT),
        "recalib_batches": Int(0, 10_000),
    }


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m scarlet.train --strategy fpnas", description=__doc__.split("\n\n")[0])
    p.add_argument("--config", help="YAML or JSON file of option defaults (keys as the flags, - or _)")
    for key, default in DEFAULTS.items():
        # Numbers are only parsed here; the schema checks every value, from a flag or a config file alike.
        p.add_argument(flag(key), type=str if isinstance(default, str) else number, help=f"{HELP[key]} [{default}]")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its checkpoint")
    p.add_argument("--no-progress", action="store_true", help="no per-step line on stdout")
    return p


def number(text: str):
    """A flag's number: an int when it reads as one, else a float (the schema refuses the wrong kind)."""
    try:
        return int(text)
    except ValueError:
        try:
            return float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None


def _resumed_config(args, out: Path) -> tuple[dict, dict]:
    """The saved configuration, checked like flags, with the flags a resumed run may change applied."""
    state = load_search_checkpoint(out / CHECKPOINT_NAME)
    source = f"checkpoint {out / CHECKPOINT_NAME}: run configuration"
    options = fpnas_schema()
    cfg = check_saved(state.get("run_config"), options, DEFAULTS, source)
    if cfg["flops_target"] is None:
        raise ScarletError(f"{source}: flops_target is null")
    return apply_resumed_flags(cfg, args, DEFAULTS, options, RESUMABLE, out), state


def load_search_checkpoint(path: Path) -> dict:
    """An FP-NAS checkpoint, read with ``weights_only=True``; a bad one is a one-line ScarletError."""
    import torch

    from scarlet.checkpoint import FORMAT, VERSION

    if not path.is_file():
        raise ScarletError(f"--resume: no checkpoint at {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, bad magic, disallowed pickle global, ...
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ScarletError(f"checkpoint {path} is corrupt or not a Scarlet checkpoint ({first})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("version") != VERSION:
        raise ScarletError(f"{path} is not a Scarlet checkpoint of version {VERSION}")
    if state.get("kind") != "fpnas":
        raise ScarletError(f"checkpoint {path} is not an FP-NAS search (kind {describe(state.get('kind'))})")
    return state


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    with contextlib.ExitStack() as held:  # the run directory's lock, released however main ends
        return _main(args, held)


def _main(args, held: contextlib.ExitStack) -> int:
    from scarlet.fpnas.trainer import Search

    if args.resume:
        out = open_resumed(DEFAULTS["out"] if args.out is None else args.out, bool(args.config), held, RUN_FILES)
        cfg, state = _resumed_config(args, out)
    else:
        cfg = resolve(args, DEFAULTS, fpnas_schema())
        out = open_new(cfg["out"], held, RUN_FILES)
        state = None
    if cfg["theta"] < cfg["warmup_epochs"] and cfg["distribution"] == "mixed":
        print(f"note: theta {cfg['theta']} < warmup {cfg['warmup_epochs']}: the joint distribution starts uniform")
    search = Search(cfg, resolve_device(cfg["device"]))
    if state is not None:
        search.load(state, f"checkpoint {out / CHECKPOINT_NAME}")
    metrics_path = out / "metrics.jsonl"
    atomic_write_text(out / "config.json", json.dumps(cfg, indent=2) + "\n")
    restart_metrics(metrics_path, search.step if state is not None else None)
    run_search(search, out, metrics_path, progress=not args.no_progress)
    return 0


def run_search(search, out: Path, metrics_path: Path, progress: bool = True) -> dict:
    """Train to the planned step count, logging and checkpointing; write and print the final architecture."""
    from scarlet.fpnas.trainer import step_record

    cfg, total = search.cfg, search.total_steps
    every = cfg["checkpoint_every"] or search.steps_per_epoch
    print(f"FP-NAS on {cfg['space']} (width {cfg['width']}, {cfg['resolution']}px {cfg['dataset']}): steps "
          f"{search.step} -> {total}, {search.steps_per_epoch} per epoch, MAdds target {cfg['flops_target']:,.0f}; "
          f"run dir {out}")
    started = time.time()
    with open(metrics_path, "ab", buffering=0) as metrics:  # one write per line; a torn tail is dropped on resume
        while search.step < total:
            record = search.train_step()
            if search.step % cfg["log_every"] == 0 or search.step == total:
                line = step_record(search, record, started)
                metrics.write((json.dumps(line) + "\n").encode())
                if progress:
                    print(f"step {line['step']}: H {line['entropy']:.2f} nats, K {line['k']}, loss "
                          f"{line['loss']:.3f}, E[MAdds] {line['expected_madds']:,.0f}, mode {line['mode_madds']:,}")
            if search.step % every == 0 or search.step == total:
                save_checkpoint(out / CHECKPOINT_NAME, search.state())
    report = search.final_report()
    atomic_write_text(out / "final_arch.json", json.dumps(report, indent=2) + "\n")
    summary = {"steps": search.step, "samples": search.samples, "distribution": search.dist.kind,
               "entropy": search.dist.entropy().item(), "wall_s_this_session": round(time.time() - started, 3),
               "final": report}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(f"most probable architecture: {json.dumps(report['arch'])}")
    print(f"  {report['madds']:,} MAdds (target {cfg['flops_target']:,.0f}), {report['params']:,} params, top-1 "
          f"{report['val_acc_inherited']:.3f} with the supernet's weights; {search.samples} samples in "
          f"{search.step} steps; wrote {out / 'final_arch.json'}")
    return summary


if __name__ == "__main__":
    sys.exit(main())
