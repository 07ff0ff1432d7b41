"""Random search: the baseline NSGA-II is compared with, under the same evaluation budget and constraints.

Each step draws ``population`` new genomes uniformly, discards those over a cheap limit before evaluation (as
NSGA-II does), and evaluates the rest in one batch, until ``budget`` genomes have been evaluated (by default
``(generations + 1) x population``, the most NSGA-II evaluates). Genomes under the evaluated limit count
against the budget, as they do in NSGA-II. The answer is the non-dominated set of the feasible genomes.
"""

from __future__ import annotations

from scarlet.search.algorithm import SearchAlgorithm
from scarlet.search.archive import ConstraintsImpossible
from scarlet.search.operators import sample_uniform
from scarlet.search.problem import Genome
from scarlet.search.ranking import non_dominated


class RandomSearch(SearchAlgorithm):
    name = "random"

    @property
    def done(self) -> bool:
        return self.initialized and self.archive.evaluated >= self.config.evaluation_budget

    def initialize(self) -> None:
        pass

    def step(self) -> None:
        g = self.generation + 1
        want = min(self.config.population, self.config.evaluation_budget - self.archive.evaluated)
        batch: list[tuple[Genome, dict]] = []
        seen: set = set()
        draws = 0
        while len(batch) < want and draws < self.config.draws_per_fill:
            genome = sample_uniform(self.problem.num_choices, self.rng)
            draws += 1
            if genome in self.archive.records or genome in seen:
                self.archive.duplicates += 1
                continue
            seen.add(genome)
            values = self.archive.cheap_values_if_ok(genome)
            if values is None:
                self.archive.rejected_cost += 1
                continue
            batch.append((genome, values))
        if not batch:
            raise ConstraintsImpossible(
                f"constraints impossible: no new genome satisfying {self.problem.describe_constraints()} "
                f"in {draws} draws")
        self.archive.assess(batch, g)
        self.generation = g

    def feasible_genomes(self) -> list[Genome]:
        return [g for g in self.archive.records if self.archive.feasible(g)]

    def front_genomes(self) -> list[Genome]:
        feasible = self.feasible_genomes()
        if not feasible:
            return []
        F = self.problem.objective_matrix([self.archive.records[g].values for g in feasible])
        return [feasible[i] for i in non_dominated(F)]

    def population_genomes(self) -> list[Genome]:
        return self.feasible_genomes()

    def result(self):
        if self.done and not self.front_genomes():
            raise ConstraintsImpossible(
                f"constraints impossible: none of the {self.archive.evaluated} genomes evaluated satisfies "
                f"{self.problem.describe_constraints()}")
        return super().result()

