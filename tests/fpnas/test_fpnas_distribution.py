import math

import pytest
import torch
from fpnas_cases import TWO_UNITS, all_indices, tiny_space

from scarlet.decisions.space import get_space
from scarlet.errors import ScarletError
from scarlet.fpnas.distribution import ArchDistribution, joint_units
from scarlet.fpnas.sampling import adaptive_k, num_samples


def random_factorized(space, seed=0, scale=1.5):
    g = torch.Generator().manual_seed(seed)
    dist = ArchDistribution.uniform(space)
    return ArchDistribution(space, "factorized", dist.factors,
                            [torch.randn(t.shape, generator=g, dtype=torch.float64) * scale for t in dist.logits])


def test_uniform_entropy_is_log_cardinality_and_k_matches_the_paper():
    for name in ("fbnetv2-f", "fbnetv2-f-fine", "fbnetv2-f++"):
        space = get_space(name)
        for kind in ("factorized", "joint"):
            h = ArchDistribution.uniform(space, kind).entropy().item()
            assert h == pytest.approx(math.log(space.cardinality), rel=1e-12)
    # The paper: lambda = 1/4 draws 14 samples at the start on FBNetV2-F (6e25 architectures, nats).
    assert adaptive_k(math.log(6e25), 0.25) == 14
    assert adaptive_k(math.log(6e25), 0.25) != math.floor(math.log2(6e25) / 4)


def test_entropy_of_a_known_distribution():
    space = tiny_space({"g1.a": 2, "g2.b": 3})
    p1, p2 = torch.tensor([0.25, 0.75], dtype=torch.float64), torch.tensor([0.5, 0.25, 0.25], dtype=torch.float64)
    dist = ArchDistribution(space, "factorized", [(0,), (1,)], [p1.log(), p2.log()])
    expected = -(0.25 * math.log(0.25) + 0.75 * math.log(0.75)) + (0.5 * math.log(2) + 2 * 0.25 * math.log(4))
    assert dist.entropy().item() == pytest.approx(expected, rel=1e-12)
    # entropy over the enumerated architectures equals the sum of the factors' entropies
    lp = dist.log_prob(all_indices(space))
    assert (-(lp.exp() * lp).sum()).item() == pytest.approx(expected, rel=1e-12)


def test_k_floor_minimum_one_and_fixed():
    assert adaptive_k(7.99, 0.25) == 1
    assert adaptive_k(8.0, 0.25) == 2
    assert adaptive_k(0.0, 0.25) == 1
    assert adaptive_k(59.0, 0.5) == 29
    assert num_samples(59.0, 0.25, fixed_k=3) == 3
    assert num_samples(59.0, 0.25) == 14
    with pytest.raises(ScarletError):
        num_samples(59.0, 0.25, fixed_k=0)


def test_joint_units_group_decisions_by_their_block_group():
    space = tiny_space(TWO_UNITS)
    assert joint_units(space) == [(0, 1), (2, 3)]
    fine = get_space("fbnetv2-f-fine")
    g3 = [fine.decisions[i].key for i in joint_units(fine)[2]]
    assert g3 == [d.key for d in fine.decisions if d.key.startswith("g3.")] and "g3.1.kernel" in g3


def test_factorized_to_joint_keeps_every_architecture_probability():
    space = tiny_space(TWO_UNITS)
    fd = random_factorized(space)
    jd = fd.to_joint()
    assert jd.kind == "joint" and [t.numel() for t in jd.logits] == [6, 4]
    archs = all_indices(space)
    p_fd, p_jd = fd.log_prob(archs).exp(), jd.log_prob(archs).exp()
    assert p_fd.sum().item() == pytest.approx(1.0, abs=1e-12)
    torch.testing.assert_close(p_jd, p_fd, rtol=1e-12, atol=1e-15)
    assert jd.entropy().item() == pytest.approx(fd.entropy().item(), rel=1e-12)
    assert torch.equal(jd.mode(), fd.mode())


def test_mode_is_the_most_probable_architecture():
    space = tiny_space(TWO_UNITS)
    for dist in (random_factorized(space, 1), random_factorized(space, 2).to_joint()):
        archs = all_indices(space)
        assert torch.equal(dist.mode(), archs[dist.log_prob(archs).argmax()])


def test_samples_follow_the_distribution():
    space = tiny_space(TWO_UNITS)
    archs = all_indices(space)
    for dist in (random_factorized(space, 3, 0.7), random_factorized(space, 4, 0.7).to_joint()):
        draws = dist.sample(20000, torch.Generator().manual_seed(0))
        match = (draws[:, None, :] == archs[None]).all(-1)
        assert bool((match.sum(1) == 1).all())
        freq = match.double().mean(0)
        p = dist.log_prob(archs).exp()
        assert (freq - p).abs().max().item() < 4 * math.sqrt(0.25 / 20000)


def test_state_round_trip_and_a_foreign_state_is_refused():
    space = tiny_space(TWO_UNITS)
    dist = random_factorized(space).to_joint()
    back = ArchDistribution.from_state(space, dist.state_dict(), "x")
    assert back.kind == "joint" and all(torch.equal(a, b) for a, b in zip(back.logits, dist.logits))
    other = tiny_space({"g1.a": 2, "g2.b": 3})
    with pytest.raises(ScarletError, match="x: the architecture distribution"):
        ArchDistribution.from_state(other, dist.state_dict(), "x")
