import json

import pytest
import torch

from scarlet.decisions.arch import NAMED, parse_decision_arch, random_decision_arch
from scarlet.decisions.concrete import resolve
from scarlet.decisions.space import SPACES, get_space
from scarlet.errors import ScarletError

# MobileNetV2 (Sandler et al. Table 2): (expansion t, channels c, repeats n, stride s) after the 32-wide stem.
MOBILENET_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1)]


def test_mobilenet_v2_is_a_member_of_the_enlarged_space():
    layers = [c for c in resolve("proxylessnas-enlarged", "mobilenetv2", 224) if c.kind != "identity"]
    expected, c_in = [], 32
    for t, c, n, s in MOBILENET_V2:
        for i in range(n):
            expected.append((c_in, c, s if i == 0 else 1, c_in * t if t > 1 else 0, 3))
            c_in = c
    got = [(c.c_in, c.c_out, c.stride, c.hidden, c.kernel) for c in layers[1:-1]]
    assert got == expected
    assert (layers[0].c_out, layers[0].stride, layers[-1].c_out, layers[-1].out_size) == (32, 2, 1280, 7)
    assert [c.residual for c in layers[1:-1]] == [i > 0 for t, c, n, s in MOBILENET_V2 for i in range(n)]


def test_proxylessnas_mobile_reproduction():
    layers = resolve("proxylessnas", "proxylessnas-mobile", 224)
    ib = [(c.kernel, c.hidden // c.c_in) for c in layers if c.kind == "ib"]
    # TuNAS PROXYLESSNAS_MOBILE_OPERATIONS decoded: b1 has two zeros, b2 none, ...
    assert ib == [(5, 3), (3, 3), (7, 3), (3, 3), (5, 3), (5, 3), (7, 6), (5, 3), (5, 3), (5, 3), (5, 6), (5, 3),
                  (5, 3), (5, 3), (7, 6), (7, 6), (7, 3), (7, 3), (7, 6)]
    assert sum(c.kind == "identity" for c in layers) == 2


def test_mobilenet_v3_large_nearest_member():
    layers = resolve("mobilenetv3-like", "mobilenetv3-large", 224)
    ib = [(c.c_in, c.hidden, c.c_out, c.kernel, c.attention, c.act, c.stride) for c in layers if c.kind == "ib"]
    assert ib == [(16, 64, 24, 3, 0, "relu", 2), (24, 72, 24, 3, 0, "relu", 1),
                  (24, 72, 40, 5, 1, "relu", 2), (40, 120, 40, 5, 1, "relu", 1), (40, 120, 40, 5, 1, "relu", 1),
                  (40, 240, 80, 3, 0, "hswish", 2), (80, 240, 80, 3, 0, "hswish", 1),  # MobileNetV3: 200
                  (80, 160, 80, 3, 0, "hswish", 1), (80, 160, 80, 3, 0, "hswish", 1),  # MobileNetV3: 184
                  (80, 480, 128, 3, 1, "hswish", 1), (128, 768, 128, 3, 1, "hswish", 1),  # 112 -> 128
                  (128, 768, 160, 5, 1, "hswish", 2), (160, 960, 160, 5, 1, "hswish", 1),
                  (160, 960, 160, 5, 1, "hswish", 1)]
    head = [(c.kind, c.c_out) for c in layers[-2:]]
    assert head == [("conv", 1024), ("conv_bias", 1280)]
    assert layers[1].kind == "sepconv" and layers[1].residual and layers[0].act == "hswish"


@pytest.mark.parametrize("space", list(SPACES))
def test_json_round_trip_of_random_architectures(space):
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        arch = random_decision_arch(space, g)
        assert parse_decision_arch(arch.to_json(), space) == arch
        assert parse_decision_arch(json.loads(arch.to_json()), space) == arch


def test_named_architectures_parse_in_their_space_only():
    for name, (space, _) in NAMED.items():
        arch = parse_decision_arch(name.upper(), space)
        assert parse_decision_arch(arch.to_json(), space) == arch
    with pytest.raises(ScarletError, match="mobilenetv2 belongs to space proxylessnas-enlarged, not proxylessnas$"):
        parse_decision_arch("mobilenetv2", "proxylessnas")


def _bad(text, space="proxylessnas-enlarged"):
    with pytest.raises(ScarletError) as e:
        parse_decision_arch(text, space)
    assert "\n" not in str(e.value)
    return str(e.value)


def test_every_bad_architecture_is_a_one_line_error_naming_what_and_where():
    good = parse_decision_arch("mobilenetv2", "proxylessnas-enlarged").as_dict()
    msg = _bad(json.dumps({**good, "b2.1.kernel": 4}))
    assert msg == "layer b2.1: b2.1.kernel=4 is not allowed (allowed: 3, 5, 7)"
    msg = _bad(json.dumps({**good, "b3.filters": 65}))
    assert msg.startswith("layers b3.0, b3.1, b3.2, b3.3: b3.filters=65") and "32, 40, 48, 64, 80, 96, 128" in msg
    msg = _bad(json.dumps({**good, "b1.1.op": "skip"}))
    assert msg == 'layer b1.1: b1.1.op="skip" is not allowed (allowed: "ib", "zero")'
    missing = dict(good)
    del missing["b4.2.expansion"]
    assert _bad(missing) == "layer b4.2: decision b4.2.expansion is missing (allowed: 3, 6)"
    assert "has no decision 'b9.kernel'" in _bad({**good, "b9.kernel": 3})
    assert "neither a JSON object" in _bad("{not json")
    assert "must be a JSON object" in _bad("[1, 2]")
    assert _bad(json.dumps({**good, "b1.0.expansion": 6.5})).endswith("(allowed: 3, 6)")
    fb = parse_decision_arch(random_decision_arch("fbnetv2-f++"), "fbnetv2-f++").as_dict()
    assert _bad({**fb, "g3.attention": 3}, "fbnetv2-f++") == \
        "layers g3.0, g3.1: g3.attention=3 is not allowed (allowed: 0, 1, 2, 4)"
    assert _bad({**fb, "g3.act": "swish"}, "fbnetv2-f++").endswith('(allowed: "relu", "hswish")')


def test_float_and_int_spellings_of_a_number_are_the_same_choice():
    good = parse_decision_arch("mobilenetv2", "proxylessnas-enlarged").as_dict()
    assert parse_decision_arch({**good, "b1.0.expansion": 6.0}, "proxylessnas-enlarged").as_dict() == good
    fb = random_decision_arch("fbnetv2-f", torch.Generator().manual_seed(1)).as_dict()
    arch = parse_decision_arch({**fb, "g4.expansion": 3}, "fbnetv2-f")
    assert arch["g4.expansion"] == 3.0


def test_fbnet_skip_is_identity_or_projection_by_shape():
    fb = random_decision_arch("fbnetv2-f", torch.Generator().manual_seed(2)).as_dict()
    fb.update({"g2.kernel": 0, "g3.kernel": 0, "g2.filters": 16, "g3.filters": 16, "g1.filters": 16,
               "g1.kernel": 3})
    layers = {c.name: c for c in resolve(get_space("fbnetv2-f"), fb, 224)}
    assert layers["g2.0"].kind == "project" and layers["g2.0"].stride == 2  # stride 2: a 1x1 projection
    assert layers["g3.0"].kind == "identity" and layers["g3.1"].kind == "identity"  # 16 -> 16, stride 1
    assert layers["g1.0"].residual and layers["g1.0"].hidden == 16  # FBNet: residual where shapes agree


def test_decisions_of_zeroed_layers_are_inactive_and_canonical_form_drops_them():
    from scarlet.decisions.concrete import active_decisions, canonical
    from scarlet.decisions.cost import DecisionCostModel

    space = get_space("proxylessnas-enlarged")
    v2 = parse_decision_arch("mobilenetv2", space)
    active = active_decisions(space, v2)
    assert "b1.2.kernel" not in active and "b1.2.expansion" not in active  # b1.2 is zero in MobileNetV2
    assert {"b1.2.op", "b1.filters", "b1.1.kernel", "b0.kernel"} <= active
    other = {**v2.as_dict(), "b1.2.kernel": 7, "b1.2.expansion": 6}
    assert canonical(space, other) == canonical(space, v2) == v2
    cost = DecisionCostModel(space, 224)
    assert cost.cost(other) == cost.cost(v2)
    assert canonical(space, {**other, "b1.2.op": "ib"})["b1.2.kernel"] == 7

    fb = get_space("fbnetv2-f")
    arch = {**random_decision_arch(fb, torch.Generator().manual_seed(4)).as_dict(), "g5.kernel": 0}
    active = active_decisions(fb, arch)
    assert "g5.kernel" in active and "g5.filters" in active  # the skip decision and the width stay
    assert not {"g5.act", "g5.se", "g5.expansion"} & active


def test_choice_indices_round_trip_and_errors():
    from scarlet.decisions.arch import arch_from_indices

    for space in SPACES:
        arch = random_decision_arch(space, torch.Generator().manual_seed(5))
        assert arch_from_indices(space, arch.indices(space)) == arch
    with pytest.raises(ScarletError, match="space proxylessnas has 58 decisions, got 2 indices"):
        arch_from_indices("proxylessnas", [0, 1])
    idx = [0] * 58
    idx[1] = 5
    with pytest.raises(ScarletError, match=r"^layer b1\.0: index 5 for b1\.0\.kernel is out of range 0\.\.2$"):
        arch_from_indices("proxylessnas", idx)
