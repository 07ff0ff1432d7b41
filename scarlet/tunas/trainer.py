"""One TuNAS search: shared weights and policy trained together, one step at a time, resumable bit-exactly.

A step, in the order of the official code (``mobile_architecture_search.model_fn``, sheet A4):

1. sample N architectures from the policy (TuNAS: one per TPU core, 32), each with its own warmup coin flips;
2. train the shared weights on a training batch, one micro-batch per architecture, gradients averaged over the
   N paths, one optimizer step (``scarlet.decisions.sequential_k_path_step``): TF-style RMSProp (decay 0.9,
   momentum 0.9, epsilon 1.0), label smoothing 0.1, weight decay on conv kernels only, learning rate warmed up
   linearly over 2.5% of the steps then cosine to 0;
3. *after* the update, the reward of the same N architectures, each on its own held-out batch (4x the training
   micro-batch), with batch-statistics BN: ``r = reward(top-1, T(a), T0)``;
4. the policy's REINFORCE step with the moving-average baseline (``scarlet.tunas.policy``).

The held-out reward split is a fixed part of the training split (TuNAS's ``l2l_valid``); the data set's own
validation split is the test set. All randomness comes from generators that are saved with the checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from scarlet.data import SPLIT_SEED, BatchStream, Dataset, Split
from scarlet.decisions.arch import arch_from_indices
from scarlet.decisions.space import Space, get_space
from scarlet.decisions.step import sequential_k_path_step
from scarlet.decisions.supernet import DecisionSupernet
from scarlet.errors import ScarletError
from scarlet.optim import RMSpropTF, decay_groups
from scarlet.tunas.policy import (MovingAverageBaseline, SpacePolicy, policy_optimizer, reinforce_loss,
                                  rl_learning_rate)
from scarlet.tunas.rewards import reward
from scarlet.tunas.warmup import WarmSample, WarmupPaths, apply_warmup, mixed_forward, warmup_probability

RMSPROP = {"decay": 0.9, "momentum": 0.9, "eps": 1.0}  # TuNAS: tf RMSPropOptimizer(0.9, 0.9, epsilon=1.0)


def run_space(cfg: dict, in_channels: int) -> Space:
    return replace(get_space(cfg["space"], cfg["width"], cfg["divisor"]), in_channels=in_channels)


def split_reward(train: Split, fraction: float) -> tuple[Split, Split]:
    """(weights split, reward split): a fixed held-out part of the training split, whatever the run's seed."""
    if train.images is None:
        raise ScarletError("TuNAS's reward split needs an in-memory data set (digits or cifar10)")
    perm = torch.randperm(len(train), generator=torch.Generator().manual_seed(SPLIT_SEED + 1))
    n = int(round(len(train) * fraction))
    if n < 1 or n >= len(train):
        raise ScarletError(f"reward fraction {fraction} leaves an empty split of the {len(train)} training images")
    rest, held = perm[n:], perm[:n]
    return Split(train.labels[rest], train.images[rest]), Split(train.labels[held], train.images[held])


def weight_lr(cfg: dict, step: int) -> float:
    """Linear warmup over ``lr_warmup`` of the steps, then cosine to 0 (a pure function of the step)."""
    total, peak = cfg["steps"], cfg["lr"]
    warm = int(total * cfg["lr_warmup"])
    if step < warm:
        return peak * (step + 1) / warm
    return 0.5 * peak * (1.0 + math.cos(math.pi * (step - warm) / max(total - warm, 1)))


