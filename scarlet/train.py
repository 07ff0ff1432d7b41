"""``python -m scarlet.train``: train a supernet with strict fairness, or a fixed architecture from scratch.

Supernet mode (default): FairNAS Algorithm 1 on a SCARLET or FairNAS space (skip choices carried by ELS by
default), SGD with momentum and a cosine schedule, then BN-recalibrated evaluation of a few random subnets and of
the published architectures that fit the space. Standalone mode (``--arch``): the papers' standalone recipe
(RMSProp, lr x0.97 every 2.4 epochs, dropout 0.2 before the classifier).

The run directory holds ``checkpoint.pt`` (atomic), ``config.json`` (the resolved run configuration),
``metrics.jsonl`` and ``summary.json``. ``--resume`` continues exactly: the learning rate is a pure function of
the step, and the sampler, data order and RNG states are in the checkpoint.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from scarlet.arch import NAMED_ARCHS, parse_arch
from scarlet.checkpoint import CHECKPOINT_NAME, atomic_write_text, load_checkpoint, save_checkpoint
from scarlet.config import resolve, resolve_device
from scarlet.cost import CostModel
from scarlet.data import BatchStream, batches, load_dataset
from scarlet.errors import ArgumentParser, ScarletError, cli_main
from scarlet.executor.layout import CHOICES as LAYOUTS, memory_format, to_layout
from scarlet.samplers import SAMPLERS, make_sampler
from scarlet.space import SKIP_KINDS, SPACES, get_space
from scarlet.supernet import Supernet, SupernetConfig

DEFAULTS = {
    "space": "scarlet-s2", "skip": "els", "sampler": "fair", "executor": "auto", "memory_format": "auto", "arch": None,
    "epochs": 5, "max_steps": None, "batch_size": 64, "lr": None, "momentum": 0.9, "weight_decay": None,
    "width": 0.25, "resolution": None, "stem_stride": 2, "dropout": None,
    "dataset": "digits", "out": "runs/supernet", "seed": 0, "device": "auto", "amp": "none",
    "checkpoint_every": None, "log_every": 10, "eval_archs": 8, "recalib_batches": 4,
}
# What a resumed run may change; everything else comes from the run's saved configuration.
RESUMABLE = {"epochs", "max_steps", "checkpoint_every", "log_every", "device", "eval_archs", "recalib_batches",
             "out", "executor", "memory_format"}


def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(prog="python -m scarlet.train", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    a = p.add_argument
    a("--config", help="YAML or JSON file of option defaults (keys as the flags, - or _)")
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
    a("--lr", type=float, help="peak learning rate [0.045*batch/256 supernet, 0.256*batch/4096 standalone]")
    a("--momentum", type=float, help="optimizer momentum [0.9]")
    a("--weight-decay", type=float, help="[4e-5 supernet, 1e-5 standalone]")
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
    return p


def _positive(cfg: dict, *keys):
    for k in keys:
        v = cfg.get(k)
        if v is not None and not v > 0:
            raise ScarletError(f"--{k.replace('_', '-')} must be positive, got {v}")


def learning_rate(cfg: dict, step: int, steps_per_epoch: int) -> float:
    """A pure function of the step, so that resumed runs follow the same schedule."""
    if cfg["arch"] is None:  # cosine to 0 over the planned epochs (FairNAS)
        total = cfg["epochs"] * steps_per_epoch
        return cfg["lr"] * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))
    return cfg["lr"] * 0.97 ** math.floor(step / steps_per_epoch / 2.4)  # SCARLET standalone


class Run:
    """Everything a training run holds, and its checkpoint round trip."""

    def __init__(self, cfg: dict, device: torch.device):
        self.cfg, self.device = cfg, device
        self.data = load_dataset(cfg["dataset"], cfg["resolution"])
        torch.manual_seed(cfg["seed"])
        self.model_config = SupernetConfig(space=cfg["space"], skip=cfg["skip"], width=cfg["width"],
                                           resolution=cfg["resolution"], stem_stride=cfg["stem_stride"],
                                           in_channels=self.data.in_channels, num_classes=self.data.num_classes,
                                           dropout=cfg["dropout"])
        if cfg["arch"] is None:
            self.kind, self.arch = "supernet", None
            self.model = Supernet(self.model_config)
            self.optimizer = torch.optim.SGD(self.model.parameters(), lr=cfg["lr"], momentum=cfg["momentum"],
                                             weight_decay=cfg["weight_decay"])
            self.sampler = make_sampler(cfg["sampler"], self.model.space, cfg["seed"])
        else:
            from scarlet.standalone import StandaloneNet

            self.kind, self.arch = "standalone", parse_arch(cfg["arch"], cfg["space"])
            self.model = StandaloneNet(self.arch, self.model_config)
            # TensorFlow-style RMSProp as in MnasNet/SCARLET: decay 0.9, momentum 0.9, eps 1e-3.
            self.optimizer = torch.optim.RMSprop(self.model.parameters(), lr=cfg["lr"], alpha=0.9, eps=1e-3,
                                                 momentum=cfg["momentum"], weight_decay=cfg["weight_decay"])
            self.sampler = None
        # Runs saved before the option existed resume in the layout "auto" picks (same values within fp tolerance).
        self.memory_format = memory_format(cfg.get("memory_format", "auto"), device)
        to_layout(self.model.to(device), self.memory_format)
        self.stream = BatchStream(self.data.train, cfg["batch_size"], cfg["seed"])
        self.step = 0
        space = get_space(self.model_config.space)
        self.choice_counts = torch.zeros(space.num_layers, space.num_choices, dtype=torch.int64)
        self.last_loss = float("nan")

    def state(self) -> dict:
        return {"kind": self.kind, "config": self.model_config.to_dict(), "run_config": self.cfg,
                "arch": self.arch.encoding() if self.arch else None,
                "model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "sampler": self.sampler.state_dict() if self.sampler else None,
                "stream": self.stream.state_dict(), "torch_rng": torch.get_rng_state(),
                "cuda_rng": torch.cuda.get_rng_state_all() if self.device.type == "cuda" else [],
                "step": self.step, "choice_counts": self.choice_counts, "last_loss": self.last_loss}

    def load(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.sampler is not None:
            self.sampler.load_state_dict(state["sampler"])
        self.stream.load_state_dict(state["stream"])
        torch.set_rng_state(state["torch_rng"])
        if self.device.type == "cuda" and state["cuda_rng"]:
            torch.cuda.set_rng_state_all(state["cuda_rng"])
        self.step, self.choice_counts, self.last_loss = state["step"], state["choice_counts"], state["last_loss"]


def _make_step(run: Run, executor: str, autocast_dtype):
    """The function that trains one step: ``(images, labels, perms) -> per-path losses``."""
    model, optimizer = run.model, run.optimizer
    if run.kind == "standalone":
        def step(images, labels, perms):
            model.train()
            optimizer.zero_grad(set_to_none=True)
            with torch.autocast(images.device.type, dtype=autocast_dtype, enabled=autocast_dtype is not None):
                loss = F.cross_entropy(model(images), labels)
            loss.backward()
            optimizer.step()
            return loss.detach().float().reshape(1)
        return step
    from scarlet.executor import make_step

    return make_step(executor, model, optimizer, autocast_dtype=autocast_dtype)


def _choose_executor(cfg: dict, device: torch.device) -> str:
    from scarlet.executor import choose_executor

    return choose_executor(cfg["executor"], device, cfg["sampler"], width=cfg["width"], resolution=cfg["resolution"])


def _trim_metrics(path: Path, step: int) -> None:
    """Drop metrics lines written after the checkpoint we resume from (a crash may have left some)."""
    if not path.exists():
        return
    keep = [line for line in path.read_text().splitlines() if line.strip() and json.loads(line).get("step", 0) <= step]
    atomic_write_text(path, "".join(line + "\n" for line in keep))


def _evaluate(run: Run) -> list[dict]:
    """BN-recalibrated accuracy of random subnets and of the published architectures that fit the space."""
    from scarlet.evaluate import evaluate_one_by_one

    model, space = run.model, run.model.space
    gen = torch.Generator().manual_seed(run.cfg["seed"] + 1)
    entries = [(f"random-{i}", tuple(torch.randint(space.num_choices, (space.num_layers,), generator=gen).tolist()))
               for i in range(run.cfg["eval_archs"])]
    for name in NAMED_ARCHS:
        try:
            entries.append((name, parse_arch(name, space).genes))
        except ScarletError:
            pass
    dev = run.device
    calib = [(x.to(dev), y.to(dev)) for x, y in
             batches(run.data.train, run.cfg["batch_size"], limit=run.cfg["recalib_batches"])]
    val = [(x.to(dev), y.to(dev)) for x, y in batches(run.data.val, 256)]
    accs = evaluate_one_by_one(model, [g for _, g in entries], calib, val, run.cfg.get("memory_format", "auto"))
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


def _resolve_config(args, parser) -> dict:
    cfg = resolve(args, DEFAULTS, parser)
    if cfg["arch"] is not None and args.space is None and "space" not in _file_keys(args):
        # A named architecture brings its own space unless one is given.
        cfg["space"] = NAMED_ARCHS.get(cfg["arch"].strip().lower(), (cfg["space"],))[0]
    standalone = cfg["arch"] is not None
    if cfg["resolution"] is None:
        cfg["resolution"] = 224 if cfg["dataset"].startswith("imagefolder") else 32
    if cfg["lr"] is None:
        # The papers' learning rates, scaled linearly from their batch sizes (4096 standalone, 256 supernet).
        cfg["lr"] = 0.256 * cfg["batch_size"] / 4096 if standalone else 0.045 * cfg["batch_size"] / 256
    if cfg["weight_decay"] is None:
        cfg["weight_decay"] = 1e-5 if standalone else 4e-5
    if cfg["dropout"] is None:
        cfg["dropout"] = 0.2 if standalone else 0.0
    _positive(cfg, "epochs", "max_steps", "batch_size", "lr", "width", "resolution", "checkpoint_every", "log_every")
    if cfg["weight_decay"] < 0 or not 0 <= cfg["dropout"] < 1 or cfg["eval_archs"] < 0 or cfg["recalib_batches"] < 0:
        raise ScarletError("--weight-decay, --eval-archs and --recalib-batches must be >= 0 and --dropout in [0, 1)")
    return cfg


def _file_keys(args) -> set:
    from scarlet.config import read_config_file

    return set(read_config_file(args.config)) if args.config else set()


@cli_main
def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    out = Path(args.out or DEFAULTS["out"])
    ckpt_path = out / CHECKPOINT_NAME
    if args.resume:
        if not ckpt_path.exists():
            raise ScarletError(f"--resume: no checkpoint at {ckpt_path}")
        state = load_checkpoint(ckpt_path)
        saved = state.get("run_config")
        if not isinstance(saved, dict):
            raise ScarletError(f"checkpoint {ckpt_path} has no run configuration to resume from")
        cfg = dict(saved)
        for key, value in vars(args).items():
            if value is None or key in ("resume", "config", "no_progress"):
                continue
            if key in RESUMABLE:
                cfg[key] = value
            elif cfg.get(key) != value:
                raise ScarletError(f"--{key.replace('_', '-')} {value} conflicts with the run in {out} "
                                   f"({key} = {cfg.get(key)}); drop the flag or start a new --out")
        cfg["out"] = str(out)
    else:
        cfg = _resolve_config(args, parser)
        if ckpt_path.exists():
            raise ScarletError(f"{out} already holds a run; pass --resume to continue it or choose another --out")
        state = None
    device = resolve_device(cfg["device"])
    run = Run(cfg, device)
    if state is not None:
        if state["kind"] != run.kind or state["config"] != run.model_config.to_dict():
            raise ScarletError(f"checkpoint {ckpt_path} does not match its run configuration")
        run.load(state)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.json", json.dumps(cfg, indent=2) + "\n")
    metrics_path = out / "metrics.jsonl"
    if state is not None:
        _trim_metrics(metrics_path, run.step)
    elif metrics_path.exists():
        metrics_path.unlink()
    train(run, out, metrics_path, progress=not args.no_progress)
    return 0


def train(run: Run, out: Path, metrics_path: Path, progress: bool = True) -> None:
    cfg, dev = run.cfg, run.device
    spe = run.stream.steps_per_epoch
    total = cfg["epochs"] * spe
    if cfg["max_steps"] is not None:
        total = min(total, cfg["max_steps"])
    autocast = torch.bfloat16 if cfg["amp"] == "bf16" else None
    executor = _choose_executor(cfg, dev)
    step_fn = _make_step(run, executor, autocast)
    every = cfg["checkpoint_every"] or spe
    what = f"{run.kind} {cfg['space']}" + (f" {run.arch.encoding()}" if run.arch else
                                           f" ({cfg['skip']}, {cfg['sampler']} sampler, {executor} executor)")
    print(f"training {what} on {run.data.name} ({len(run.data.train)} train / {len(run.data.val)} val, "
          f"{cfg['resolution']}px) on {dev}: steps {run.step} -> {total}, {spe} per epoch; run dir {out}")
    from tqdm import tqdm

    bar = tqdm(total=total, initial=run.step, disable=not progress, unit="step", dynamic_ncols=True)
    started = time.time()
    with open(metrics_path, "a") as metrics:
        while run.step < total:
            images, labels = run.stream.next()
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
                raise ScarletError(f"training diverged at step {run.step} (loss {run.last_loss}); "
                                   f"lower --lr; the last checkpoint in {out} is intact")
            bar.update(1)
            bar.set_postfix(loss=f"{run.last_loss:.3f}", lr=f"{lr:.4f}")
            epoch_end = run.step % spe == 0
            if run.step % cfg["log_every"] == 0 or epoch_end or run.step == total:
                line = {"step": run.step, "epoch": run.step / spe, "lr": lr, "loss": run.last_loss,
                        "elapsed_s": round(time.time() - started, 3)}
                if epoch_end and run.kind == "standalone":
                    line["val_acc"] = _standalone_accuracy(run)
                metrics.write(json.dumps(line) + "\n")
                metrics.flush()
            if run.step % every == 0 or run.step == total:
                save_checkpoint(out / CHECKPOINT_NAME, run.state())
    bar.close()
    summary = {"kind": run.kind, "space": cfg["space"], "steps": run.step, "epochs": run.step / spe,
               "final_train_loss": run.last_loss, "choice_counts": run.choice_counts.tolist(),
               "config": run.model_config.to_dict(), "executor": executor}
    if run.kind == "supernet":
        rows = _evaluate(run)
        summary["evaluated"] = rows
        _print_table(rows)
    else:
        summary["val_acc"] = _standalone_accuracy(run)
        summary["arch"] = run.arch.encoding()
        summary["madds"], summary["params"] = CostModel(run.model_config).cost(run.arch)
        print(f"{run.arch.encoding()}: top-1 {summary['val_acc']:.3f}, {summary['madds'] / 1e6:.2f}M MAdds, "
              f"{summary['params'] / 1e6:.3f}M params")
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(f"final training loss {run.last_loss:.4f}; wrote {out / 'summary.json'}")


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
