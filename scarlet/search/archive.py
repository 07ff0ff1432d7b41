"""Every genome a search has evaluated, and the constraint check in cost order.

The archive is the only place that calls the problem's expensive ``evaluate``. It guarantees:

- a genome that violates a cheap constraint (e.g. MAdds over the limit) is never passed to ``evaluate``;
- no genome is evaluated twice (results are cached by genome);
- genomes are evaluated in batches (one ``evaluate`` call per batch of candidates), in proposal order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

from scarlet.errors import ScarletError
from scarlet.search.problem import Genome, Problem


class ConstraintsImpossible(ScarletError):
    """No (or too few) genomes satisfying the constraints were found within the allowed number of draws."""


@dataclass
class Record:
    """What is known of an evaluated genome: its cheap values and the evaluated one, and when it was evaluated."""

    values: dict[str, float]
    generation: int


class Archive:
    def __init__(self, problem: Problem):
        self.problem = problem
        self.records: dict[Genome, Record] = {}
        self.rejected_cost = 0  # draws that violated a cheap constraint (never evaluated)
        self.rejected_eval = 0  # evaluated (or cached) genomes that violated a constraint on the evaluated value
        self.duplicates = 0  # draws already in the population being filled
        self.evaluator_calls = 0

    @property
    def evaluated(self) -> int:
        """Number of distinct genomes passed to the evaluator so far."""
        return len(self.records)

    def feasible(self, genome: Genome) -> bool:
        values = self.records[genome].values
        return all(c.satisfied(values[c.name]) for c in self.problem.constraints)

    def cheap_values_if_ok(self, genome: Genome) -> dict[str, float] | None:
        """The genome's cheap values, or None when a cheap constraint is violated."""
        record = self.records.get(genome)
        values = dict(record.values) if record is not None else self.problem.cheap_values(genome)
        for c in self.problem.cheap_constraints:
            if c.name not in values:
                raise ScarletError(f"constraint on {c.name!r}, but the cost function gives only {sorted(values)}")
            if not c.satisfied(values[c.name]):
                return None
        return values

    def assess(self, candidates: list[tuple[Genome, dict[str, float]]], generation: int) -> list[bool]:
        """Feasibility of cheap-feasible candidates ``(genome, cheap values)``; unseen ones are evaluated.

        The genomes not yet in the archive go to the evaluator in one call, in the order given.
        """
        fresh = [(g, v) for g, v in candidates if g not in self.records]
        if fresh:
            genomes = [g for g, _ in fresh]
            results = list(self.problem.evaluate(genomes))
            self.evaluator_calls += 1
            if len(results) != len(genomes):
                raise ScarletError(f"the evaluator returned {len(results)} values for {len(genomes)} genomes")
            name = self.problem.eval_name
            for (g, v), r in zip(fresh, results):
                r = float(r)
                if not math.isfinite(r):
                    raise ScarletError(f"the evaluator returned {name} = {r} for {list(g)}")
                self.records[g] = Record(values={**v, name: r}, generation=generation)
        ok = [self.feasible(g) for g, _ in candidates]
        self.rejected_eval += ok.count(False)
        return ok

    def fill(self, n: int, propose: Callable[[], Genome], taken: set, generation: int, max_draws: int,
             what: str = "individuals") -> list[Genome]:
        """Draw from ``propose`` until ``n`` new feasible genomes not in ``taken`` are found (added to ``taken``).

        Each round proposes as many cheap-feasible candidates as are still missing and evaluates them in one
        batch, so no evaluation is wasted. Raises :class:`ConstraintsImpossible` after ``max_draws`` draws.
        """
        found: list[Genome] = []
        draws = rejected_cost = rejected_eval = duplicates = 0
        while len(found) < n:
            if draws >= max_draws:
                raise ConstraintsImpossible(
                    f"constraints impossible: only {len(found)} of {n} {what} satisfying "
                    f"{self.problem.describe_constraints()} found in {draws} draws ({rejected_cost} rejected by "
                    f"the cost limits, {rejected_eval} by the evaluated limit, {duplicates} duplicates)")
            batch: list[tuple[Genome, dict[str, float]]] = []
            in_batch: set = set()
            while len(batch) < n - len(found) and draws < max_draws:
                genome = tuple(int(x) for x in propose())
                draws += 1
                if genome in taken or genome in in_batch:
                    duplicates += 1
                    continue
                in_batch.add(genome)
                values = self.cheap_values_if_ok(genome)
                if values is None:
                    rejected_cost += 1
                    continue
                batch.append((genome, values))
            for (genome, _), ok in zip(batch, self.assess(batch, generation)):
                if ok:
                    found.append(genome)
                    taken.add(genome)
                else:
                    rejected_eval += 1
        self.rejected_cost += rejected_cost
        self.duplicates += duplicates
        return found

    def state_dict(self) -> dict:
        return {
            "records": [[list(g), r.values, r.generation] for g, r in self.records.items()],
            "rejected_cost": self.rejected_cost,
            "rejected_eval": self.rejected_eval,
            "duplicates": self.duplicates,
            "evaluator_calls": self.evaluator_calls,
        }

    def load_state_dict(self, state: dict) -> None:
        self.records = {tuple(int(x) for x in g): Record(values={k: float(x) for k, x in v.items()},
                                                         generation=int(gen))
                        for g, v, gen in state["records"]}
        self.rejected_cost = int(state["rejected_cost"])
        self.rejected_eval = int(state["rejected_eval"])
        self.duplicates = int(state["duplicates"])
        self.evaluator_calls = int(state["evaluator_calls"])
