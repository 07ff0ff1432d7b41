import itertools
import math

import pytest
import torch
from fpnas_cases import all_indices, tiny_space

from scarlet.fpnas.distribution import ArchDistribution
from scarlet.fpnas.gradient import (arch_coefficients, arch_surrogate, hinge_cost, log_likelihood,
                                    weight_coefficients)

BETA = 0.3


def test_hinge_is_zero_at_or_under_target_and_linear_above():
    torch.testing.assert_close(hinge_cost([0, 50e6, 100e6, 150e6, 300e6], 100e6),
                               torch.tensor([0, 0, 0, 0.5, 2.0], dtype=torch.float64))


def test_coefficients_under_target_are_the_normalised_likelihoods():
    ll = torch.tensor([-3.0, -1.0, -2.0], dtype=torch.float64)
    m = arch_coefficients(ll, hinge_cost([10, 20, 30], 100), BETA)
    torch.testing.assert_close(m, torch.softmax(ll, 0))
    # over target, the cost term subtracts beta in total, shared in proportion to the hinge
    m = arch_coefficients(ll, hinge_cost([100, 150, 300], 100), BETA)
    torch.testing.assert_close(m, torch.softmax(ll, 0) - BETA * torch.tensor([0, 0.5, 2.0]).double() / 2.5)
    assert m.sum().item() == pytest.approx(1 - BETA)


def test_log_likelihood_sum_and_mean_and_weightings():
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    labels = torch.tensor([0, 1, 0])
    per_image = torch.log_softmax(logits.double(), 1)[torch.arange(3), labels]
    assert log_likelihood(logits, labels, "sum").item() == pytest.approx(per_image.sum().item())
    assert log_likelihood(logits, labels, "mean").item() == pytest.approx(per_image.mean().item())
    ll = torch.tensor([0.0, math.log(3.0)], dtype=torch.float64)
    torch.testing.assert_close(weight_coefficients(ll, "importance"), torch.tensor([0.25, 0.75]).double())
    torch.testing.assert_close(weight_coefficients(ll, "average"), torch.tensor([0.5, 0.5]).double())


def exact_gradient(dist, archs, log_lik, costs):
    """grad of -log E[P(y|A)] + beta log E[C(A)], P(A) built here from the logits independently of the code."""
    logits = [t.detach().clone().requires_grad_(True) for t in dist.logits]
    probs = torch.ones(len(archs), dtype=torch.float64)
    for i, t in enumerate(logits):
        probs = probs * torch.softmax(t, 0)[archs[:, i]]
    objective = -torch.log((probs * log_lik.exp()).sum()) + BETA * torch.log((probs * costs).sum())
    return torch.cat(torch.autograd.grad(objective, logits))


def per_arch_scores(dist, archs):
    """grad(-log P(A|alpha)) of each architecture, through the code's log_prob and the Eq. 7 surrogate."""
    rows = []
    for a in range(len(archs)):
        arch_surrogate(dist.log_prob(archs[a:a + 1]), torch.ones(1, dtype=torch.float64)).backward()
        rows.append(torch.cat([t.grad for t in dist.parameters()]))
        for t in dist.parameters():
            t.grad = None
    return torch.stack(rows)


def all_rows(archs, samples):
    """The row of ``archs`` each sample equals."""
    return (samples[:, None, :] == archs[None]).all(-1).double().argmax(1)


def estimator_expectation(dist, archs, log_lik, costs, k):
    """E over K i.i.d. samples of Eq. 7's estimate, exactly: a sum over the multisets of K architectures."""
    per_arch = per_arch_scores(dist, archs)
    p = dist.log_prob(archs).exp().detach()
    total = torch.zeros(per_arch.shape[1], dtype=torch.float64)
    for multiset in itertools.combinations_with_replacement(range(len(archs)), k):
        counts = torch.bincount(torch.tensor(multiset), minlength=len(archs)).double()
        prob = math.factorial(k) / torch.exp(torch.lgamma(counts + 1)).prod() * (p ** counts).prod()
        chosen = torch.tensor(multiset)
        m = arch_coefficients(log_lik[chosen], costs[chosen], BETA)
        total += prob * (m[:, None] * per_arch[chosen]).sum(0)
    return total


