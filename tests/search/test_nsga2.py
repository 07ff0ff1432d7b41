"""Constrained, weighted NSGA-II (SCARLET Algorithm 1) on a problem small enough to enumerate."""

import json
from collections import Counter

import pytest
from search_problems import CountingEvaluator, acc, madds, make_problem, true_front

from scarlet.errors import ScarletError
from scarlet.search import NSGA2, ConstraintsImpossible, SearchConfig

SMALL = SearchConfig(population=12, generations=6, seed=0)


def test_recovers_the_true_constrained_front():
    truth = true_front(madds_max=40.0, acc_min=5.0)
    for seed in range(3):
        result = NSGA2(make_problem(), SearchConfig(population=40, generations=30, seed=seed)).run()
        found = {(ind.values["acc"], ind.values["madds"]) for ind in result.front}
        assert found == truth


def test_cheap_constraint_checked_before_evaluation_and_nothing_evaluated_twice():
    evaluator = CountingEvaluator()
    algo = NSGA2(make_problem(madds_max=30.0, acc_min=6.0, evaluator=evaluator), SMALL)
    result = algo.run()
    assert evaluator.seen, "nothing was evaluated"
    assert max(madds(g) for g in evaluator.seen) <= 30.0  # nothing over the MAdds limit reached the evaluator
    assert max(Counter(evaluator.seen).values()) == 1  # the cache: every genome evaluated once
    assert algo.archive.evaluated == len(evaluator.seen) == result.evaluated
    assert algo.archive.rejected_cost > 0 and algo.archive.rejected_eval > 0  # both constraints did bite
    assert evaluator.calls == algo.archive.evaluator_calls  # batched: a few calls, not one per genome
    assert evaluator.calls < len(evaluator.seen) / 2
    # every member of every population satisfies both constraints
    for g in algo.P:
        assert madds(g) <= 30.0 and acc(g) >= 6.0
    assert len(set(algo.P)) == len(algo.P) == SMALL.population


def test_deterministic_by_seed():
    a = NSGA2(make_problem(with_params=True), SMALL)
    a.run()
    b = NSGA2(make_problem(with_params=True), SMALL)
    b.run()
    assert a.state_dict() == b.state_dict()
    c = NSGA2(make_problem(with_params=True), SearchConfig(population=12, generations=6, seed=1))
    c.run()
    assert c.P != a.P


def roundtrip(state):
    return json.loads(json.dumps(state))


def test_resume_is_exact():
    straight = NSGA2(make_problem(with_params=True), SMALL)
    straight_result = straight.run()

    first = NSGA2(make_problem(with_params=True), SMALL)
    checkpoints = []
    first.run(callback=lambda algo, record: checkpoints.append(roundtrip(algo.state_dict())), until=3)
    assert [c["generation"] for c in checkpoints] == [0, 1, 2, 3]

    evaluator = CountingEvaluator()
    resumed = NSGA2(make_problem(with_params=True, evaluator=evaluator), SMALL)
    resumed.load_state_dict(checkpoints[-1])
    resumed_result = resumed.run()
    assert resumed.state_dict() == straight.state_dict()
    assert resumed_result.picks == straight_result.picks
    assert not set(evaluator.seen) & set(g for g, r in first.archive.records.items())  # nothing re-evaluated

    # a finished run extended with more generations is the same as a longer run
    short = NSGA2(make_problem(with_params=True), SearchConfig(population=12, generations=3, seed=0))
    short.run()
    extended = NSGA2(make_problem(with_params=True), SMALL)
    extended.load_state_dict(roundtrip(short.state_dict()))
    extended.run()
    a, b = extended.state_dict(), straight.state_dict()
    # only the history differs: generation 3 of the short run was recorded before its children were evaluated
    assert a.pop("history")[-1] == b.pop("history")[-1]
    assert a == b


def test_state_of_another_search_is_refused():
    state = roundtrip(NSGA2(make_problem(), SMALL).state_dict())
    with pytest.raises(ScarletError, match="population"):
        NSGA2(make_problem(), SearchConfig(population=10, generations=6)).load_state_dict(state)
    with pytest.raises(ScarletError, match="objectives"):
        NSGA2(make_problem(with_params=True), SMALL).load_state_dict(state)
    with pytest.raises(ScarletError, match="constraints"):
        NSGA2(make_problem(acc_min=6.0), SMALL).load_state_dict(state)
    with pytest.raises(ScarletError, match="not a search state"):
        NSGA2(make_problem(), SMALL).load_state_dict({"P": []})


def test_impossible_constraints_fail_clearly():
    with pytest.raises(ConstraintsImpossible, match="^constraints impossible: only 0 of 12 initial parents"):
        NSGA2(make_problem(madds_max=-1.0), SearchConfig(population=12, max_draws=200)).run()
    evaluator = CountingEvaluator()
    with pytest.raises(ConstraintsImpossible, match="acc >= 100"):
        NSGA2(make_problem(acc_min=100.0, evaluator=evaluator), SearchConfig(population=12, max_draws=50)).run()
    assert len(evaluator.seen) <= 50


def test_picks_are_equispaced_along_the_pick_objective():
    config = SearchConfig(population=40, generations=10, seed=0, k=4, pick_by="madds")
    result = NSGA2(make_problem(), config).run()
    m = [ind.values["madds"] for ind in result.front]
    assert m == sorted(m)
    assert len(result.picks) == 4
    assert result.picks[0] == result.front[0] and result.picks[-1] == result.front[-1]
    positions = [result.front.index(p) for p in result.picks]
    gaps = [b - a for a, b in zip(positions, positions[1:])]
    assert max(gaps) - min(gaps) <= 1


def test_history_per_generation():
    records = []
    result = NSGA2(make_problem(), SMALL).run(callback=lambda algo, r: records.append(r))
    assert records == result.history
    assert [r["generation"] for r in records] == list(range(SMALL.generations + 1))
    evaluated = [r["evaluated"] for r in records]
    assert evaluated == sorted(evaluated) and evaluated[0] >= 2 * SMALL.population
    best_acc = [r["best"]["acc"] for r in records]
    assert best_acc == sorted(best_acc)  # elitism: the best accuracy never drops
    assert all(1 <= r["front_size"] <= SMALL.population for r in records)
