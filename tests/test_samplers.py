import pytest
import torch
import torch.nn.functional as F

from scarlet import Supernet
from scarlet.fair_step import sequential_step
from scarlet.samplers import EFSampler, FairSampler, UniformSampler
from scarlet.space import get_space


@pytest.mark.parametrize("space", ["fairnas", "scarlet-s1", "scarlet-s2"])
def test_fair_sampler_uses_every_choice_once_per_step(space):
    s = FairSampler(space, seed=3)
    m = get_space(space).num_choices
    counts = torch.zeros(19, m, dtype=torch.int64)
    for step in range(1, 26):
        perms = s.permutations()
        assert perms.shape == (19, m)
        for row in perms:
            assert sorted(row.tolist()) == list(range(m))
        for k in range(m):
            counts[torch.arange(19), perms[:, k]] += 1
        assert (counts == step).all()  # strictly equal after every step, not only in expectation


def test_uniform_and_ef_samplers_are_not_strictly_fair():
    for cls, paths in ((UniformSampler, 1), (EFSampler, 13)):
        s = cls("scarlet-s2", seed=0)
        counts = torch.zeros(19, 13, dtype=torch.int64)
        for _ in range(30):
            perms = s.permutations()
            assert perms.shape == (19, paths)
            for k in range(paths):
                counts[torch.arange(19), perms[:, k]] += 1
        assert counts.sum() == 19 * 30 * paths
        assert (counts.max(1).values != counts.min(1).values).any()
    ef = EFSampler("fairnas", seed=1).permutations()
    assert (ef == ef[:, :1]).all()  # one path trained k = m times


def test_sampler_state_round_trip():
    a = FairSampler("scarlet-s1", seed=5)
    a.permutations()
    state = a.state_dict()
    expected = a.permutations()
    b = FairSampler("scarlet-s1", seed=99)
    b.load_state_dict(state)
    assert torch.equal(b.permutations(), expected)
    with pytest.raises(ValueError):
        UniformSampler("scarlet-s1").load_state_dict(state)


def test_sequential_step_accumulates_path_gradients_before_one_update():
    """FairNAS Algorithm 1: w <- w - lr * sum_k grad_k(w), every grad_k taken at the same (old) weights."""
    torch.manual_seed(0)
    net = Supernet(space="scarlet-s1", width=0.25, resolution=16, num_classes=4, in_channels=1).double()
    x, y = torch.randn(4, 1, 16, 16, dtype=torch.float64), torch.randint(4, (4,))
    perms = FairSampler("scarlet-s1", seed=0).permutations()
    # Each path's gradient alone at the initial weights: cleared before each path, nothing updated.
    per_path = []
    for k in range(perms.shape[1]):
        net.zero_grad(set_to_none=True)
        F.cross_entropy(net(x, perms[:, k].tolist()), y).backward()
        per_path.append({n: p.grad.clone() for n, p in net.named_parameters() if p.grad is not None})
    # Strict fairness: every choice's weights get a gradient from exactly one path of the step.
    for layer in range(19):
        for choice in range(perms.shape[1]):
            prefix = f"layers.{layer}.{choice}."
            assert sum(any(n.startswith(prefix) for n in g) for g in per_path) == 1, prefix
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    for p in net.parameters():
        p.grad = torch.full_like(p, 1e3)  # stale gradients the step must clear first
    sequential_step(net, x, y, perms, torch.optim.SGD(net.parameters(), lr=1.0))
    for n, p in net.named_parameters():
        total = sum((g[n] for g in per_path if n in g), torch.zeros_like(p))
        torch.testing.assert_close(p.detach(), before[n] - total, msg=n)
