"""A small synthetic search problem whose whole space (4^6 genomes) can be enumerated."""

import itertools

import numpy as np

from scarlet.search import Constraint, Objective, Problem
from scarlet.search.ranking import non_dominated

NUM_CHOICES = (4,) * 6
MADDS_WEIGHTS = np.array([3, 1, 4, 1, 5, 9])
ACC_WEIGHTS = np.array([2, 1, 3, 2, 2, 1])


def madds(genome) -> float:
    return float((np.asarray(genome) * MADDS_WEIGHTS).sum())


def params(genome) -> float:
    return float((np.asarray(genome) ** 2).sum())


def acc(genome) -> float:
    return float((np.sqrt(np.asarray(genome)) * ACC_WEIGHTS).sum())


class CountingEvaluator:
    """The expensive evaluator, recording every genome it is given and every call."""

    def __init__(self):
        self.seen = []
        self.calls = 0

    def __call__(self, genomes):
        self.calls += 1
        self.seen.extend(genomes)
        return [acc(g) for g in genomes]


def make_problem(madds_max=40.0, acc_min=5.0, with_params=False, evaluator=None):
    objectives = [Objective("acc", "max", 0.4), Objective("madds", "min", 0.4)]
    if with_params:
        objectives.append(Objective("params", "max", 0.2))
    constraints = []
    if madds_max is not None:
        constraints.append(Constraint("madds", maximum=madds_max))
    if acc_min is not None:
        constraints.append(Constraint("acc", minimum=acc_min))
    return Problem(NUM_CHOICES, objectives, evaluator or CountingEvaluator(),
                   cost=lambda g: {"madds": madds(g), "params": params(g)}, constraints=constraints)


def true_front(madds_max=40.0, acc_min=5.0):
    """The constrained Pareto front of (max acc, min madds), as a set of (acc, madds), by enumeration."""
    feasible = [g for g in itertools.product(*(range(c) for c in NUM_CHOICES))
                if (madds_max is None or madds(g) <= madds_max) and (acc_min is None or acc(g) >= acc_min)]
    F = np.array([[-acc(g), madds(g)] for g in feasible])
    return {(acc(feasible[i]), madds(feasible[i])) for i in non_dominated(F)}
