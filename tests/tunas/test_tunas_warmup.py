"""Filter and op warmup: linear schedules, per-decision coin flips, and the branch-averaging forward."""

from dataclasses import replace

import pytest
import torch

from scarlet.decisions import ops
from scarlet.decisions.arch import parse_decision_arch, random_decision_arch
from scarlet.decisions.concrete import make_divisible, resolve
from scarlet.decisions.space import get_space
from scarlet.decisions.supernet import DecisionSupernet
from scarlet.tunas.warmup import (WarmSample, apply_warmup, decision_kinds, mixed_forward, mixed_layer_forward,
                                  warmup_probability)


@pytest.fixture(scope="module")
def v3():
    space = get_space("mobilenetv3-like", 0.25, 2)
    torch.manual_seed(0)
    model = DecisionSupernet(space, num_classes=5).double()
    return space, model


def test_warmup_probability_falls_linearly_to_zero():
    assert [warmup_probability(t, 100) for t in (0, 25, 50, 99, 100, 500)] == pytest.approx([1, 0.75, 0.5, 0.01, 0, 0])
    assert warmup_probability(0, 0) == 0.0


def test_decision_kinds_of_a_tunas_space():
    kinds = decision_kinds(get_space("mobilenetv3-like", 0.25, 2))
    assert kinds["b1.filters"] == kinds["b2.1.expansion"] == kinds["head2.filters"] == "filters"
    assert kinds["stem.kernel"] == kinds["b2.1.kernel"] == kinds["b2.1.se"] == kinds["b2.1.op"] == "op"


def test_coin_flips_are_per_decision_with_the_scheduled_probability():
    space = get_space("proxylessnas-enlarged", 0.25, 2)
    kinds = decision_kinds(space)
    filters = [i for i, d in enumerate(space.decisions) if kinds[d.key] == "filters"]
    largest = {i: max(range(len(space.decisions[i].choices)), key=lambda j: space.decisions[i].choices[j])
               for i in filters}
    g = torch.Generator().manual_seed(0)
    replaced, averaged, mixed = 0, 0, 0
    n = 400
    smallest = [0] * len(space.decisions)  # every filter choice starts at its smallest value
    for _ in range(n):
        out, avg = apply_warmup(space, smallest, 0.3, 0.6, g)
        hits = [out[i] == largest[i] for i in filters]
        replaced += sum(hits)
        mixed += 0 < sum(hits) < len(hits)
        averaged += len(avg)
        assert all(kinds[k] == "op" for k in avg)
        assert all(out[i] == 0 for i in range(len(out)) if i not in filters)
    n_ops = sum(v == "op" for v in kinds.values())
    assert replaced / (n * len(filters)) == pytest.approx(0.3, abs=0.03)
    assert averaged / (n * n_ops) == pytest.approx(0.6, abs=0.03)
    assert mixed > 0.9 * n  # independent coins, not one coin for the whole architecture
    assert apply_warmup(space, smallest, 0.0, 0.0, g) == (smallest, frozenset())


def test_mixed_forward_without_averaging_is_the_supernet_path(v3):
    space, model = v3
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    for seed in range(3):
        arch = random_decision_arch(space, torch.Generator().manual_seed(seed))
        model.eval()
        torch.testing.assert_close(mixed_forward(model, x, WarmSample(arch), False), model(x, arch), rtol=0, atol=0)


def _ib_layer(space, model, **values):
    arch = {d.key: d.choices[0] for d in space.decisions}
    arch.update({"b2.filters": space.decision("b2.filters").choices[-1], "b2.1.op": "ib", "b2.1.expansion": 4,
                 "b2.1.kernel": 5, "b2.1.se": 0, **values})
    arch = parse_decision_arch(arch, space)
    i = [layer.name for layer in space.layers].index("b2.1")
    c = resolve(space, arch, 32)[i]
    return model.layers[i], c


def test_each_averaged_op_is_the_mean_of_its_branches(v3):
    """In eval mode everything after a branch point is affine, so the averaged layer equals the mean of the
    layer's outputs over the branch choices (the zero branch is the identity of the residual layer)."""
    space, model = v3
    layer, c = _ib_layer(space, model)
    x = torch.randn(2, c.c_in, 8, 8, dtype=torch.float64)

    def plain(cc):
        return ops.layer_forward(cc, x, layer.weights(cc), False)

    def mixed(attrs):
        return mixed_layer_forward(layer, c, x, attrs, (3, 5, 7), space.divisor, False, 0.1)

    torch.testing.assert_close(mixed({"op": 2}), (plain(c) + x) / 2)
    kernels = [plain(replace(c, kernel=k)) for k in (3, 5, 7)]
    torch.testing.assert_close(mixed({"kernel": 3}), sum(kernels) / 3)
    with_se = replace(c, attention=1, reduced=make_divisible(0.25 * c.hidden, space.divisor))
    torch.testing.assert_close(mixed({"attention": 2}), (plain(c) + plain(with_se)) / 2)
    assert not torch.allclose(mixed({"kernel": 3}), plain(c))


def test_an_averaged_zero_layer_is_computed_and_trained(v3):
    space, model = v3
    arch = random_decision_arch(space, torch.Generator().manual_seed(3)).as_dict()
    arch["b2.1.op"] = "zero"
    arch = parse_decision_arch(arch, space)
    x = torch.randn(4, 3, 32, 32, dtype=torch.float64)
    model.train()
    model.zero_grad()
    mixed_forward(model, x, WarmSample(arch, frozenset({"b2.1.op"})), True).sum().backward()
    i = [layer.name for layer in space.layers].index("b2.1")
    assert model.layers[i].plain.expand.weight.grad is not None  # the zeroed layer's IB branch got gradient
    model.zero_grad()
    mixed_forward(model, x, WarmSample(arch), True).sum().backward()
    assert model.layers[i].plain.expand.weight.grad is None
