"""Random search: same budget and constraints as NSGA-II, answer = non-dominated set of the feasible genomes."""

import json
from collections import Counter

import numpy as np
import pytest
from search_problems import CountingEvaluator, acc, madds, make_problem

from scarlet.search import NSGA2, ConstraintsImpossible, RandomSearch, SearchConfig
from scarlet.search.ranking import dominates

CONFIG = SearchConfig(population=12, generations=6, seed=0)


def test_budget_constraints_and_front():
    evaluator = CountingEvaluator()
    algo = RandomSearch(make_problem(madds_max=30.0, acc_min=6.0, evaluator=evaluator), CONFIG)
    result = algo.run()
    assert result.evaluated == len(evaluator.seen) == CONFIG.evaluation_budget == 7 * 12
    assert max(madds(g) for g in evaluator.seen) <= 30.0
    assert max(Counter(evaluator.seen).values()) == 1
    feasible = [g for g in evaluator.seen if acc(g) >= 6.0]
    points = {g: np.array([-acc(g), madds(g)]) for g in feasible}
    front = [ind.genome for ind in result.front]
    assert front and set(front) <= set(feasible)
    for g in feasible:  # the answer is exactly the non-dominated feasible set
        dominated = any(dominates(points[h], points[g]) for h in feasible)
        assert (g in front) == (not dominated)


def test_same_budget_as_nsga2_by_default():
    nsga = NSGA2(make_problem(acc_min=None), CONFIG).run()
    rand = RandomSearch(make_problem(acc_min=None), CONFIG).run()
    assert rand.evaluated == CONFIG.evaluation_budget >= nsga.evaluated


def test_deterministic_and_resumable():
    straight = RandomSearch(make_problem(), CONFIG)
    straight.run()
    first = RandomSearch(make_problem(), CONFIG)
    first.run(until=3)
    resumed = RandomSearch(make_problem(), CONFIG)
    resumed.load_state_dict(json.loads(json.dumps(first.state_dict())))
    resumed.run()
    assert resumed.state_dict() == straight.state_dict()


def test_no_feasible_genome_is_an_error():
    with pytest.raises(ConstraintsImpossible, match="^constraints impossible"):
        RandomSearch(make_problem(madds_max=-1.0), SearchConfig(population=5, max_draws=100)).run()
    with pytest.raises(ConstraintsImpossible, match="none of the 35 genomes"):
        RandomSearch(make_problem(acc_min=100.0), SearchConfig(population=5, generations=6)).run()
