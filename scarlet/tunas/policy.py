"""The TuNAS controller: one independent categorical per decision, trained by REINFORCE (sheet A3).

- Logits start at zero (a uniform policy, temperature 1). A decision with a single choice has a trivial
  categorical; it contributes nothing.
- Hierarchical log-probabilities: only decisions that shape the sampled network count. If a layer samples the
  zero op, its kernel, expansion and SE decisions add no log-probability and get no gradient (TuNAS
  ``controller.independent_sample(hierarchical=True)``); which decisions are active is
  :func:`scarlet.decisions.active_decisions`'s answer.
- Loss of one step with N sampled architectures: ``mean_k -(r_k - b) * log pi(a_k) - w_H * mean_k H_k``, the
  per-core loss averaged over the cores; ``b`` is the zero-debiased moving average of the step's mean reward
  (momentum 0.95), updated with this step's mean before it is used.
- Adam with beta1 = 0 (no momentum), beta2 = 0.999, eps 1e-8.
- Learning rate 0 for the first 25% of the steps, then ``base * 10 ** ((t - t_d) / (T - t_d))``: it *rises*
  x10 over the remaining steps (MAS L368-376).
"""

from __future__ import annotations


import torch
from torch import Tensor, nn

from scarlet.decisions.arch import DecisionArch, arch_from_indices
from scarlet.decisions.concrete import active_decisions
from scarlet.decisions.space import Space

BASELINE_MOMENTUM = 0.95
ADAM_BETAS = (0.0, 0.999)
ADAM_EPS = 1e-8


class Policy(nn.Module):
    """Independent categoricals with ``sizes[i]`` choices each, logits initialised to zero."""

    def __init__(self, sizes):
        super().__init__()
        self.sizes = [int(n) for n in sizes]
        self.logits = nn.ParameterList([nn.Parameter(torch.zeros(n)) for n in self.sizes])

    def probabilities(self) -> list[Tensor]:
        return [torch.softmax(x.detach(), 0) for x in self.logits]

    @torch.no_grad()
    def sample(self, generator: torch.Generator) -> list[int]:
        """One choice index per decision."""
        return [int(torch.multinomial(torch.softmax(x, 0), 1, generator=generator)) for x in self.logits]

    def argmax(self) -> list[int]:
        """The final architecture: the most likely choice of each decision (the first one on ties)."""
        return [int(torch.argmax(x.detach())) for x in self.logits]

    def log_prob(self, indices, active: Tensor) -> Tensor:
        """Sum over decisions of ``active[d] * log pi_d(indices[d])`` (``active`` a 0/1 float mask)."""
        terms = [torch.log_softmax(x, 0)[int(i)] for x, i in zip(self.logits, indices, strict=True)]
        return (torch.stack(terms) * active).sum()

    def entropy(self, active: Tensor) -> Tensor:
        """Sum over the active decisions of each categorical's entropy (nats)."""
        terms = [-(torch.softmax(x, 0) * torch.log_softmax(x, 0)).sum() for x in self.logits]
        return (torch.stack(terms) * active).sum()


class SpacePolicy(Policy):
    """A :class:`Policy` over the decisions of a decision space, with the space's hierarchical masks."""

    def __init__(self, space: Space):
        super().__init__([len(d.choices) for d in space.decisions])
        self.space = space

    def arch(self, indices) -> DecisionArch:
        return arch_from_indices(self.space, indices)

    def active_mask(self, arch: DecisionArch) -> Tensor:
        active = active_decisions(self.space, arch)
        return torch.tensor([float(d.key in active) for d in self.space.decisions])

    def probabilities_by_key(self) -> dict[str, list[float]]:
        return {d.key: [round(float(p), 6) for p in probs]
                for d, probs in zip(self.space.decisions, self.probabilities())}


def reinforce_loss(policy: Policy, samples, rewards: Tensor, baseline: float, entropy_weight: float = 0.0) -> Tensor:
    """The step's loss: the mean over the N samples ``(indices, active mask)`` of the per-sample REINFORCE loss."""
    losses = []
    for (indices, active), r in zip(samples, rewards, strict=True):
        loss = -(float(r) - baseline) * policy.log_prob(indices, active)
        if entropy_weight:
            loss = loss - entropy_weight * policy.entropy(active)
        losses.append(loss)
    return torch.stack(losses).mean()


class MovingAverageBaseline:
    """Zero-debiased exponential moving average: ``ema = m * ema + (1 - m) * x``, ``b = ema / (1 - m ** t)``."""

    def __init__(self, momentum: float = BASELINE_MOMENTUM):
        self.momentum, self.ema, self.count = momentum, 0.0, 0

    def update(self, value: float) -> float:
        """Fold in this step's mean reward and return the debiased average (this step included)."""
        self.ema = self.momentum * self.ema + (1.0 - self.momentum) * float(value)
        self.count += 1
        return self.value

    @property
    def value(self) -> float:
        return self.ema / (1.0 - self.momentum ** self.count) if self.count else 0.0

    def state_dict(self) -> dict:
        return {"momentum": self.momentum, "ema": self.ema, "count": self.count}

    def load_state_dict(self, state: dict) -> None:
        self.momentum, self.ema, self.count = float(state["momentum"]), float(state["ema"]), int(state["count"])


def rl_delay_steps(max_steps: int, fraction: float = 0.25) -> int:
    """Steps with RL learning rate 0 (MAS: ``int(max_steps * 0.25)``, 6762 of 27050)."""
    return int(max_steps * fraction)


def rl_learning_rate(step: int, max_steps: int, base: float, delay_fraction: float = 0.25) -> float:
    """0 before the delay, then ``base * 10 ** ((step - delay) / (max_steps - delay))``."""
    delay = rl_delay_steps(max_steps, delay_fraction)
    if step < delay:
        return 0.0
    return base * 10.0 ** ((step - delay) / max(max_steps - delay, 1))


def policy_optimizer(policy: Policy, lr: float = 0.0) -> torch.optim.Adam:
    """Adam without momentum (beta1 = 0), as TuNAS's controller optimizer."""
    return torch.optim.Adam(policy.parameters(), lr=lr, betas=ADAM_BETAS, eps=ADAM_EPS)


__all__ = ["MovingAverageBaseline", "Policy", "SpacePolicy", "policy_optimizer",
           "reinforce_loss", "rl_delay_steps", "rl_learning_rate"]
