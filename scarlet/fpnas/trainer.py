"""The FP-NAS search loop: one step trains the supernet weights on K sampled paths, then moves alpha by Eq. 7.

A step (FP-NAS section 3, sheet B2 and B5):

1. K from the entropy of the current distribution (``fixed_k`` for the PARSEC baseline); at epoch ``theta`` the
   ``mixed`` schedule switches from the factorized to the equal joint distribution, with a fresh Adam for the new
   logits (Adam's state for the old ones has no counterpart; the paper does not say).
2. K architectures drawn i.i.d. from P(A|alpha), shared by both updates of the step.
3. Weights: SGD (momentum, cosine over the planned steps) on a batch of the weights' half of the training split,
   from the K paths on that same batch (sheet B5.7): ``average`` is the mean of the K paths' cross-entropies,
   run path by path by ``scarlet.decisions.step.sequential_k_path_step``; ``importance`` weights each path by its
   normalised likelihood on the batch (Eq. 3), which needs all K losses before any backward: the K paths run one
   after another but their graphs are kept until the weighted backward (K times the activation memory). The
   loss is per image (the batch-sum likelihood's gradient divided by the batch size), so the learning rate does
   not depend on the batch size. A batched executor for decision spaces does not exist yet: paths always run
   sequentially.
4. alpha (after ``warmup_epochs``; frozen before): the K paths' likelihoods on a batch of the other half (no
   gradient, BN in training mode as in the weights' step), their FLOPs hinges, Eq. 7's coefficients, one Adam
   step. The weights are updated first (as TuNAS's code orders its two updates; FP-NAS does not say).

An epoch is one pass over the weights' half. The warmup epochs use the K of the (frozen, uniform) distribution.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time

import torch

from scarlet.data import BatchStream, Split, batches, load_dataset
from scarlet.decisions.cost import DecisionCostModel
from scarlet.decisions.evaluate import evaluate_archs
from scarlet.decisions.space import Space, get_space
from scarlet.decisions.step import sequential_k_path_step
from scarlet.decisions.supernet import DecisionSupernet
from scarlet.errors import ScarletError
from scarlet.fpnas.distribution import ArchDistribution
from scarlet.fpnas.gradient import (arch_coefficients, arch_surrogate, hinge_cost, log_likelihood,
                                    weight_coefficients)
from scarlet.fpnas.sampling import num_samples
from scarlet.optim import decay_groups

HALVES_SEED = 0  # the weights/alpha halves of the training split never depend on the run's seed
TARGET_DRAWS = 256  # uniform architectures whose MAdds give the derived default target
FLOPS_DRAWS = 32  # draws of the Monte-Carlo estimate of the expected MAdds logged each step


def search_space(cfg: dict, in_channels: int) -> Space:
    """The configured space at the data's number of input channels."""
    return dataclasses.replace(get_space(cfg["space"], cfg["width"], cfg["divisor"]), in_channels=in_channels)


def split_halves(split: Split) -> tuple[Split, Split]:
    """The weights' half and alpha's half of a training split, a fixed random partition (FP-NAS section 5.1)."""
    perm = torch.randperm(len(split), generator=torch.Generator().manual_seed(HALVES_SEED))
    half = len(split) // 2
    return tuple(Split(split.labels[idx], split.images[idx] if split.images is not None else None,
                       None if split.loader is None else (lambda i, idx=idx: split.loader(idx[i])))
                 for idx in (perm[:half], perm[half:]))


