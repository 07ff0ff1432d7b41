import pytest
import torch
from decision_cases import narrow_space

from scarlet.decisions.arch import parse_decision_arch, random_decision_arch
from scarlet.decisions.cost import DecisionCostModel
from scarlet.decisions.space import SPACES
from scarlet.decisions.standalone import DecisionStandaloneNet


def fvcore_madds(model, resolution):
    from fvcore.nn import FlopCountAnalysis

    flops = FlopCountAnalysis(model.eval(), torch.zeros(1, 3, resolution, resolution))
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    by_op = flops.by_operator()
    return by_op.get("conv", 0) + by_op.get("linear", 0) + by_op.get("addmm", 0)


def n_params(model):
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", list(SPACES))
def test_cost_tables_agree_with_fvcore_and_parameter_count(name):
    space = narrow_space(name)
    cost = DecisionCostModel(space, resolution=40, num_classes=7)
    g = torch.Generator().manual_seed(len(name))
    archs = [random_decision_arch(space, g) for _ in range(3)]
    if space.family == "fbnet":  # every group skipped (identities and projections), then every kernel 5
        for kernel in (0, 5):
            values = {d.key: (kernel if d.key.endswith("kernel") else d.choices[-1]) for d in space.decisions}
            archs.append(parse_decision_arch(values, space))
    for arch in archs:
        net = DecisionStandaloneNet(space, arch, num_classes=7)
        madds, params = cost.cost(arch)
        assert madds == fvcore_madds(net, 40), arch.to_json()
        assert params == n_params(net), arch.to_json()


def test_mobilenet_v2_lands_on_its_published_counts():
    # MobileNetV2 (Sandler et al., Table 4): 300M MAdds, 3.4M parameters at 224x224 with 1000 classes.
    cost = DecisionCostModel("proxylessnas-enlarged", 224, 1000)
    madds, params = cost.cost("mobilenetv2")
    net = DecisionStandaloneNet("proxylessnas-enlarged", "mobilenetv2", 1000)
    assert madds == fvcore_madds(net, 224) == 300_774_272
    assert params == n_params(net) == 3_504_872  # with BN scale and shift, as torchvision counts it
    bn = sum(p.numel() for n, p in net.named_parameters() if ".bn" in f".{n}")
    assert 3.4e6 <= params - bn < 3.5e6  # conv and classifier weights alone: 3.47M, which the paper prints as 3.4M


def test_tunas_1001_way_classifier_adds_one_row():
    arch = parse_decision_arch("mobilenetv2", "proxylessnas-enlarged")
    m1000, p1000 = DecisionCostModel("proxylessnas-enlarged", 224, 1000).cost(arch)
    m1001, p1001 = DecisionCostModel("proxylessnas-enlarged", 224, 1001).cost(arch)
    assert (m1001 - m1000, p1001 - p1000) == (1280, 1281)


def test_zeroed_layer_costs_nothing_and_expansion_follows_the_input_width():
    space = "proxylessnas-enlarged"
    base = parse_decision_arch("mobilenetv2", space).as_dict()
    cost = DecisionCostModel(space, 224, 1000)
    # b3.3 is a residual 64 -> 384 -> 64 IB with kernel 3 at 14x14: removing it saves exactly its cost
    saved = cost.madds(base) - cost.madds({**base, "b3.3.op": "zero"})
    assert saved == 64 * 384 * 14**2 + 384 * 9 * 14**2 + 384 * 64 * 14**2
    # narrowing b2 from 32 to 24 channels shrinks b3.0's input and (expansion 6) its expanded width
    d = cost.madds(base) - cost.madds({**base, "b2.filters": 24})
    b3_0 = 32 * 192 * 28**2 + 192 * 9 * 14**2 + 192 * 64 * 14**2
    b3_0_narrow = 24 * 144 * 28**2 + 144 * 9 * 14**2 + 144 * 64 * 14**2
    b2 = 24 * 144 * 56**2 + 144 * 9 * 28**2 + 144 * 32 * 28**2 + 2 * (32 * 192 * 28**2 + 192 * 9 * 28**2
                                                                       + 192 * 32 * 28**2)
    b2_narrow = 24 * 144 * 56**2 + 144 * 9 * 28**2 + 144 * 24 * 28**2 + 2 * (24 * 144 * 28**2 + 144 * 9 * 28**2
                                                                             + 144 * 24 * 28**2)
    assert d == (b3_0 - b3_0_narrow) + (b2 - b2_narrow)
