"""What a search optimises: genome layout, objectives, constraints, and the two ways of measuring a genome.

A problem measures a genome in two ways of very different cost:

- ``cost(genome) -> {name: value}``: cheap (for architectures: MAdds and parameters from lookup tables);
- ``evaluate([genome, ...]) -> [value, ...]``: expensive and batched (for architectures: the supernet's
  accuracy on a validation split); the value is named ``eval_name``.

Objectives and constraints refer to these values by name. A constraint on a cheap value is checked before the
genome is ever passed to ``evaluate``; a constraint on ``eval_name`` after.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

import numpy as np

Genome = tuple[int, ...]


@dataclass(frozen=True)
class Objective:
    """One objective: a value name, whether it is minimised or maximised, and its crowding weight."""

    name: str
    sense: str = "min"
    weight: float = 1.0

    def __post_init__(self):
        if self.sense not in ("min", "max"):
            raise ValueError(f"objective {self.name!r}: sense must be 'min' or 'max', got {self.sense!r}")
        if not (self.weight >= 0 and np.isfinite(self.weight)):
            raise ValueError(f"objective {self.name!r}: weight must be a non-negative number")

    @property
    def sign(self) -> float:
        """Factor that turns the value into a minimised quantity."""
        return 1.0 if self.sense == "min" else -1.0


@dataclass(frozen=True)
class Constraint:
    """``minimum <= value <= maximum`` on a named value (either bound may be None). Bounds are inclusive."""

    name: str
    maximum: float | None = None
    minimum: float | None = None

    def satisfied(self, value: float) -> bool:
        if self.maximum is not None and not value <= self.maximum:
            return False
        if self.minimum is not None and not value >= self.minimum:
            return False
        return True

    def describe(self) -> str:
        parts = []
        if self.minimum is not None:
            parts.append(f"{self.name} >= {self.minimum:g}")
        if self.maximum is not None:
            parts.append(f"{self.name} <= {self.maximum:g}")
        return " and ".join(parts) or f"{self.name} unconstrained"


@dataclass
class Problem:
    """A search problem over integer genomes (see the module docstring)."""

    num_choices: Sequence[int]
    objectives: Sequence[Objective]
    evaluate: Callable[[list[Genome]], Sequence[float]]
    cost: Callable[[Genome], Mapping[str, float]] | None = None
    constraints: Sequence[Constraint] = field(default_factory=tuple)
    eval_name: str = "acc"

    def __post_init__(self):
        self.num_choices = tuple(int(c) for c in self.num_choices)
        if not self.num_choices or min(self.num_choices) < 1:
            raise ValueError("num_choices must be a non-empty list of positive ints")
        self.objectives = tuple(self.objectives)
        self.constraints = tuple(self.constraints)
        if not self.objectives:
            raise ValueError("a problem needs at least one objective")
        names = [o.name for o in self.objectives]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate objective names: {names}")
        if sum(o.weight for o in self.objectives) <= 0:
            raise ValueError("objective weights must not all be zero")

    @property
    def cheap_constraints(self) -> tuple[Constraint, ...]:
        return tuple(c for c in self.constraints if c.name != self.eval_name)

    @property
    def weights(self) -> np.ndarray:
        return np.array([o.weight for o in self.objectives], dtype=np.float64)

    def cheap_values(self, genome: Genome) -> dict[str, float]:
        if self.cost is None:
            return {}
        return {k: float(v) for k, v in self.cost(genome).items()}

    def objective_matrix(self, values: Sequence[Mapping[str, float]]) -> np.ndarray:
        """``(n, n_objectives)`` array of minimised objectives (maximised ones negated)."""
        F = np.empty((len(values), len(self.objectives)))
        for i, v in enumerate(values):
            for j, o in enumerate(self.objectives):
                F[i, j] = o.sign * v[o.name]
        return F

    def describe_constraints(self) -> str:
        return ", ".join(c.describe() for c in self.constraints) or "no constraints"


def parse_objectives(text: str, weights: Sequence[float] | None = None) -> tuple[Objective, ...]:
    """``"acc:max,madds:min,params:max"`` (and optional weights) to objectives; ValueError on bad input."""
    objectives = []
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError("no objectives given")
    if weights is not None and len(weights) != len(items):
        raise ValueError(f"{len(weights)} weights for {len(items)} objectives")
    for i, item in enumerate(items):
        name, _, sense = item.partition(":")
        sense = sense.strip() or "min"
        if not name.strip():
            raise ValueError(f"bad objective {item!r} (expected NAME:min or NAME:max)")
        w = 1.0 if weights is None else float(weights[i])
        objectives.append(Objective(name.strip(), sense, w))
    return tuple(objectives)