def derived_target(space: Space, cost: DecisionCostModel) -> float:
    """The default FLOPs target: the 25th percentile of the MAdds of uniform draws (a fixed generator), so that the
    hinge is active on most of the initial samples."""
    from scarlet.decisions.arch import random_decision_arch

    g = torch.Generator().manual_seed(0)
    madds = sorted(cost.madds(random_decision_arch(space, g)) for _ in range(TARGET_DRAWS))
    return float(madds[TARGET_DRAWS // 4])


class Search:
    """Everything an FP-NAS run holds, and its checkpoint round trip."""

    def __init__(self, cfg: dict, device: torch.device):
        self.cfg, self.device = cfg, device
        self.data = load_dataset(cfg["dataset"], cfg["resolution"])
        self.space = search_space(cfg, self.data.in_channels)
        self.cost = DecisionCostModel(self.space, cfg["resolution"], self.data.num_classes)
        if cfg["flops_target"] is None:
            cfg["flops_target"] = derived_target(self.space, self.cost)
        torch.manual_seed(cfg["seed"])
        self.model = DecisionSupernet(self.space, self.data.num_classes, cfg["depthwise"],
                                      cfg.get("supernet_init", "independent")).to(device)
        self.optimizer = torch.optim.SGD(decay_groups(self.model, cfg["weight_decay"], cfg["weight_decay_on"]),
                                         lr=cfg["lr"], momentum=cfg["momentum"])
        self.dist = ArchDistribution.uniform(self.space, "joint" if cfg["distribution"] == "joint" else "factorized")
        self.alpha_optimizer = self._adam()
        weights_half, alpha_half = split_halves(self.data.train)
        self.weights_stream = BatchStream(weights_half, cfg["batch_size"], cfg["seed"])
        self.alpha_stream = BatchStream(alpha_half, cfg["batch_size"], cfg["seed"] + 1)
        self.sampler = torch.Generator().manual_seed(cfg["seed"] + 2)
        self.steps_per_epoch = self.weights_stream.steps_per_epoch
        self.step, self.samples = 0, 0

    def _adam(self) -> torch.optim.Adam:
        return torch.optim.Adam(self.dist.parameters(), lr=self.cfg["alpha_lr"])

    @property
    def total_steps(self) -> int:
        total = round(self.cfg["epochs"] * self.steps_per_epoch)
        return total if self.cfg["max_steps"] is None else min(total, self.cfg["max_steps"])

    def epoch(self) -> float:
        return self.step / self.steps_per_epoch

    def learning_rate(self) -> float:
        """Cosine to 0 over the planned epochs (a pure function of the step, for exact resumes)."""
        total = max(1, round(self.cfg["epochs"] * self.steps_per_epoch))
        return self.cfg["lr"] * 0.5 * (1 + math.cos(math.pi * min(self.step, total) / total))

    # ------------------------------------------------------------------------------------------- a step
    def train_step(self) -> dict:
        cfg = self.cfg
        if cfg["distribution"] == "mixed" and self.dist.kind == "factorized" and self.epoch() >= cfg["theta"]:
            self.dist = self.dist.to_joint()
            self.alpha_optimizer = self._adam()
        entropy = self.dist.entropy().item()
        k = num_samples(entropy, cfg["lam"], cfg["fixed_k"])
        indices = self.dist.sample(k, self.sampler)
        archs = [self.dist.arch(row) for row in indices]
        images, labels = (t.to(self.device) for t in self.weights_stream.next())
        lr = self.learning_rate()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        loss = self._weights_step(images, labels, archs)
        record = {"step": self.step + 1, "epoch": (self.step + 1) / self.steps_per_epoch, "lr": lr,
                  "distribution": self.dist.kind, "entropy": entropy, "k": k, "loss": loss}
        if self.epoch() >= cfg["warmup_epochs"]:
            record.update(self._alpha_step(indices, archs))
        self.step += 1
        self.samples += k
        record["samples"] = self.samples
        return record

    def _weights_step(self, images, labels, archs) -> float:
        if self.cfg["weighting"] == "average":
            return sequential_k_path_step(self.model, images, labels, archs, self.optimizer, micro_batches=False,
                                          reduction="mean").mean().item()
        self.model.train()
        self.optimizer.zero_grad(set_to_none=True)
        reduction = self.cfg["likelihood"]
        log_liks = torch.stack([log_likelihood(self.model(images, a), labels, reduction) for a in archs])
        w = weight_coefficients(log_liks, "importance")
        scale = labels.numel() if reduction == "sum" else 1
        loss = -(w * log_liks).sum() / scale
        loss.backward()
        self.optimizer.step()
        return loss.item()

    def _alpha_step(self, indices, archs) -> dict:
        images, labels = (t.to(self.device) for t in self.alpha_stream.next())
        self.model.train()
        with torch.no_grad():
            log_liks = torch.stack([log_likelihood(self.model(images, a), labels, self.cfg["likelihood"])
                                    for a in archs]).cpu()
        madds = [self.cost.madds(a) for a in archs]
        costs = hinge_cost(madds, self.cfg["flops_target"])
        m = arch_coefficients(log_liks, costs, self.cfg["beta"])
        self.alpha_optimizer.zero_grad(set_to_none=True)
        arch_surrogate(self.dist.log_prob(indices), m).backward()
        self.alpha_optimizer.step()
        return {"alpha_batch_log_lik": log_liks.mean().item(), "samples_over_target": int((costs > 0).sum())}

    # --------------------------------------------------------------------------------------- reporting
    def mode(self) -> tuple:
        """The most probable architecture, its MAdds and log-probability."""
        idx = self.dist.mode()
        arch = self.dist.arch(idx)
        return arch, self.cost.madds(arch), self.dist.log_prob(idx[None]).item()

    def expected_madds(self) -> float:
        """Monte-Carlo estimate of E[MAdds(A)] from its own generator (seeded by the step, so it does not move the
        sampler and is the same on a resumed run)."""
        g = torch.Generator().manual_seed(self.cfg["seed"] * 1_000_003 + self.step)
        draws = self.dist.sample(FLOPS_DRAWS, g)
        return sum(self.cost.madds(self.dist.arch(r)) for r in draws) / FLOPS_DRAWS

    def final_report(self) -> dict:
        """The most probable architecture with its cost, and its accuracy with the supernet's weights (BN
        re-estimated on ``recalib_batches`` batches of the weights' half)."""
        arch, madds, log_prob = self.mode()
        dev = self.device
        calib = [(x.to(dev), y.to(dev)) for x, y in
                 batches(self.weights_stream.split, self.cfg["batch_size"], self.cfg["recalib_batches"])]
        val = [(x.to(dev), y.to(dev)) for x, y in batches(self.data.val, 256)]
        acc = evaluate_archs(self.model, [arch], calib, val)[0]
        return {"space": self.cfg["space"], "width": self.cfg["width"], "divisor": self.cfg["divisor"],
                "in_channels": self.space.in_channels, "num_classes": self.data.num_classes,
                "resolution": self.cfg["resolution"], "arch": arch.as_dict(), "madds": madds,
                "params": self.cost.params(arch), "flops_target": self.cfg["flops_target"],
                "log_prob": log_prob, "val_acc_inherited": acc}

    # ------------------------------------------------------------------------------------- checkpoints
    def state(self) -> dict:
        return {"kind": "fpnas", "run_config": self.cfg, "model": self.model.state_dict(),
                "optimizer": self.optimizer.state_dict(), "distribution": self.dist.state_dict(),
                "alpha_optimizer": self.alpha_optimizer.state_dict(),
                "weights_stream": self.weights_stream.state_dict(), "alpha_stream": self.alpha_stream.state_dict(),
                "sampler": self.sampler.get_state(), "torch_rng": torch.get_rng_state(),
                "step": self.step, "samples": self.samples}

    def load(self, state: dict, source: str) -> None:
        """Restore a checkpoint; anything missing or of the wrong type or shape is a one-line ScarletError."""
        step, samples = state.get("step"), state.get("samples")
        for name, v in (("step", step), ("samples", samples)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ScarletError(f"{source}: {name} must be a non-negative integer")
        try:
            self.model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
            self.dist = ArchDistribution.from_state(self.space, state["distribution"], source)
            self.alpha_optimizer = self._adam()
            self.alpha_optimizer.load_state_dict(state["alpha_optimizer"])
            self.weights_stream.load_state_dict(state["weights_stream"])
            self.alpha_stream.load_state_dict(state["alpha_stream"])
            self.sampler.set_state(state["sampler"])
            torch.set_rng_state(state["torch_rng"])
        except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise ScarletError(f"{source} is damaged or belongs to another run ({type(e).__name__}: {first})") \
                from None
        self.step, self.samples = step, samples


def step_record(search: Search, record: dict, started: float) -> dict:
    """The metrics line of a step: the step's values plus the distribution's expected cost and mode."""
    arch, madds, log_prob = search.mode()
    return {**record, "expected_madds": search.expected_madds(), "mode_arch": arch.as_dict(), "mode_madds": madds,
            "mode_log_prob": log_prob, "elapsed_s": round(time.time() - started, 3)}


def load_final(path) -> tuple[Space, object, dict]:
    """The space, architecture and report of a run's ``final_arch.json`` (checked against the space)."""
    from pathlib import Path

    from scarlet.config import Choice, Float, Int, check_saved
    from scarlet.decisions.arch import parse_decision_arch
    from scarlet.decisions.space import SPACES

    path = Path(path)
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise ScarletError(f"{path} is not a readable final architecture ({e})") from None
    if not isinstance(report, dict):
        raise ScarletError(f"{path} must hold a JSON object")
    options = {"space": Choice(*[s for s in SPACES if s.startswith("fbnetv2")]), "width": Float(0, 8, lo_open=True),
               "divisor": Int(1, 64), "in_channels": Int(1, 4096), "num_classes": Int(1, 10**6),
               "resolution": Int(8, 4096)}
    shape = check_saved({k: report.get(k) for k in options}, options, dict.fromkeys(options), str(path))
    space = dataclasses.replace(get_space(shape["space"], shape["width"], shape["divisor"]),
                                in_channels=shape["in_channels"])
    return space, parse_decision_arch(report.get("arch"), space), report


def final_network(path):
    """The standalone network (fresh weights) of a run's ``final_arch.json``, ready to train or export."""
    from scarlet.decisions.standalone import DecisionStandaloneNet

    space, arch, report = load_final(path)
    return DecisionStandaloneNet(space, arch, report["num_classes"], report["resolution"])
