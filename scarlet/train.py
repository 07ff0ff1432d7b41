"""``python -m scarlet.train``: train a supernet with strict fairness, or a fixed architecture from scratch.

Supernet mode (default): FairNAS Algorithm 1 on a SCARLET or FairNAS space (skip choices carried by ELS by
default), SGD with momentum and a cosine schedule, then BN-recalibrated evaluation of a few random subnets and of
the architectures published in the space. Standalone mode (``--arch``): the papers' standalone recipe
(RMSProp, lr x0.97 every 2.4 epochs, dropout 0.2 before the classifier).

The run directory holds ``checkpoint.pt`` (atomic), ``config.json`` (the resolved run configuration),
``metrics.jsonl`` and ``summary.json``. ``--resume`` continues exactly: the learning rate is a pure function of
the step, and the sampler, data order and RNG states are in the checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from scarlet import distributed
from scarlet.arch import NAMED_ARCHS, parse_arch
from scarlet.checkpoint import CHECKPOINT_NAME, atomic_write_text, load_checkpoint, save_checkpoint
from scarlet.config import apply_resumed_flags, check_saved, describe, resolve, schema
from scarlet.cost import CostModel
from scarlet.data import BatchStream, batches, load_dataset
from scarlet.errors import ArgumentParser, ScarletError, cli_main, reason
from scarlet.executor.layout import CHOICES as LAYOUTS, memory_format, to_layout
from scarlet.fair_step import SHARED_GRAD_MODES
from scarlet.optim import DECAY_ON, RMSpropTF, decay_groups
from scarlet.rundir import RunLock, open_resumed, output_dir, refuse_existing_run, require_files, restart_metrics
from scarlet.samplers import SAMPLERS, make_sampler
from scarlet.space import SKIP_KINDS, SPACES, get_space
from scarlet.supernet import Supernet, SupernetConfig
from scarlet.supernet_init import INIT_SCHEMES

DEFAULTS = {
    "space": "scarlet-s2", "skip": "els", "sampler": "fair", "executor": "auto", "memory_format": "auto", "arch": None,
    "epochs": 5, "max_steps": None, "batch_size": 64, "lr": None, "momentum": 0.9, "weight_decay": None,
    "weight_decay_on": "weights",
    "width": 0.25, "resolution": None, "stem_stride": 2, "dropout": None,
    "dataset": "digits", "out": "runs/supernet", "seed": 0, "device": "auto", "amp": "none",
    "checkpoint_every": None, "log_every": 10, "eval_archs": 8, "recalib_batches": 4,
    # The supernet recipe of the small default job (issue 9, measured in benchmarks/results/default_job_cpu.json);
    # --config paper restores the papers' independent init, summed gradients, no warm-up and lr 0.045 at 256.
    "init": "same-function", "shared_grad": "mean", "warmup_steps": 10,
}
# What a run saved before these options existed trained with (so that it resumes as it was).
LEGACY = {"init": "independent", "shared_grad": "sum", "warmup_steps": 0, "weight_decay_on": "all",
          "memory_format": "auto"}
SHIPPED_CONFIGS = Path(__file__).resolve().parent / "configs"
# What a resumed run may change; everything else comes from the run's saved configuration.
RESUMABLE = {"epochs", "max_steps", "checkpoint_every", "log_every", "device", "eval_archs", "recalib_batches",
             "out", "executor", "memory_format"}
DEFAULTS.update(distributed.DEFAULTS)  # --dist-timeout, --sync-bn
RESUMABLE.add("dist_timeout")
DISTRIBUTED = ("world_size", "global_batch_size")  # recorded in a run's configuration, set again by every launch


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m scarlet.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a("--strategy", choices=("supernet", *STRATEGIES), help="supernet (FairNAS/SCARLET; --sampler picks strict "
      "fairness, SPOS or EF), tunas or fpnas (their own flags: python -m scarlet.tunas --help, python -m "
      "scarlet.fpnas --help) [supernet]")
    a("--config", help="YAML or JSON file of option defaults (keys as the flags, - or _), or the shipped "
                       "'paper' (FairNAS/SCARLET supernet recipe; scarlet/configs/paper.yaml)")
    a("--space", choices=list(SPACES), help="search space [scarlet-s2]")
    a("--skip", choices=SKIP_KINDS, help="skip choice kind in SCARLET spaces [els]")
    a("--sampler", choices=list(SAMPLERS), help="fair (FairNAS strict fairness), uniform (SPOS), ef [fair]")
    a("--executor", choices=("auto", "sequential", "batched"),
      help="how the paths of a step run; auto = batched with the fair sampler (on a CPU up to 32 pixels), "
      "else sequential [auto]")
    a("--memory-format", choices=LAYOUTS,
      help="layout of the model and batches: auto = channels_last on a CPU (faster), contiguous (NCHW) on CUDA")
    a("--arch", help="train this fixed architecture from scratch instead of a supernet")
    a("--epochs", type=int, help="epochs; also sets the length of the learning-rate schedule [5]")
    a("--max-steps", type=int, help="stop after this many steps in total (the schedule keeps --epochs)")
    a("--batch-size", type=int, help="images per step [64]")
    a("--lr", type=float, help="peak learning rate [0.2*batch/256 supernet (paper config: 0.045*batch/256), "
                                  "0.256*batch/4096 standalone]")
    a("--warmup-steps", type=int, help="linear learning-rate warm-up over this many steps, then the schedule "
                                       "[10 supernet, 0 standalone and paper config]")
    a("--init", choices=INIT_SCHEMES, help="supernet initialisation: independent (the papers'), stable (zero-init "
                                           "residual BN + ELS as identity), same-function (stable + every MBConv "
                                           "choice of a layer starts as one function) [same-function]")
    a("--shared-grad", choices=SHARED_GRAD_MODES, help="gradient of stem, first block and head over the m paths of "
                                                       "a step: sum (FairNAS Algorithm 1) or mean [mean]")
    a("--momentum", type=float, help="optimizer momentum [0.9]")
    a("--weight-decay", type=float, help="[4e-5 supernet, 1e-5 standalone]")
    a("--weight-decay-on", choices=DECAY_ON, help="parameters decayed: all, weights (conv and linear weights, no "
                                                  "BatchNorm or biases), conv (conv kernels only) [weights]")
    a("--width", type=float, help="width multiplier [0.25]")
    a("--resolution", type=int, help="input resolution [32 for digits and cifar10, 224 for imagefolder]")
    a("--stem-stride", type=int, choices=(1, 2), help="[2]")
    a("--dropout", type=float, help="dropout before the classifier [0 supernet, 0.2 standalone]")
    a("--dataset", help="digits, cifar10:PATH or imagefolder:PATH [digits]")
    a("--out", help="run directory [runs/supernet]")
    a("--resume", action="store_true", default=None, help="continue the run in --out exactly")
    a("--seed", type=int, help="[0]")
    a("--device", help="auto, cpu, cuda, cuda:N [auto]")
    a("--amp", choices=("none", "bf16"), help="autocast dtype [none]")
    a("--checkpoint-every", type=int, help="steps between checkpoints [every epoch and at the end]")
    a("--log-every", type=int, help="steps between metrics lines [10]")
    a("--eval-archs", type=int, help="random subnets evaluated at the end [8]")
    a("--recalib-batches", type=int, help="training batches for BN recalibration [4]")
    a("--no-progress", action="store_true", default=None, help="no progress bar")
    distributed.add_training_arguments(p)
    return p


def learning_rate(cfg: dict, step: int, steps_per_epoch: int) -> float:
    """A pure function of the step, so that resumed runs follow the same schedule.

    The first ``warmup_steps`` steps ramp linearly up to the peak (lr * (step + 1) / warmup: gradual warm-up,
    Goyal et al. 2017), then the schedule runs: cosine to 0 over the remaining planned steps (FairNAS) for a
    supernet, x0.97 every 2.4 epochs (SCARLET standalone) for a fixed architecture.
    """
    warm = cfg.get("warmup_steps") or 0
    if step < warm:
        return cfg["lr"] * (step + 1) / warm
    if cfg["arch"] is None:
        total = cfg["epochs"] * steps_per_epoch - warm
        t = min(step - warm, total)
        return cfg["lr"] * 0.5 * (1 + math.cos(math.pi * t / max(total, 1)))
    return cfg["lr"] * 0.97 ** math.floor(step / steps_per_epoch / 2.4)


class Run:
    """Everything a training run holds, and its checkpoint round trip."""

    def __init__(self, cfg: dict, device: torch.device):
        self.cfg, self.device = cfg, device
        self.data = load_dataset(cfg["dataset"], cfg["resolution"])
        torch.manual_seed(cfg["seed"])
        self.model_config = SupernetConfig(space=cfg["space"], skip=cfg["skip"], width=cfg["width"],
                                           resolution=cfg["resolution"], stem_stride=cfg["stem_stride"],
                                           in_channels=self.data.in_channels, num_classes=self.data.num_classes,
                                           dropout=cfg["dropout"],
                                           init=cfg["init"] if cfg["arch"] is None else "independent")
        if cfg["arch"] is None:
            self.kind, self.arch = "supernet", None
            self.model = Supernet(self.model_config)
            self.sampler = make_sampler(cfg["sampler"], self.model.space, cfg["seed"])
        else:
            from scarlet.standalone import StandaloneNet

            self.kind, self.arch = "standalone", parse_arch(cfg["arch"], cfg["space"])
            self.model = StandaloneNet(self.arch, self.model_config)
            self.sampler = None
        # Runs saved before --weight-decay-on existed decayed every parameter; they resume that way.
        groups = decay_groups(self.model, cfg["weight_decay"], cfg.get("weight_decay_on", "all"))
        if self.kind == "supernet":
            self.optimizer = torch.optim.SGD(groups, lr=cfg["lr"], momentum=cfg["momentum"])
        else:  # TensorFlow-style RMSProp as in MnasNet/SCARLET: decay 0.9, momentum 0.9, eps 1e-3
            self.optimizer = RMSpropTF(groups, lr=cfg["lr"], decay=0.9, momentum=cfg["momentum"], eps=1e-3)
        # Runs saved before the option existed resume in the layout "auto" picks (same values within fp tolerance).
        self.memory_format = memory_format(cfg.get("memory_format", "auto"), device)
        to_layout(self.model.to(device), self.memory_format)
        self.stream = BatchStream(self.data.train, cfg["batch_size"], cfg["seed"])
        self.step = 0
        space = get_space(self.model_config.space)
        self.choice_counts = torch.zeros(space.num_layers, space.num_choices, dtype=torch.int64)
        self.last_loss = float("nan")
        self.saved_step: int | None = None  # step of the newest checkpoint known good (None: none written yet)

    def last_good(self, out: Path) -> str:
        """Where a stopped run can be resumed from, for error messages."""
        if self.saved_step is None:
            return f"no checkpoint has been written in {out} yet"
        return f"the last good checkpoint is {out / CHECKPOINT_NAME} (step {self.saved_step}); --resume continues it"

    def finite(self) -> bool:
        """Whether every weight and buffer is finite (checked after an update, before it is checkpointed)."""
        tensors = [t for t in (*self.model.parameters(), *self.model.buffers()) if t.is_floating_point()]
        return bool(torch.stack([torch.isfinite(t).all() for t in tensors]).all())

    def state(self) -> dict:
        return {"kind": self.kind, "config": self.model_config.to_dict(), "run_config": self.cfg,
                "arch": self.arch.encoding() if self.arch else None,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "sampler": self.sampler.state_dict() if self.sampler else None,
                "stream": self.stream.state_dict(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
                "step": self.step, "choice_counts": self.choice_counts, "last_loss": self.last_loss}

    def load(self, state: dict) -> None:
        """Restore a checkpoint; anything missing, of the wrong type or shape is a one-line ScarletError."""
        path = state.get("path", "the checkpoint")
        step, counts, loss = state.get("step"), state.get("choice_counts"), state.get("last_loss")
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ScarletError(f"checkpoint {path}: step must be a non-negative integer, got {describe(step)}")
        if not (isinstance(counts, torch.Tensor) and counts.dtype == torch.int64
                and counts.shape == self.choice_counts.shape):
            raise ScarletError(f"checkpoint {path}: choice_counts is not a {tuple(self.choice_counts.shape)} "
                               f"int64 tensor")
        if not isinstance(loss, float):
            raise ScarletError(f"checkpoint {path}: last_loss must be a number, got {describe(loss)}")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.sampler is not None:
                self.sampler.load_state_dict(state["sampler"])
            self.stream.load_state_dict(state["stream"])
            torch.set_rng_state(state["torch_rng"])
            if self.device.type == "cuda" and state["cuda_rng"]:
                torch.cuda.set_rng_state_all(state["cuda_rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
            raise ScarletError(f"checkpoint {path} is damaged or belongs to another run "
                               f"({type(e).__name__}: {reason(e)})") from None
        self.step, self.choice_counts, self.last_loss = step, counts, loss
        self.saved_step = step


def _make_step(run: Run, executor: str, autocast_dtype, update: bool = True):
    """The function that trains one step: ``(images, labels, perms) -> per-path losses``; with ``update=False``
    it only accumulates the gradients (the data-parallel step averages them across ranks, then updates)."""
    model, optimizer = run.model, (run.optimizer if update else None)
    if run.kind == "standalone":
        def step(images, labels, perms):
            model.train()
            if optimizer is not None:
                optimizer.zero_grad(set_to_none=True)
            with torch.autocast(images.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                loss = F.cross_entropy(model(images), labels)
            loss.backward()
            if optimizer is not None:
                optimizer.step()
            return loss.detach().float().reshape(1)
        return step
    from scarlet.executor import make_step

    return make_step(executor, model, optimizer, autocast_dtype=autocast_dtype, shared_grad=run.cfg["shared_grad"])


def _choose_executor(cfg: dict, device: torch.device) -> str:
    from scarlet.executor import choose_executor

    return choose_executor(cfg["executor"], device, cfg["sampler"], width=cfg["width"], resolution=cfg["resolution"])


def _evaluate(run: Run, dist: distributed.Distributed = distributed.SINGLE) -> list[dict]:
    """BN-recalibrated accuracy of random subnets and of the architectures published in the space."""
    from scarlet.evaluate import evaluate_one_by_one

    model, space = run.model, run.model.space
    gen = torch.Generator().manual_seed(run.cfg["seed"] + 1)
    entries = [(f"random-{i}", tuple(torch.randint(space.num_choices, (space.num_layers,), generator=gen).tolist()))
               for i in range(run.cfg["eval_archs"])]
    # Only the architectures published in this space: fairnas-a/b/c also parse in scarlet-s2, as other networks.
    entries += [(name, parse_arch(name, space).genes) for name, (home, _) in NAMED_ARCHS.items() if home == space.name]
    dev = run.device
    calib = [(x.to(dev), y.to(dev)) for x, y in
             batches(run.data.train, run.cfg["batch_size"], limit=run.cfg["recalib_batches"])]
    val = [(x.to(dev), y.to(dev)) for x, y in batches(run.data.val, 256)]
    # Each rank evaluates its part of the list; every rank gets all the accuracies, in order.
    accs = dist.map(lambda part: evaluate_one_by_one(model, part, calib, val, run.cfg.get("memory_format", "auto")),
                    [g for _, g in entries])
    cost = CostModel(run.model_config)
    ref = CostModel(SupernetConfig(space=space.name))  # the paper's setting: 224x224, 1000 classes
    rows = []
    for (name, genes), acc in zip(entries, accs):
        madds, params = cost.cost(genes)
        rows.append({"name": name, "arch": ",".join(map(str, genes)), "acc": acc, "madds": madds, "params": params,
                     "madds_224": ref.madds(genes)})
    return rows


def _print_table(rows: list[dict]) -> None:
    print(f"{'subnet':<11} {'top-1':>6} {'MAdds':>9} {'params':>8} {'MAdds@224':>10}  arch")
    for r in rows:
        print(f"{r['name']:<11} {r['acc']:>6.3f} {r['madds'] / 1e6:>8.2f}M {r['params'] / 1e6:>7.3f}M "
              f"{r['madds_224'] / 1e6:>9.1f}M  {r['arch']}")


def _resolve_config(args) -> dict:
    if args.config and not Path(args.config).exists() and (SHIPPED_CONFIGS / f"{args.config}.yaml").is_file():
        args.config = str(SHIPPED_CONFIGS / f"{args.config}.yaml")  # --config paper
    cfg = resolve(args, DEFAULTS, schema("train"))
    if cfg["arch"] is not None and args.space is None and "space" not in _file_keys(args):
        # A named architecture brings its own space unless one is given.
        cfg["space"] = NAMED_ARCHS.get(cfg["arch"].strip().lower(), (cfg["space"],))[0]
    standalone = cfg["arch"] is not None
    if standalone:
        parse_arch(cfg["arch"], cfg["space"])  # refused before the data set loads
    if cfg["resolution"] is None:
        cfg["resolution"] = 224 if cfg["dataset"].startswith("imagefolder") else 32
    if cfg["lr"] is None:
        # Scaled linearly with the batch size (Goyal et al. 2017): the papers' 0.256 at 4096 standalone; for the
        # supernet 0.2 at 256 (0.05 at the default batch 64), measured on the default job with the mean of the
        # shared gradients (the paper config sets the papers' 0.045 at 256 with summed gradients).
        cfg["lr"] = 0.256 * cfg["batch_size"] / 4096 if standalone else 0.2 * cfg["batch_size"] / 256
    if cfg["weight_decay"] is None:
        cfg["weight_decay"] = 1e-5 if standalone else 4e-5
    if cfg["dropout"] is None:
        cfg["dropout"] = 0.2 if standalone else 0.0
    if standalone and args.warmup_steps is None and "warmup_steps" not in _file_keys(args):
        cfg["warmup_steps"] = 0
    return cfg


def _file_keys(args) -> set:
    from scarlet.config import read_config_file

    return set(read_config_file(args.config)) if args.config else set()


DERIVED = ("lr", "weight_decay", "resolution", "dropout")  # None in DEFAULTS, always set in a run's configuration


def _resumed_config(args, out: Path) -> tuple[dict, dict]:
    """The saved run configuration, checked like flags, with the flags a resumed run may change applied."""
    ckpt_path = out / CHECKPOINT_NAME
    if not ckpt_path.is_file():
        raise ScarletError(f"--resume: no checkpoint at {ckpt_path}")
    state = load_checkpoint(ckpt_path)
    source = f"checkpoint {ckpt_path}: run configuration"
    if "run_config" not in state:
        raise ScarletError(f"checkpoint {ckpt_path} has no run configuration to resume from")
    options = schema("train")
    saved = state["run_config"]
    if isinstance(saved, dict):  # runs written before the schema also saved these two flags
        saved = {**LEGACY, **{k: v for k, v in saved.items() if k not in ("no_progress", "resume", *DISTRIBUTED)}}
    cfg = check_saved(saved, options, DEFAULTS, source)
    for key in DERIVED:
        if cfg[key] is None:
            raise ScarletError(f"{source}: {key} is null")
    return apply_resumed_flags(cfg, args, DEFAULTS, options, RESUMABLE, out), state


RUN_FILES = (CHECKPOINT_NAME, "config.json", "metrics.jsonl", "summary.json")


# Strategies with trainers of their own, in the decision spaces; the FairNAS/SCARLET supernet strategies (strict
# fairness, SPOS, EF) are this module's --sampler values.
STRATEGIES = {"tunas": "scarlet.tunas.cli", "fpnas": "scarlet.fpnas.cli"}


def _strategy(argv: list[str]) -> tuple[str, list[str]]:
    """The value of ``--strategy NAME`` or ``--strategy=NAME`` (default ``supernet``) and the other arguments."""
    for i, arg in enumerate(argv):
        if arg == "--strategy" and i + 1 < len(argv):
            return argv[i + 1], argv[:i] + argv[i + 2:]
        if arg.startswith("--strategy="):
            return arg.split("=", 1)[1], argv[:i] + argv[i + 1:]
    return "supernet", argv


@cli_main
def main(argv=None):
    strategy, rest = _strategy(list(sys.argv[1:] if argv is None else argv))
    if strategy in STRATEGIES:
        import importlib

        if os.environ.get("WORLD_SIZE", "1").strip() not in ("", "1"):
            raise ScarletError(f"--strategy {strategy} does not run under torchrun yet (one process only); its "
                               f"distributed sampling is not implemented")

        return importlib.import_module(STRATEGIES[strategy]).main(rest)
    parser = build_parser()
    args = parser.parse_args(argv)
    with contextlib.ExitStack() as held:  # the run directory's lock, released however main ends
        return _main(args, held)


def _main(args, held: contextlib.ExitStack) -> int:
    if args.resume:
        out = open_resumed(DEFAULTS["out"] if args.out is None else args.out, bool(args.config), held, RUN_FILES)
        cfg, state = _resumed_config(args, out)
    else:
        cfg = _resolve_config(args)
        out = output_dir(cfg["out"], create=False)  # checked now, created once the data set has loaded
        locked = out.is_dir()
        if locked:  # refuse a second writer before doing anything
            held.enter_context(RunLock(out))
        require_files(out, RUN_FILES)
        refuse_existing_run(out)
        state = None
    # torchrun: join the process group; the device is per local rank. --batch-size is the global batch.
    dist = distributed.setup(cfg["device"], cfg.get("dist_timeout") or distributed.DEFAULT_TIMEOUT_S)
    cfg["world_size"], cfg["global_batch_size"] = dist.world_size, cfg["batch_size"]
    dist.shard(cfg["batch_size"])  # refuses a batch that does not split evenly
    device = dist.device
    run = Run(cfg, device)
    if state is not None:
        # A checkpoint from before SupernetConfig.init existed lacks that key (its weights are loaded anyway).
        saved_config = {**run.model_config.to_dict(), **state["config"]}
        if state["kind"] != run.kind or saved_config != run.model_config.to_dict():
            raise ScarletError(f"checkpoint {state['path']} does not match its run configuration")
        run.load(state)
    elif not locked:
        output_dir(str(out))
        held.enter_context(RunLock(out))
        refuse_existing_run(out)  # another run may have started here between our check and our lock
    metrics_path = out / "metrics.jsonl"
    try:
        if dist.is_main:  # only rank 0 writes
            atomic_write_text(out / "config.json", json.dumps(cfg, indent=2) + "\n")
            restart_metrics(metrics_path, run.step if state is not None else None)
    except OSError as e:
        raise ScarletError(f"cannot write to {out} ({e.strerror}); {run.last_good(out)}") from None
    train(run, out, metrics_path, progress=not args.no_progress and dist.is_main, dist=dist)
    return 0


def train(run: Run, out: Path, metrics_path: Path, progress: bool = True,
          dist: distributed.Distributed = distributed.SINGLE) -> None:
    cfg, dev = run.cfg, run.device
    spe = run.stream.steps_per_epoch
    total = cfg["epochs"] * spe
    if cfg["max_steps"] is not None:
        total = min(total, cfg["max_steps"])
    autocast = torch.bfloat16 if cfg["amp"] == "bf16" else None
    executor = _choose_executor(cfg, dev)
    if dist.parallel:  # each rank trains its shard; one all-reduce per step, after the step's backward passes
        if cfg.get("sync_bn"):
            distributed.use_sync_batchnorm(run.model, dist, executor)
        step_fn = distributed.DataParallelStep(_make_step(run, executor, autocast, update=False), run.model,
                                               run.optimizer, dist)
        shard = dist.shard(cfg["batch_size"])
    else:
        step_fn, shard = _make_step(run, executor, autocast), None
    every = cfg["checkpoint_every"] or spe
    what = f"{run.kind} {cfg['space']}" + (f" {run.arch.encoding()}" if run.arch else
                                           f" ({cfg['skip']}, {cfg['sampler']} sampler, {executor} executor)")
    if dist.is_main:
        print(f"training {what} on {run.data.name} ({len(run.data.train)} train / {len(run.data.val)} val, "
              f"{cfg['resolution']}px) on {dev}: steps {run.step} -> {total}, {spe} per epoch; run dir {out}"
              + (f"; {dist.world_size} ranks of {cfg['batch_size'] // dist.world_size} images" if dist.parallel
                 else ""))
    from tqdm import tqdm

    bar = tqdm(total=total, initial=run.step, disable=not progress, unit="step", dynamic_ncols=True)
    started = time.time()
    # Unbuffered: each line reaches the file in one write, and a failed write cannot resurface when the file is
    # closed. A torn line (full disk, crash) is dropped on --resume.
    with open(metrics_path if dist.is_main else os.devnull, "ab", buffering=0) as metrics:
        while run.step < total:
            images, labels = run.stream.next(shard)
            images, labels = images.to(dev, non_blocking=True), labels.to(dev, non_blocking=True)
            images = to_layout(images, run.memory_format)
            lr = learning_rate(cfg, run.step, spe)
            for group in run.optimizer.param_groups:
                group["lr"] = lr
            perms = run.sampler.permutations() if run.sampler else None
            losses = step_fn(images, labels, perms)
            if perms is not None:
                for k in range(perms.shape[1]):
                    run.choice_counts[torch.arange(perms.shape[0]), perms[:, k]] += 1
            run.step += 1
            run.last_loss = losses.mean().item()
            if not math.isfinite(run.last_loss):
                _diverged(run, out, f"loss {run.last_loss}")
            bar.update(1)
            bar.set_postfix(loss=f"{run.last_loss:.3f}", lr=f"{lr:.4f}")
            epoch_end = run.step % spe == 0
            try:
                if run.step % cfg["log_every"] == 0 or epoch_end or run.step == total:
                    line = {"step": run.step, "epoch": run.step / spe, "lr": lr, "loss": run.last_loss,
                            "elapsed_s": round(time.time() - started, 3)}
                    if epoch_end and run.kind == "standalone":
                        line["val_acc"] = _standalone_accuracy(run)
                    metrics.write((json.dumps(line) + "\n").encode())
                if run.step % every == 0 or run.step == total:
                    # The loss above was computed before this step's update: the weights are what gets saved.
                    if not run.finite():
                        _diverged(run, out, "non-finite weights after the update")
                    if dist.is_main:  # only rank 0 writes; every rank holds the same weights
                        save_checkpoint(out / CHECKPOINT_NAME, run.state())
                    run.saved_step = run.step
            except OSError as e:
                bar.close()
                raise ScarletError(f"cannot write {e.filename or out} at step {run.step} ({e.strerror}); "
                                   f"{run.last_good(out)}") from None
    bar.close()
    if cfg.get("sync_bn"):
        distributed.drop_sync_batchnorm(run.model)  # ranks now evaluate different paths
    summary = {"kind": run.kind, "space": cfg["space"], "steps": run.step, "epochs": run.step / spe,
               "final_train_loss": run.last_loss, "choice_counts": run.choice_counts.tolist(),
               "config": run.model_config.to_dict(), "executor": executor,
               "world_size": dist.world_size, "global_batch_size": cfg["batch_size"]}
    if run.kind == "supernet":
        rows = _evaluate(run, dist)
        summary["evaluated"] = rows
        if dist.is_main:
            _print_table(rows)
    else:
        summary["val_acc"] = _standalone_accuracy(run)
        summary["arch"] = run.arch.encoding()
        summary["madds"], summary["params"] = CostModel(run.model_config).cost(run.arch)
        if dist.is_main:
            print(f"{run.arch.encoding()}: top-1 {summary['val_acc']:.3f}, {summary['madds'] / 1e6:.2f}M MAdds, "
                  f"{summary['params'] / 1e6:.3f}M params")
    if not dist.is_main:
        return
    try:
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    except OSError as e:
        raise ScarletError(f"cannot write {out / 'summary.json'} ({e.strerror}); training finished and "
                           f"{run.last_good(out)}") from None
    print(f"final training loss {run.last_loss:.4f}; wrote {out / 'summary.json'}")


def _diverged(run: Run, out: Path, what: str):
    raise ScarletError(f"training diverged at step {run.step} ({what}); lower --lr; {run.last_good(out)}")


@torch.no_grad()
def _standalone_accuracy(run: Run) -> float:
    run.model.eval()
    correct = total = 0
    for x, y in batches(run.data.val, 256):
        correct += (run.model(to_layout(x.to(run.device), run.memory_format)).argmax(1).cpu() == y).sum().item()
        total += y.numel()
    run.model.train()
    return correct / max(total, 1)


if __name__ == "__main__":
    sys.exit(main())