def test_eq7_estimator_expectation_converges_to_the_exact_gradient():
    space = tiny_space({"g1.a": 2, "g2.b": 3})  # 6 architectures
    g = torch.Generator().manual_seed(0)
    dist = ArchDistribution(space, "factorized", [(0,), (1,)],
                            [torch.randn(2, generator=g).double(), torch.randn(3, generator=g).double()])
    archs = all_indices(space)
    log_lik = torch.tensor([-0.5, -4.0, -2.0, -6.0, -1.0, -3.0], dtype=torch.float64)
    costs = hinge_cost([90, 130, 100, 180, 110, 95], 100)  # two within target, four over
    exact = exact_gradient(dist, archs, log_lik, costs)
    assert exact.abs().max() > 0.2, exact
    errors = {}
    for k in (1, 2, 4, 8):
        expectation = estimator_expectation(dist, archs, log_lik, costs, k)
        errors[k] = (expectation - exact).norm().item() / exact.norm().item()
    # the self-normalised ratios are biased at small K, by O(1/K): halving with each doubling of K
    assert all(errors[k] < 2.5 / k for k in errors), errors
    assert errors[4] < 0.65 * errors[2] and errors[8] < 0.65 * errors[4], errors
    # and at large K a single estimate is close to the exact gradient
    table = per_arch_scores(dist, archs)
    g = torch.Generator().manual_seed(2)
    large = []
    for _ in range(8):
        chosen = all_rows(archs, dist.sample(4096, g))
        large.append((arch_coefficients(log_lik[chosen], costs[chosen], BETA)[:, None] * table[chosen]).sum(0))
    assert (torch.stack(large).mean(0) - exact).norm().item() < 0.02 * exact.norm().item()
    # one sample within target: m = 1 whatever the likelihood, and the score function has zero mean
    zero_cost = torch.zeros(len(archs), dtype=torch.float64)
    assert estimator_expectation(dist, archs, log_lik, zero_cost, 1).abs().max().item() < 1e-12
    assert exact_gradient(dist, archs, log_lik, zero_cost + 1).abs().max().item() > 0.1


def test_surrogate_backward_is_the_eq7_sum():
    space = tiny_space({"g1.a": 2, "g2.b": 3})
    dist = ArchDistribution.uniform(space).to_joint()
    samples = dist.sample(5, torch.Generator().manual_seed(1))
    m = torch.tensor([0.5, -0.1, 0.2, 0.3, -0.2], dtype=torch.float64)
    arch_surrogate(dist.log_prob(samples), m).backward()
    expected = sum(m[k] * torch.cat(torch.autograd.grad(-dist.log_prob(samples[k:k + 1]).sum(), dist.parameters()))
                   for k in range(5))
    torch.testing.assert_close(torch.cat([t.grad for t in dist.parameters()]), expected)


def test_alpha_updates_with_the_hinge_move_the_distribution_under_target():
    """Equal likelihoods (and beta 1 for a short test): Eq. 7 is driven by the cost alone, and Adam on it lowers the
    MAdds of the samples (fails with the cost term's sign flipped)."""
    from scarlet.decisions.cost import DecisionCostModel
    from scarlet.decisions.space import get_space
    from scarlet.fpnas.sampling import adaptive_k

    space = get_space("fbnetv2-f", 0.25, 1)
    cost = DecisionCostModel(space, 32, 10)
    dist = ArchDistribution.uniform(space)
    adam = torch.optim.Adam(dist.parameters(), lr=0.2)
    g = torch.Generator().manual_seed(0)

    def sample_madds(n):
        return torch.tensor([cost.madds(dist.arch(r)) for r in dist.sample(n, g)], dtype=torch.float64)

    before = sample_madds(32)
    target = before.median().item()
    for _ in range(12):
        idx = dist.sample(8, g)
        costs = hinge_cost([cost.madds(dist.arch(r)) for r in idx], target)
        m = arch_coefficients(torch.zeros(8, dtype=torch.float64), costs, 1.0)
        adam.zero_grad()
        arch_surrogate(dist.log_prob(idx), m).backward()
        adam.step()
    after = sample_madds(32)
    assert after.mean() < 0.7 * before.mean() and (after <= target).double().mean() > 0.9, (before, after)
    assert adaptive_k(dist.entropy().item(), 0.25) < adaptive_k(math.log(space.cardinality), 0.25)
