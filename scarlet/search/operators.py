"""Variation operators on integer genomes: sampling, selection, crossover and SCARLET's hierarchical mutation.

A genome is a tuple of ints, gene ``l`` taking values ``0 .. num_choices[l] - 1`` (for an architecture: the
choice index of each searchable layer). Every random decision draws from the ``numpy.random.Generator``
passed in, so a run is reproduced exactly by its seed (and resumed exactly from the generator's state).

Hierarchical mutation (SCARLET Table 7; the meaning of the symbols comes from MoreMNAS, which is not in the
paper folder). The reading implemented here:

- ``mutation_ratio`` = 0.8: each offspring is made by mutating one tournament winner with probability 0.8,
  otherwise by single-point crossover of two tournament winners (Algorithm 1 builds
  ``Q = crossover(M) U hierarchical-mutation(M)``, i.e. two separate kinds of children).
- Level 1, how many genes change: ``p_M`` = 0.7 mutates a single gene; ``p_K-M`` = 0.3 mutates ``k`` genes,
  ``k`` uniform in ``2 .. min(multi_max, number of mutable genes)`` (``multi_max`` = 4 by default). The genes
  are distinct and drawn uniformly among the genes with more than one choice.
- Level 2, how each of those genes is redrawn (chosen independently per gene):
  ``p_rm`` = 0.2 random mutation (uniform over the gene's choices);
  ``p_re`` = 0.65 roulette-wheel mutation (in proportion to how often each choice occurs at that gene among the
  current elites, the surviving parent population);
  ``p_pr`` = 0.15 policy-guided mutation (from a per-gene categorical policy trained with REINFORCE on the
  evaluated population, :class:`CategoricalPolicy`).
  A mutated gene always changes: the current value is excluded and the distribution renormalised over the
  other choices (uniform over them when it puts no mass there).

An alternative reading of the same table names ``p_re`` "reinforced" and ``p_pr`` "proportional"; the three
probabilities are plain arguments, so either assignment is one configuration away.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def _choices(num_choices) -> np.ndarray:
    nc = np.asarray(num_choices, dtype=np.int64)
    if nc.ndim != 1 or nc.size == 0 or np.any(nc < 1):
        raise ValueError(f"num_choices must be a non-empty list of positive ints, got {num_choices!r}")
    return nc


def sample_uniform(num_choices, rng: np.random.Generator) -> tuple[int, ...]:
    """One genome with every gene drawn uniformly from its choices."""
    nc = _choices(num_choices)
    return tuple(int(v) for v in rng.integers(0, nc))


def binary_tournament(rank, crowding, n_winners: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of ``n_winners`` binary-tournament winners, comparing (lower rank, then larger crowding).

    Each tournament draws two distinct individuals uniformly; a full tie goes to the first drawn.
    """
    rank = np.asarray(rank)
    crowding = np.asarray(crowding, dtype=np.float64)
    n = len(rank)
    if n < 2:
        return np.zeros(n_winners, dtype=np.int64)
    a = rng.integers(0, n, size=n_winners)
    b = (a + rng.integers(1, n, size=n_winners)) % n
    b_wins = (rank[b] < rank[a]) | ((rank[b] == rank[a]) & (crowding[b] > crowding[a]))
    return np.where(b_wins, b, a)


def single_point_crossover(parent_a, parent_b, rng: np.random.Generator) -> tuple[int, ...]:
    """The head of ``parent_a`` up to a uniform cut point (1 .. L-1) joined to the tail of ``parent_b``."""
    length = len(parent_a)
    if length < 2:
        return tuple(parent_a)
    cut = int(rng.integers(1, length))
    return tuple(parent_a[:cut]) + tuple(parent_b[cut:])


def choice_frequencies(genomes, num_choices) -> np.ndarray:
    """``(L, max_choices)`` array: how often each choice occurs at each gene among ``genomes``."""
    nc = _choices(num_choices)
    freq = np.zeros((len(nc), int(nc.max())))
    if len(genomes):
        G = np.asarray(genomes, dtype=np.int64)
        for layer in range(len(nc)):
            freq[layer] = np.bincount(G[:, layer], minlength=freq.shape[1])[: freq.shape[1]]
    return freq


