"""Constrained, weighted NSGA-II: SCARLET Algorithm 1.

    P0, Q0 <- uniform genomes until each holds n feasible individuals (cheap constraint before evaluation)
    for i in 1 .. N:
        R = P(i-1) U Q(i-1)
        P(i) <- n survivors of R by non-dominated rank, then weighted crowding distance
        REINFORCE update of the mutation policy on R (reward: standardised -rank)
        Q(i) <- until n feasible children: tournament selection on (rank, crowding), then a single-point
                crossover child (probability 1 - mutation_ratio) or a hierarchical-mutation child;
                a child over a cheap limit is discarded before evaluation, one under the evaluated limit after
    answer: the first front of P(N), sorted along one objective, and K equispaced picks from it

Differences from the paper's listing, and why:

- Q(N) is not produced: Algorithm 1 makes it in its last iteration but only ever uses P(N), so it would be n
  wasted evaluations. (Resuming a finished run with more generations produces it then, identically.)
- A child identical to a member of P(i) or to another child of Q(i) is discarded like an infeasible one: copies
  would only crowd the population (their evaluation is cached anyway).
- Evaluations are batched: each round proposes as many cheap-feasible children as are still missing and sends
  them to the evaluator in one call; the result is the same as one by one.
"""

from __future__ import annotations

import numpy as np

from scarlet.search.algorithm import SearchAlgorithm, SearchConfig
from scarlet.search.operators import (CategoricalPolicy, HierarchicalMutation, binary_tournament,
                                      choice_frequencies, rank_rewards, sample_uniform, single_point_crossover)
from scarlet.search.problem import Genome, Problem
from scarlet.search.ranking import non_dominated, survival_order


class NSGA2(SearchAlgorithm):
    name = "nsga2"

    def __init__(self, problem: Problem, config: SearchConfig | None = None):
        super().__init__(problem, config)
        c = self.config
        self.mutation = HierarchicalMutation(c.p_random, c.p_roulette, c.p_policy, c.p_single, c.p_multi,
                                             c.multi_max)
        self.policy = CategoricalPolicy(problem.num_choices, c.policy_lr)
        self.P: list[Genome] = []
        self.P_rank = np.zeros(0, dtype=np.int64)
        self.P_crowd = np.zeros(0)
        self.Q: list[Genome] | None = None

    @property
    def done(self) -> bool:
        return self.initialized and self.generation >= self.config.generations

    def _uniform(self) -> Genome:
        return sample_uniform(self.problem.num_choices, self.rng)

    def initialize(self) -> None:
        n, draws = self.config.population, self.config.draws_per_fill
        taken: set = set()
        self.P = self.archive.fill(n, self._uniform, taken, 0, draws, "initial parents")
        self.Q = self.archive.fill(n, self._uniform, taken, 0, draws, "initial children")
        F = self._objectives(self.P)
        self.P_rank = np.zeros(n, dtype=np.int64)
        self.P_rank[np.setdiff1d(np.arange(n), non_dominated(F))] = 1  # only the first front is used before step 1
        self.P_crowd = np.zeros(n)

    def _objectives(self, genomes: list[Genome]) -> np.ndarray:
        return self.problem.objective_matrix([self.archive.records[g].values for g in genomes])

    def offspring(self, generation: int) -> list[Genome]:
        """``population`` new feasible children of the current parents P."""
        nc = self.problem.num_choices
        elite_freq = choice_frequencies(self.P, nc)
        policy_probs = self.policy.probs()

        def propose() -> Genome:
            if self.rng.random() < self.config.mutation_ratio:
                (i,) = binary_tournament(self.P_rank, self.P_crowd, 1, self.rng)
                return self.mutation(self.P[i], nc, self.rng, elite_freq, policy_probs)
            i, j = binary_tournament(self.P_rank, self.P_crowd, 2, self.rng)
            return single_point_crossover(self.P[i], self.P[j], self.rng)

        return self.archive.fill(self.config.population, propose, set(self.P), generation,
                                 self.config.draws_per_fill, f"children in generation {generation}")

    def step(self) -> None:
        g = self.generation + 1
        if self.Q is None:
            self.Q = self.offspring(g - 1)
        R = self.P + self.Q
        idx, rank, crowd = survival_order(self._objectives(R), self.config.population, self.problem.weights)
        self.policy.update(R, rank_rewards(rank))
        self.P = [R[i] for i in idx]
        self.P_rank, self.P_crowd = rank[idx], crowd[idx]
        self.generation = g
        self.Q = self.offspring(g) if g < self.config.generations else None

    def front_genomes(self) -> list[Genome]:
        return [p for p, r in zip(self.P, self.P_rank) if r == 0]

    def population_genomes(self) -> list[Genome]:
        return list(self.P)

    def _extra_state(self) -> dict:
        return {
            "P": [list(p) for p in self.P],
            "P_rank": self.P_rank.tolist(),
            "P_crowd": self.P_crowd.tolist(),
            "Q": None if self.Q is None else [list(q) for q in self.Q],
            "policy": self.policy.state_dict(),
        }

    def _load_extra_state(self, state: dict) -> None:
        self.P = [tuple(int(x) for x in p) for p in state["P"]]
        self.P_rank = np.asarray(state["P_rank"], dtype=np.int64)
        self.P_crowd = np.asarray(state["P_crowd"], dtype=np.float64)
        self.Q = None if state["Q"] is None else [tuple(int(x) for x in q) for q in state["Q"]]
        self.policy.load_state_dict(state["policy"])
