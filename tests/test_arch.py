import json

import pytest

from scarlet import NAMED_ARCHS, ScarletError, get_space, parse_arch
from scarlet.arch import Arch

S1_MODEL_A = (0, 5, 0, 6, 3, 2, 3, 0, 2, 1, 3, 5, 2, 4, 4, 4, 5, 3, 6)
S2_MODEL = (1, 3, 1, 0, 12, 0, 0, 0, 12, 12, 12, 12, 12, 0, 0, 0, 12, 12, 9)


def test_space_index_numbering_matches_papers():
    s1, s2, fair = get_space("scarlet-s1"), get_space("scarlet-s2"), get_space("fairnas")
    # S1: o = (e - 3) + (k - 3) / 2, 6 = skip
    for o, c in enumerate(s1.choices[:6]):
        assert o == (c.expansion - 3) + (c.kernel - 3) // 2 and not c.se
    assert s1.choices[6].identity and s1.num_choices == 7
    assert [c.token for c in s2.choices] == ["e3k3", "e3k3se", "e3k5", "e3k5se", "e3k7", "e3k7se", "e6k3", "e6k3se",
                                            "e6k5", "e6k5se", "e6k7", "e6k7se", "id"]
    assert fair.num_choices == 6 and fair.identity_index is None
    assert s2.size == 13**19 and fair.num_layers == 19


@pytest.mark.parametrize("space,genes", [("scarlet-s1", S1_MODEL_A), ("scarlet-s2", S2_MODEL)])
def test_round_trip_all_forms(space, genes):
    arch = parse_arch(",".join(map(str, genes)), space)
    assert arch.genes == genes
    assert parse_arch(str(genes), space) == arch  # "(0, 5, ...)"
    assert parse_arch(json.dumps(list(genes)), space) == arch
    assert parse_arch(list(genes), space) == arch
    assert parse_arch(arch.tokens(), space) == arch
    assert parse_arch(arch.encoding(), space) == arch
    assert parse_arch(arch.tokens().replace(" ", "-"), space) == arch


def test_plus_means_se_and_aliases_for_identity():
    a = parse_arch(" ".join(["e3k7+"] + ["skip"] * 17 + ["identity"]), "scarlet-s2")
    assert a.genes == (5,) + (12,) * 18


@pytest.mark.parametrize("name", list(NAMED_ARCHS))
def test_named_architectures_parse_in_their_space(name):
    space, _ = NAMED_ARCHS[name]
    arch = parse_arch(name, space)
    assert len(arch) == 19 and arch.space == space
    assert parse_arch(name.upper(), space) == arch


def test_named_architecture_table_spot_checks():
    # REFERENCE section 5: SCARLET-C layers 4, 5 and 16 are identities; FairNAS-A layer 1 is e3k7.
    c = parse_arch("scarlet-c", "scarlet-s2")
    assert [i + 1 for i, g in enumerate(c) if g == 12] == [4, 5, 16]
    assert parse_arch("fairnas-a", "fairnas")[0] == 2
    assert parse_arch("scarlet-b", "scarlet-s2").genes[8] == 12


def test_cross_space_conversion_by_tokens():
    a = parse_arch("fairnas-a", "scarlet-s2")
    assert a.tokens() == parse_arch("fairnas-a", "fairnas").tokens()
    b = parse_arch("fairnas-b", "fairnas")
    assert parse_arch(b, "scarlet-s1").tokens() == b.tokens()
    with pytest.raises(ScarletError, match="not a choice of fairnas"):
        parse_arch(parse_arch("scarlet-a", "scarlet-s2"), "fairnas")


@pytest.mark.parametrize("text,space,match", [
    ("1,2,3", "scarlet-s2", "has 3 layers, scarlet-s2 has 19"),
    (",".join(["0"] * 18 + ["13"]), "scarlet-s2", r"layer 19: choice 13 out of range 0\.\.12"),
    (",".join(["-1"] + ["0"] * 18), "scarlet-s1", "layer 1: choice -1 out of range"),
    (",".join(["6"] * 19), "fairnas", "layer 1: choice 6 out of range 0..5"),
    (" ".join(["e3k3"] * 18 + ["e4k3"]), "scarlet-s2", "layer 19: 'e4k3' is not a choice of scarlet-s2"),
    (" ".join(["e3k3"] * 2 + ["id"] + ["e3k3"] * 16), "fairnas", "layer 3: space fairnas has no identity"),
    (" ".join(["e3k3se"] * 19), "scarlet-s1", "layer 1: 'e3k3se' is not a choice"),
    ("scarlet-a", "fairnas", "named architecture 'scarlet-a'"),
    ("", "scarlet-s2", "empty architecture"),
    ("1,2,x", "scarlet-s2", "has 3 layers"),
])
def test_errors_name_position_and_allowed_values(text, space, match):
    with pytest.raises(ScarletError, match=match):
        parse_arch(text, space)


def test_error_lists_allowed_values_and_rejects_floats_and_unknown_space():
    with pytest.raises(ScarletError, match="0=e3k3, 1=e3k5"):
        parse_arch([9] * 19, "fairnas")
    with pytest.raises(ScarletError, match="layer 1: choice must be an integer, got a float"):
        parse_arch([0.5] * 19, "fairnas")
    with pytest.raises(ScarletError, match="unknown search space 'nope'"):
        parse_arch([0] * 19, "nope")


def test_arch_is_hashable_and_sequence_like():
    a = Arch("fairnas", (0,) * 19)
    assert {a: 1}[Arch("fairnas", (0,) * 19)] == 1
    assert list(a) == [0] * 19 and len(a) == 19 and str(a) == ",".join(["0"] * 19)
