"""The TuNAS controller: REINFORCE on a bandit, hierarchical masks, the baseline and the RL learning rate."""

import math

import pytest
import torch

from scarlet.decisions.arch import parse_decision_arch
from scarlet.decisions.space import get_space
from scarlet.tunas.policy import (MovingAverageBaseline, Policy, SpacePolicy, policy_optimizer, reinforce_loss,
                                  rl_delay_steps, rl_learning_rate)
from scarlet.tunas.rewards import reward

ARMS = torch.tensor([0.1, 0.5, 0.9, 0.3])


def _grad(policy, samples, rewards, baseline, entropy_weight=0.0):
    policy.zero_grad()
    reinforce_loss(policy, samples, rewards, baseline, entropy_weight).backward()
    return policy.logits[0].grad.clone()


def test_reinforce_gradient_equals_its_analytic_expectation():
    policy = Policy([4])
    with torch.no_grad():
        policy.logits[0].copy_(torch.tensor([0.3, -0.2, 0.1, 0.5]))
    pi = torch.softmax(policy.logits[0].detach(), 0)
    one = torch.ones(1)
    baseline = 0.37  # any baseline leaves the expectation unchanged
    exact = sum(pi[a] * _grad(policy, [([a], one)], ARMS[a:a + 1], baseline) for a in range(4))
    analytic = -pi * (ARMS - (pi * ARMS).sum())  # d/dlogits of -E[r]
    torch.testing.assert_close(exact, analytic, rtol=1e-6, atol=1e-7)
    # the Monte Carlo estimate of a step with many samples (gradients averaged) approaches it
    g = torch.Generator().manual_seed(0)
    arms = [policy.sample(g)[0] for _ in range(20000)]
    mc = _grad(policy, [([a], one) for a in arms], ARMS[arms], baseline)
    torch.testing.assert_close(mc, analytic, atol=4e-3, rtol=0)


def test_policy_concentrates_on_the_best_arm():
    policy, baseline = Policy([4]), MovingAverageBaseline()
    opt = policy_optimizer(policy, lr=0.05)
    g = torch.Generator().manual_seed(1)
    for _ in range(300):
        arms = [policy.sample(g)[0] for _ in range(4)]
        rewards = ARMS[arms]
        b = baseline.update(float(rewards.mean()))
        opt.zero_grad()
        reinforce_loss(policy, [([a], torch.ones(1)) for a in arms], rewards, b).backward()
        opt.step()
    assert policy.argmax() == [2]
    assert policy.probabilities()[0][2] > 0.9


def test_hierarchical_masking_gives_no_gradient_inside_a_zeroed_layer():
    space = get_space("proxylessnas", 0.25, 2)
    policy = SpacePolicy(space)
    arch = {d.key: d.choices[0] for d in space.decisions}
    arch.update({"b1.1.op": "zero", "b1.1.kernel": 7, "b1.1.expansion": 6, "b1.2.op": "ib"})
    arch = parse_decision_arch(arch, space)
    active = policy.active_mask(arch)
    policy.log_prob(arch.indices(space), active).backward()
    keys = [d.key for d in space.decisions]
    grads = {k: p.grad for k, p in zip(keys, policy.logits)}
    for k in ("b1.1.kernel", "b1.1.expansion"):
        assert torch.count_nonzero(grads[k]) == 0, k
    for k in ("b1.1.op", "b1.2.kernel", "b1.2.expansion", "b0.kernel"):
        assert torch.count_nonzero(grads[k]) > 0, k
    # log-probability at uniform logits: sum of -log(n) over the active decisions only
    expected = -sum(math.log(len(d.choices)) for d, a in zip(space.decisions, active) if a)
    assert float(policy.log_prob(arch.indices(space), active).detach()) == pytest.approx(expected)
    assert int(active.sum()) == len(keys) - 2


def test_baseline_is_the_zero_debiased_moving_average():
    b = MovingAverageBaseline(0.95)
    xs = [0.2, 0.6, 0.1, 0.9, 0.4]
    for t, x in enumerate(xs, start=1):
        value = b.update(x)
        ema = sum((1 - 0.95) * 0.95 ** (t - i) * xs[i - 1] for i in range(1, t + 1))
        assert value == pytest.approx(ema / (1 - 0.95 ** t))
    assert MovingAverageBaseline().update(0.7) == pytest.approx(0.7)  # debiased: no pull towards 0


def test_rl_learning_rate_is_zero_then_rises_tenfold():
    assert rl_delay_steps(27050) == 6762
    assert rl_learning_rate(0, 27050, 0.0048) == 0.0
    assert rl_learning_rate(6761, 27050, 0.0048) == 0.0
    assert rl_learning_rate(6762, 27050, 0.0048) == pytest.approx(0.0048)
    assert rl_learning_rate(27050, 27050, 0.0048) == pytest.approx(0.048)
    mid = 6762 + (27050 - 6762) // 2
    assert rl_learning_rate(mid, 27050, 0.0048) == pytest.approx(0.0048 * 10 ** 0.5)
    assert rl_learning_rate(100, 200, 1.0, 0.5) == pytest.approx(1.0)


def test_rewards():
    assert reward(0.8, 84.0, 84.0) == pytest.approx(0.8)
    assert reward(0.8, 92.4, 84.0) == pytest.approx(0.8 - 0.1 * 0.1)
    assert reward(0.8, 75.6, 84.0) == pytest.approx(0.8 - 0.1 * 0.1)  # below the target costs too
    assert reward(0.8, 168.0, 84.0, -0.07, "mnasnet-soft") == pytest.approx(0.8 * 2 ** -0.07)
    assert reward(0.8, 42.0, 84.0, -0.07, "mnasnet-soft") == pytest.approx(0.8 * 0.5 ** -0.07)
    assert reward(0.8, 42.0, 84.0, -0.07, "mnasnet-hard") == pytest.approx(0.8)
