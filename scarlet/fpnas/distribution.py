"""FP-NAS architecture distributions: independent categorical factors over a decision space's decisions.

A distribution is a list of factors; each factor covers a tuple of decisions (indices into ``space.decisions``)
and holds one logit per combination of their choices (C-order over the covered decisions). Factors are
independent, so P(A) is the product of the factors' probabilities (FP-NAS Eq. 2).

- **Factorized** (FD, Eq. 5): one factor per decision, ``sum(n_m)`` logits per layer.
- **Joint** (JD): one factor per *unit* over all the unit's decisions, ``prod(n_m)`` logits. A unit is the scope
  a decision key starts with (``g3`` for ``g3.filters`` and ``g3.1.kernel``): the block group that owns the shared
  output-channel and expansion decisions. In ``fbnetv2-f`` a unit is exactly the paper's "layer" (five variables:
  kernel, nonlinearity, SE, expansion, channels); in ``fbnetv2-f-fine`` it joins a group's per-block
  micro-architectures with the group's shared width decisions (a per-block joint would need the shared decisions
  twice).

The coarse-to-fine switch (:meth:`ArchDistribution.to_joint`) sets each joint logit to the sum of its factors'
log-probabilities, so every architecture keeps its probability and the entropy is unchanged (sheet B5.10).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from scarlet.decisions.arch import DecisionArch, arch_from_indices
from scarlet.decisions.space import Space
from scarlet.errors import ScarletError

KINDS = ("factorized", "joint")


def unit_of(key: str) -> str:
    """The unit (block group) a decision key belongs to: the text before its first dot."""
    return key.split(".", 1)[0]


def joint_units(space: Space) -> list[tuple[int, ...]]:
    """The decisions of each unit, units in order of first appearance."""
    units: dict[str, list[int]] = {}
    for i, d in enumerate(space.decisions):
        units.setdefault(unit_of(d.key), []).append(i)
    return [tuple(v) for v in units.values()]


class ArchDistribution:
    """Independent categorical factors over ``space``'s decisions; ``logits[f]`` is a leaf tensor (alpha)."""

    def __init__(self, space: Space, kind: str, factors: list[tuple[int, ...]], logits: list[Tensor]):
        if kind not in KINDS:
            raise ScarletError(f"distribution kind must be one of {', '.join(KINDS)}, got {kind!r}")
        covered = sorted(i for f in factors for i in f)
        if covered != list(range(len(space.decisions))):
            raise ValueError("the factors must cover every decision of the space exactly once")
        self.space, self.kind, self.factors = space, kind, [tuple(f) for f in factors]
        self.sizes = [[len(space.decisions[i].choices) for i in f] for f in self.factors]
        for f, (sizes, t) in enumerate(zip(self.sizes, logits)):
            if t.shape != (math.prod(sizes),):
                raise ScarletError(f"factor {f} ({self.describe_factor(f)}) needs {math.prod(sizes)} logits, "
                                   f"got shape {tuple(t.shape)}")
        self.logits = [t.detach().clone().double().requires_grad_(True) for t in logits]

    @classmethod
    def uniform(cls, space: Space, kind: str = "factorized") -> ArchDistribution:
        """Zero logits (the reading that reproduces the paper's initial K = 14, sheet B2)."""
        factors = joint_units(space) if kind == "joint" else [(i,) for i in range(len(space.decisions))]
        sizes = [math.prod(len(space.decisions[i].choices) for i in f) for f in factors]
        return cls(space, kind, factors, [torch.zeros(n, dtype=torch.float64) for n in sizes])

    def describe_factor(self, f: int) -> str:
        return "x".join(self.space.decisions[i].key for i in self.factors[f])

    def parameters(self) -> list[Tensor]:
        return self.logits

    def log_probs(self) -> list[Tensor]:
        return [torch.log_softmax(t, 0) for t in self.logits]

    def entropy(self) -> Tensor:
        """H(P(A|alpha)) in nats: the sum of the factors' entropies (they are independent)."""
        total = torch.zeros((), dtype=torch.float64)
        for lp in self.log_probs():
            total = total - (lp.exp() * lp).sum()
        return total

    def num_parameters(self) -> int:
        return sum(t.numel() for t in self.logits)

    # ------------------------------------------------------------------ indices <-> flat factor indices
    def _flat(self, indices: Tensor, f: int) -> Tensor:
        """Each row's flat index into factor ``f`` (C-order over the factor's decisions)."""
        flat = torch.zeros(indices.shape[0], dtype=torch.int64)
        for i, n in zip(self.factors[f], self.sizes[f]):
            flat = flat * n + indices[:, i]
        return flat

    def _unflat(self, flat: Tensor, f: int, out: Tensor) -> None:
        for i, n in reversed(list(zip(self.factors[f], self.sizes[f]))):
            out[:, i] = flat % n
            flat = flat // n

    def sample(self, k: int, generator: torch.Generator) -> Tensor:
        """``k`` architectures drawn independently, as a (k, decisions) tensor of choice indices."""
        out = torch.zeros(k, len(self.space.decisions), dtype=torch.int64)
        with torch.no_grad():
            for f, t in enumerate(self.logits):
                probs = torch.softmax(t, 0)
                self._unflat(torch.multinomial(probs, k, replacement=True, generator=generator), f, out)
        return out

    def log_prob(self, indices: Tensor) -> Tensor:
        """log P(A|alpha) of each row of ``indices`` (differentiable in the logits)."""
        total = torch.zeros(indices.shape[0], dtype=torch.float64)
        for f, lp in enumerate(self.log_probs()):
            total = total + lp[self._flat(indices, f)]
        return total

    def mode(self) -> Tensor:
        """The most probable architecture (each factor's argmax, exact since the factors are independent)."""
        out = torch.zeros(1, len(self.space.decisions), dtype=torch.int64)
        for f, t in enumerate(self.logits):
            self._unflat(t.detach().argmax().reshape(1), f, out)
        return out[0]

    def arch(self, indices: Tensor) -> DecisionArch:
        return arch_from_indices(self.space, indices.tolist())

    # ------------------------------------------------------------------------------- coarse to fine
    def to_joint(self) -> ArchDistribution:
        """The joint distribution equal to this one: joint logit = sum of the factors' log-probabilities."""
        if self.kind == "joint":
            return self
        units = joint_units(self.space)
        log_probs = [lp.detach() for lp in self.log_probs()]  # factor (i,) is decision i
        logits = []
        for unit in units:
            table = torch.zeros((), dtype=torch.float64)
            for i in unit:  # outer sum, C-order: the last decision of the unit varies fastest
                table = table.unsqueeze(-1) + log_probs[i]
            logits.append(table.reshape(-1))
        return ArchDistribution(self.space, "joint", units, logits)

    # ------------------------------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        return {"kind": self.kind, "factors": [list(f) for f in self.factors],
                "logits": [t.detach().clone() for t in self.logits]}

    @classmethod
    def from_state(cls, space: Space, state, source: str) -> ArchDistribution:
        """Rebuild from :meth:`state_dict`; anything that does not fit ``space`` is a ScarletError."""
        try:
            kind, factors, logits = state["kind"], state["factors"], state["logits"]
            factors = [tuple(int(i) for i in f) for f in factors]
            if kind == "factorized":
                expected = [(i,) for i in range(len(space.decisions))]
            else:
                expected = joint_units(space)
            if factors != expected or not all(isinstance(t, Tensor) and t.dtype == torch.float64 for t in logits):
                raise ValueError("factors or logits do not fit the space")
            return cls(space, kind, factors, list(logits))
        except (KeyError, TypeError, ValueError) as e:
            raise ScarletError(f"{source}: the architecture distribution is damaged or belongs to another space "
                               f"({e})") from None
