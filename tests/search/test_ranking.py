"""Non-dominated sorting and crowding distance: the fast versions, the loop references and pymoo agree."""

import numpy as np
import pytest

from scarlet.search.ranking import (crowding_distance, dominance_matrix, non_dominated, non_dominated_sort,
                                    non_dominated_sort_plain, survival_order, weighted_crowding_distance)

SHAPES = [(1, 2), (2, 3), (7, 2), (60, 2), (120, 3), (90, 4)]


def point_sets(seed=0):
    rng = np.random.default_rng(seed)
    for n, m in SHAPES:
        yield rng.random((n, m))
        yield rng.integers(0, 4, size=(n, m)).astype(float)  # many ties and duplicates


def as_sets(fronts):
    return [sorted(int(i) for i in f) for f in fronts]


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_sort_equals_loop_reference(seed):
    for F in point_sets(seed):
        fast, rank = non_dominated_sort(F)
        plain, rank_plain = non_dominated_sort_plain(F)
        assert as_sets(fast) == as_sets(plain)
        assert np.array_equal(rank, rank_plain)
        for r, front in enumerate(fast):
            assert np.all(rank[front] == r)


def test_sort_matches_pymoo():
    pytest.importorskip("pymoo")
    from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

    for F in point_sets(2):
        ours, _ = non_dominated_sort(F)
        theirs = NonDominatedSorting().do(F)
        assert as_sets(ours) == as_sets(theirs)


def test_constrained_domination_matches_pymoo_and_reference():
    pytest.importorskip("pymoo")
    from pymoo.util.dominator import Dominator

    rng = np.random.default_rng(3)
    for n, m in [(10, 2), (50, 3)]:
        F = rng.random((n, m))
        cv = np.where(rng.random(n) < 0.4, rng.random(n) + 0.01, 0.0)  # distinct violations among the infeasible
        M = Dominator.calc_domination_matrix_loop(F, cv[:, None])
        assert np.array_equal(dominance_matrix(F, cv), M == 1)
        fast, rank = non_dominated_sort(F, cv)
        plain, rank_plain = non_dominated_sort_plain(F, cv)
        assert as_sets(fast) == as_sets(plain)
        assert rank[cv == 0].max() < rank[cv > 0].min()  # every feasible point ranks above every infeasible one


def test_first_front_in_chunks():
    for F in point_sets(4):
        fronts, _ = non_dominated_sort(F)
        assert np.array_equal(non_dominated(F), fronts[0])
        assert np.array_equal(non_dominated(F, chunk_elements=1), fronts[0])


def test_crowding_matches_pymoo():
    pytest.importorskip("pymoo")
    from pymoo.operators.survival.rank_and_crowding.metrics import calc_crowding_distance

    for F in point_sets(5):
        if len(F) < 3:
            assert np.all(np.isinf(crowding_distance(F)))
            continue
        ours, theirs = crowding_distance(F), calc_crowding_distance(F)
        assert np.array_equal(np.isinf(ours), np.isinf(theirs))
        finite = np.isfinite(ours)
        np.testing.assert_allclose(ours[finite], theirs[finite], rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("w", [1.0, 0.2, 1 / 3, 7.5])
def test_weighted_crowding_with_equal_weights_is_the_plain_one(w):
    for F in point_sets(6):
        assert np.array_equal(weighted_crowding_distance(F, [w] * F.shape[1]), crowding_distance(F))


def test_weighted_crowding_by_hand():
    # one inner point; spans 4 and 10; gaps 2 and 6
    F = np.array([[0.0, 10.0], [1.0, 4.0], [4.0, 0.0]])
    cd = weighted_crowding_distance(F, [0.4, 0.2])
    assert np.isinf(cd[0]) and np.isinf(cd[2])
    assert cd[1] == pytest.approx((1.0 * 4 / 4 + 0.5 * 10 / 10) / 2)
    # only the ratios matter
    assert np.array_equal(cd, weighted_crowding_distance(F, [2.0, 1.0]))
    # a zero weight removes the objective, extremes included
    F3 = np.array([[0.0, 5.0], [1.0, 1.0], [2.0, 0.0], [3.0, 9.0]])
    cd0 = weighted_crowding_distance(F3, [1.0, 0.0])
    assert np.isinf(cd0[[0, 3]]).all() and np.isfinite(cd0[[1, 2]]).all()


def test_weights_change_which_point_survives():
    # a front of 5, survival keeps 4: along the first objective point 1 is the most crowded, along the second 3
    F = np.array([[0.0, 8.0], [1.0, 7.9], [2.0, 3.0], [6.0, 2.9], [8.0, 0.0]])
    by_first, _, _ = survival_order(F, 4, weights=[1.0, 0.0])
    by_second, _, _ = survival_order(F, 4, weights=[0.0, 1.0])
    assert set(by_first.tolist()) ^ set(by_second.tolist()) == {1, 3}


def test_survival_takes_whole_fronts_then_crowding():
    rng = np.random.default_rng(7)
    F = rng.random((40, 3))
    fronts, rank = non_dominated_sort(F)
    idx, rank_all, crowd = survival_order(F, 20, weights=[0.4, 0.4, 0.2])
    assert len(idx) == len(set(idx.tolist())) == 20
    assert np.array_equal(rank_all, rank)
    last = rank[idx].max()
    assert all(set(f.tolist()) <= set(idx.tolist()) for f in fronts[:last])
    kept_last = [i for i in idx if rank[i] == last]
    dropped_last = [i for i in fronts[last] if i not in idx]
    if dropped_last:
        assert min(crowd[kept_last]) >= max(crowd[dropped_last])
