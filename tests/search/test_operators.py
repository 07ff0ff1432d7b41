"""Sampling, tournament, crossover, hierarchical mutation and the REINFORCE policy."""

import numpy as np
import pytest

from scarlet.search.operators import (CategoricalPolicy, HierarchicalMutation, binary_tournament,
                                      choice_frequencies, rank_rewards, sample_uniform, single_point_crossover)

NC = (7, 7, 3, 1, 13, 7, 7, 7)


def test_uniform_sampling_respects_choices_and_seed():
    rng = np.random.default_rng(0)
    G = np.array([sample_uniform(NC, rng) for _ in range(2000)])
    assert np.all(G >= 0) and np.all(G < np.array(NC))
    assert np.array_equal(G.max(axis=0), np.array(NC) - 1)  # every choice reachable
    again = np.array([sample_uniform(NC, np.random.default_rng(0)) for _ in range(1)])
    assert np.array_equal(again[0], G[0])


def test_tournament_prefers_rank_then_crowding():
    rng = np.random.default_rng(1)
    rank = np.array([0, 1, 0, 2])
    crowd = np.array([0.5, 9.0, np.inf, 9.0])
    winners = binary_tournament(rank, crowd, 5000, rng)
    counts = np.bincount(winners, minlength=4)
    assert counts[3] == 0  # the worst never wins a pair
    assert counts[2] > counts[0] > counts[1] > 0
    # 2 wins every pair it is in: 3 of the 6 pairs, each drawn with probability 1/6
    assert counts[2] / 5000 == pytest.approx(0.5, abs=0.03)


def test_single_point_crossover_joins_head_and_tail():
    rng = np.random.default_rng(2)
    a, b = tuple(range(10)), tuple(range(100, 110))
    cuts = set()
    for _ in range(300):
        child = single_point_crossover(a, b, rng)
        cut = next(i for i, v in enumerate(child) if v >= 100)
        assert child == a[:cut] + b[cut:]
        cuts.add(cut)
    assert cuts == set(range(1, 10))


def mutate_many(mutation, parent, n=3000, seed=3, **kw):
    rng = np.random.default_rng(seed)
    return np.array([mutation(parent, NC, rng, **kw) for _ in range(n)])


def test_mutation_changes_one_gene_with_p_single_else_two_to_four():
    parent = (0, 1, 2, 0, 3, 4, 5, 6)
    children = mutate_many(HierarchicalMutation(), parent)
    changed = (children != np.array(parent)).sum(axis=1)
    assert changed.min() >= 1 and changed.max() <= 4  # a mutated gene always changes
    assert np.mean(changed == 1) == pytest.approx(0.7, abs=0.03)
    assert np.all(children[:, 3] == 0)  # a gene with one choice never mutates
    assert np.all(children < np.array(NC))


def test_mutation_kinds_follow_their_distributions():
    parent = (0,) * 8
    elite_freq = np.zeros((8, 13))
    elite_freq[:, 2] = 5.0  # the elites all use choice 2
    policy = np.zeros((8, 13))
    policy[:, 1] = 1.0  # the policy puts all its mass on choice 1
    roulette = mutate_many(HierarchicalMutation(0, 1, 0, 1, 0), parent, 500, elite_freq=elite_freq)
    assert set(roulette[roulette != 0].tolist()) == {2}
    guided = mutate_many(HierarchicalMutation(0, 0, 1, 1, 0), parent, 500, policy_probs=policy)
    assert set(guided[guided != 0].tolist()) == {1}
    # the elites already agree with the parent at gene 0: roulette falls back to another choice, uniformly
    elite_freq[0] = 0
    elite_freq[0, 0] = 5.0
    only_first = mutate_many(HierarchicalMutation(0, 1, 0, 1, 0), (0,) * 8, 3000, elite_freq=elite_freq)
    first = only_first[only_first[:, 0] != 0, 0]
    assert set(first.tolist()) == set(range(1, 7))
    # mixed: 20 / 65 / 15 with distinct targets; at gene 4 (13 choices) random rarely hits 1 or 2
    mixed = mutate_many(HierarchicalMutation(), (0,) * 8, 6000, seed=4, elite_freq=np.tile(
        np.eye(13)[2] * 3, (8, 1)), policy_probs=np.tile(np.eye(13)[1], (8, 1)))
    gene4 = mixed[mixed[:, 4] != 0, 4]
    share = np.bincount(gene4, minlength=13) / len(gene4)
    assert share[2] == pytest.approx(0.65 + 0.2 / 12, abs=0.04)
    assert share[1] == pytest.approx(0.15 + 0.2 / 12, abs=0.03)


def test_choice_frequencies():
    freq = choice_frequencies([(0, 1), (0, 2), (1, 2)], [2, 3])
    assert freq.tolist() == [[2, 1, 0], [0, 1, 2]]


def test_policy_reinforce_moves_towards_rewarded_choices():
    policy = CategoricalPolicy([3, 3], lr=0.5)
    assert np.allclose(policy.probs(), 1 / 3)
    genomes = [(0, 2), (1, 2), (2, 0)]
    rewards = rank_rewards([0, 0, 1])  # the first two are better
    for _ in range(20):
        policy.update(genomes, rewards)
    p = policy.probs()
    assert p[1, 2] > 0.8 and p[0, 2] < p[0, 0]
    clone = CategoricalPolicy([3, 3])
    clone.load_state_dict(policy.state_dict())
    assert np.array_equal(clone.probs(), p)


def test_policy_masks_genes_with_fewer_choices():
    policy = CategoricalPolicy([2, 4])
    policy.update([(1, 3), (0, 0)], [1.0, -1.0])
    p = policy.probs()
    assert p[0, 2:].sum() == 0 and np.allclose(p.sum(axis=1), 1)


def test_rank_rewards_standardised():
    r = rank_rewards([0, 1, 2, 0])
    assert r.mean() == pytest.approx(0) and r.std() == pytest.approx(1) and r[0] > r[1] > r[2]
    assert np.all(rank_rewards([1, 1]) == 0)