class CategoricalPolicy:
    """Independent categorical distribution per gene, logits trained with REINFORCE.

    ``update(genomes, rewards)`` does one gradient-ascent step on the mean of ``reward * log p(genome)``:
    for gene ``l`` the gradient of ``log p`` w.r.t. the logits is ``onehot(g_l) - softmax(logits_l)``. The
    rewards should already be centred (the caller subtracts a baseline); see :func:`rank_rewards`.
    """

    def __init__(self, num_choices, lr: float = 0.1):
        self.num_choices = _choices(num_choices)
        self.lr = float(lr)
        self.logits = np.zeros((len(self.num_choices), int(self.num_choices.max())))
        self._mask = np.arange(self.logits.shape[1])[None, :] < self.num_choices[:, None]

    def probs(self) -> np.ndarray:
        z = np.where(self._mask, self.logits, -np.inf)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)

    def update(self, genomes, rewards) -> None:
        rewards = np.asarray(rewards, dtype=np.float64)
        if len(genomes) == 0 or not np.any(rewards):
            return
        G = np.asarray(genomes, dtype=np.int64)
        onehot = np.zeros((len(G),) + self.logits.shape)
        onehot[np.arange(len(G))[:, None], np.arange(G.shape[1])[None, :], G] = 1.0
        grad = np.einsum("n,nlc->lc", rewards, onehot - self.probs()[None]) / len(G)
        self.logits = np.where(self._mask, self.logits + self.lr * grad, 0.0)

    def state_dict(self) -> dict:
        return {"lr": self.lr, "logits": self.logits.tolist()}

    def load_state_dict(self, state: dict) -> None:
        logits = np.asarray(state["logits"], dtype=np.float64)
        if logits.shape != self.logits.shape:
            raise ValueError(f"policy logits of shape {logits.shape}, expected {self.logits.shape}")
        self.lr = float(state["lr"])
        self.logits = logits


def rank_rewards(rank) -> np.ndarray:
    """REINFORCE rewards from Pareto ranks: fitness ``-rank``, standardised (mean 0, std 1; all 0 if constant)."""
    fitness = -np.asarray(rank, dtype=np.float64)
    std = fitness.std()
    if std == 0:
        return np.zeros_like(fitness)
    return (fitness - fitness.mean()) / std


@dataclass(frozen=True)
class HierarchicalMutation:
    """SCARLET's hierarchical mutation (Table 7); see the module docstring for the reading implemented."""

    p_random: float = 0.2
    p_roulette: float = 0.65
    p_policy: float = 0.15
    p_single: float = 0.7
    p_multi: float = 0.3
    multi_max: int = 4

    def __post_init__(self):
        probs = (self.p_random, self.p_roulette, self.p_policy, self.p_single, self.p_multi)
        if any(p < 0 for p in probs):
            raise ValueError("mutation probabilities must be non-negative")
        if self.p_random + self.p_roulette + self.p_policy <= 0 or self.p_single + self.p_multi <= 0:
            raise ValueError("mutation probabilities of a level must not all be zero")
        if self.multi_max < 2:
            raise ValueError("multi_max must be at least 2")

    def __call__(self, genome, num_choices, rng: np.random.Generator, elite_freq=None, policy_probs=None):
        """A mutated copy of ``genome``.

        ``elite_freq`` is :func:`choice_frequencies` of the elites and ``policy_probs`` the policy's
        probabilities (both ``(L, max_choices)``); a missing one falls back to uniform.
        """
        nc = _choices(num_choices)
        child = list(genome)
        mutable = np.flatnonzero(nc > 1)
        if mutable.size == 0:
            return tuple(child)
        level1 = np.array([self.p_single, self.p_multi]) / (self.p_single + self.p_multi)
        upper = min(self.multi_max, mutable.size)
        if upper >= 2 and rng.random() >= level1[0]:
            k = int(rng.integers(2, upper + 1))
        else:
            k = 1
        genes = rng.choice(mutable, size=k, replace=False)
        level2 = np.array([self.p_random, self.p_roulette, self.p_policy])
        level2 = level2 / level2.sum()
        for gene in genes:
            op = int(rng.choice(3, p=level2))
            n = int(nc[gene])
            if op == 1 and elite_freq is not None:
                weights = np.asarray(elite_freq[gene][:n], dtype=np.float64).copy()
            elif op == 2 and policy_probs is not None:
                weights = np.asarray(policy_probs[gene][:n], dtype=np.float64).copy()
            else:
                weights = np.ones(n)
            weights[child[gene]] = 0.0
            if weights.sum() <= 0:
                weights = np.ones(n)
                weights[child[gene]] = 0.0
            child[gene] = int(rng.choice(n, p=weights / weights.sum()))
        return tuple(child)