class Search:
    """The state of a TuNAS search and its step. ``cost`` maps an architecture to T(a) in ``cfg['target']``'s unit."""

    def __init__(self, cfg: dict, data: Dataset, cost, device: torch.device = torch.device("cpu")):
        self.cfg, self.data, self.cost, self.device = cfg, data, cost, device
        self.space = run_space(cfg, data.in_channels)
        torch.manual_seed(cfg["seed"])
        # runs saved before the option existed used the independent init
        init = cfg.get("supernet_init", "independent")
        self.supernet = DecisionSupernet(self.space, data.num_classes, init=init).to(device)
        self.paths = WarmupPaths(self.supernet)
        self.policy = SpacePolicy(self.space).to(device)
        self.optimizer = RMSpropTF(decay_groups(self.supernet, cfg["weight_decay"], "conv"), lr=cfg["lr"],
                                   **RMSPROP)
        self.policy_optimizer = policy_optimizer(self.policy)
        self.baseline = MovingAverageBaseline()
        weights_split, reward_split = split_reward(data.train, cfg["reward_fraction"])
        n = cfg["archs_per_step"]
        self.train_stream = BatchStream(weights_split, n * cfg["batch_size"], cfg["seed"])
        self.reward_stream = BatchStream(reward_split, n * cfg["reward_batch_size"], cfg["seed"] + 1)
        self.generator = torch.Generator().manual_seed(cfg["seed"] + 2)
        self.step = 0

    # ----------------------------------------------------------------------------------------------- the step
    def sample(self, p_filters: float, p_ops: float) -> list[tuple[list[int], WarmSample]]:
        out = []
        for _ in range(self.cfg["archs_per_step"]):
            indices = self.policy.sample(self.generator)
            indices, averaged = apply_warmup(self.space, indices, p_filters, p_ops, self.generator)
            out.append((indices, WarmSample(arch_from_indices(self.space, indices), averaged)))
        return out

    @torch.no_grad()
    def accuracies(self, samples: list[WarmSample], images: torch.Tensor, labels: torch.Tensor) -> list[float]:
        """Top-1 of each sample on its own chunk, BN on batch statistics (running statistics untouched)."""
        accs = []
        for sample, x, y in zip(samples, images.chunk(len(samples)), labels.chunk(len(samples))):
            logits = mixed_forward(self.supernet, x, sample, training=True, momentum=0.0)
            accs.append((logits.argmax(1) == y).float().mean().item())
        return accs

    def run_step(self) -> dict:
        cfg, t = self.cfg, self.step
        total = cfg["steps"]
        p_filters = warmup_probability(t, int(total * cfg["filter_warmup"]))
        p_ops = warmup_probability(t, int(total * cfg["op_warmup"]))
        drawn = self.sample(p_filters, p_ops)
        samples = [s for _, s in drawn]
        # 2. the weights: one micro-batch per architecture, gradients averaged, one update
        lr = weight_lr(cfg, t)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        images, labels = (v.to(self.device) for v in self.train_stream.next())
        losses = sequential_k_path_step(self.paths, images, labels, samples, self.optimizer, micro_batches=True,
                                        reduction="mean", label_smoothing=cfg["label_smoothing"])
        # 3. the reward of the same architectures after the update, on held-out data
        images, labels = (v.to(self.device) for v in self.reward_stream.next())
        accs = self.accuracies(samples, images, labels)
        costs = [float(self.cost(s.arch)) for s in samples]
        rewards = torch.tensor([reward(q, c, cfg["target"], cfg["beta"], cfg["reward"]) for q, c in zip(accs, costs)])
        # 4. the policy
        b = self.baseline.update(float(rewards.mean()))
        rl_lr = rl_learning_rate(t, total, cfg["rl_lr"], cfg["rl_delay"])
        for group in self.policy_optimizer.param_groups:
            group["lr"] = rl_lr
        self.policy_optimizer.zero_grad(set_to_none=True)
        masked = [(indices, self.policy.active_mask(s.arch).to(self.device)) for indices, s in drawn]
        reinforce_loss(self.policy, masked, rewards, b, cfg["entropy_weight"]).backward()
        self.policy_optimizer.step()
        self.step += 1
        loss = float(losses.mean())
        if not math.isfinite(loss):
            raise ScarletError(f"training loss is {loss} at step {self.step}: the search diverged (lower --lr)")
        return {"step": self.step, "lr": lr, "rl_lr": rl_lr, "p_filters": p_filters, "p_ops": p_ops, "loss": loss,
                "accuracy": sum(accs) / len(accs), "cost": sum(costs) / len(costs),
                "reward": float(rewards.mean()), "baseline": b}

    # ------------------------------------------------------------------------------------------------ results
    def final_arch(self):
        """The per-decision argmax of the policy."""
        return self.policy.arch(self.policy.argmax())

    # ----------------------------------------------------------------------------------------- checkpointing
    def state(self) -> dict:
        return {"supernet": self.supernet.state_dict(), "policy": self.policy.state_dict(),
                "optimizer": self.optimizer.state_dict(), "policy_optimizer": self.policy_optimizer.state_dict(),
                "baseline": self.baseline.state_dict(), "train_stream": self.train_stream.state_dict(),
                "reward_stream": self.reward_stream.state_dict(), "generator": self.generator.get_state(),
                "step": self.step}

    def load(self, state: dict) -> None:
        self.supernet.load_state_dict(state["supernet"])
        self.policy.load_state_dict(state["policy"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.policy_optimizer.load_state_dict(state["policy_optimizer"])
        self.baseline.load_state_dict(state["baseline"])
        self.train_stream.load_state_dict(state["train_stream"])
        self.reward_stream.load_state_dict(state["reward_stream"])
        self.generator.set_state(state["generator"])
        self.step = int(state["step"])
