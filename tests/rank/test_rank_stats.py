"""Rank statistics against hand-computed cases, their defining properties and scipy (when installed)."""

import math

import numpy as np
import pytest

from scarlet.rank.stats import (average_ranks, bootstrap_ci, kendall_tau, spearman_rho, summarise,
                                top_k_overlap)


def test_identical_and_reversed_rankings():
    x = [0.1, 0.5, 0.3, 0.9, 0.7]
    assert kendall_tau(x, x) == pytest.approx(1.0)
    assert spearman_rho(x, x) == pytest.approx(1.0)
    assert kendall_tau(x, [-v for v in x]) == pytest.approx(-1.0)
    assert spearman_rho(x, [-v for v in x]) == pytest.approx(-1.0)


def test_kendall_tau_hand_computed():
    # One swapped pair among 6: 5 concordant, 1 discordant.
    assert kendall_tau([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(4 / 6)
    # Tau-b with ties: 4 concordant, 0 discordant, one pair tied in x, another tied in y: 4 / sqrt(5 * 5).
    assert kendall_tau([1, 2, 2, 3], [1, 2, 3, 3]) == pytest.approx(0.8)


def test_spearman_rho_hand_computed_with_ties():
    assert list(average_ranks([10, 20, 20, 30])) == [1, 2.5, 2.5, 4]
    # ranks y = 1, 2, 3.5, 5, 3.5 -> Pearson of centred ranks = 8 / sqrt(10 * 9.5)
    assert spearman_rho([1, 2, 3, 4, 5], [5, 6, 7, 8, 7]) == pytest.approx(8 / math.sqrt(95))


def test_undefined_on_constant_input():
    assert math.isnan(kendall_tau([1, 1, 1], [1, 2, 3]))
    assert math.isnan(spearman_rho([1, 2, 3], [4, 4, 4]))


def test_against_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(3)
    for _ in range(5):
        x = rng.integers(0, 6, 25).astype(float)  # many ties
        y = x + rng.integers(0, 4, 25)
        assert kendall_tau(x, y) == pytest.approx(stats.kendalltau(x, y).statistic, abs=1e-12)
        assert spearman_rho(x, y) == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)


def test_top_k_overlap():
    truth = [0.9, 0.8, 0.7, 0.6, 0.5]
    assert top_k_overlap(truth, truth, 2) == 1.0
    assert top_k_overlap(truth, [0.1, 0.9, 0.8, 0.2, 0.3], 2) == 0.5  # best two by estimate: indices 1, 2
    assert top_k_overlap(truth, [-v for v in truth], 2) == 0.0
    assert top_k_overlap(truth, truth, 10) == 1.0  # k capped at n


def test_bootstrap_interval_contains_estimate_and_is_deterministic():
    rng = np.random.default_rng(0)
    x = rng.random(30)
    y = x + 0.3 * rng.random(30)
    low, high = bootstrap_ci(kendall_tau, x, y, samples=300, seed=7)
    assert low <= kendall_tau(x, y) <= high
    assert -1 <= low < high <= 1
    assert bootstrap_ci(kendall_tau, x, y, samples=300, seed=7) == (low, high)
    assert bootstrap_ci(kendall_tau, x, y, samples=300, seed=8) != (low, high)


def test_summarise_has_every_statistic_with_interval():
    x = list(range(10))
    s = summarise(x, x, k=3, samples=50)
    assert s["n"] == 10 and s["k"] == 3
    for name in ("kendall_tau", "spearman_rho", "top_k_overlap"):
        assert s[name] == pytest.approx(1.0)
        assert s[name + "_ci"] == pytest.approx([1.0, 1.0])
