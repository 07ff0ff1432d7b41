import math

import pytest

from scarlet.decisions.space import SPACES, get_space
from scarlet.errors import ScarletError

# Hand products from ../shared/TUNAS_FPNAS.md: every decision counted, zeroed layers' decisions included.
PROXYLESSNAS = 3 * 6**6 * 12**15  # b0 kernel, 6 fixed IBs (k x e), 15 skippable (k x e x {IB, zero})
ENLARGED = PROXYLESSNAS * 4 * 4 * 4 * 6 * 7**5  # + filters: stem, b0, b1, b2, b3..b6 and head
MOBILENETV3_LIKE = (4 * 2 * 3 * 2) * (4 * 6 * 7 * 7 * 7) * 36**5 * 72**15 * 7 * 7
# FBNetV2-F per group: (kernel 3 x act 2 x SE 2) x expansion 6 x channels; g1 has expansion 1.
FBNET_F = 12 * 2 * math.prod(12 * 6 * n for n in (3, 3, 4, 4, 5, 5, 6, 10, 10))
REPEATS = (1, 1, 2, 1, 2, 1, 2, 3, 1, 3)


def test_cardinalities_equal_the_hand_products():
    assert get_space("proxylessnas").cardinality == PROXYLESSNAS
    assert get_space("proxylessnas-enlarged").cardinality == ENLARGED
    assert get_space("mobilenetv3-like").cardinality == MOBILENETV3_LIKE
    assert get_space("fbnetv2-f").cardinality == FBNET_F
    assert get_space("fbnetv2-f++").cardinality == FBNET_F * 2**10
    assert get_space("fbnetv2-f-fine").cardinality == FBNET_F * 12 ** (sum(REPEATS) - len(REPEATS))


@pytest.mark.parametrize("name", ["proxylessnas", "proxylessnas-enlarged", "mobilenetv3-like"])
def test_tunas_sizes_round_to_the_papers_order_of_magnitude(name):
    space = get_space(name)
    assert round(math.log10(space.cardinality)) == round(math.log10(space.paper_size))


def test_fpnas_sizes_against_the_paper():
    f, fine, plus = (get_space(n).cardinality for n in ("fbnetv2-f", "fbnetv2-f-fine", "fbnetv2-f++"))
    assert round(math.log10(plus / f)) == 3  # paper: F++ is 10^3 x F
    assert round(math.log10(fine / f)) == 8  # paper section 5.2.2: 10^8 (section 4 says 10^19)
    # The absolute sizes are below the paper's 6e25 and 1e45 (sheet B5.1: no counting rule reproduces them).
    assert 1e24 < f < 6e25 and fine < 1e45
    # FP-NAS section 3.3: the widest layer's 5 variables have 3, 2, 2, 6, 10 choices: JD 720, FD 23 parameters.
    g9 = next(layer for layer in get_space("fbnetv2-f").layers if layer.name == "g9.0")
    sizes = sorted(len(d.choices) for d in g9.decisions())
    assert sizes == [2, 2, 3, 6, 10] and math.prod(sizes) == 720 and sum(sizes) == 23


def test_tunas_filter_choices_and_skeleton():
    enlarged = get_space("proxylessnas-enlarged")
    assert enlarged.decision("stem.filters").choices == (8, 16, 24, 32)
    assert enlarged.decision("b2.filters").choices == (16, 24, 32, 40, 48, 64)
    assert enlarged.decision("b5.filters").choices == (128, 160, 192, 256, 320, 384, 512)
    assert enlarged.decision("head.filters").choices == (512, 640, 768, 1024, 1280, 1536, 2048)
    ibs = [layer for layer in enlarged.layers if layer.kind == "ib"]
    assert len(ibs) == 21 and sum(layer.residual for layer in ibs) == 15
    assert all(not layer.residual for layer in ibs if layer.first)
    assert [layer.stride for layer in ibs if layer.first] == [2, 2, 2, 1, 2, 1]
    fixed = get_space("proxylessnas")
    assert [layer.attr("filters") for layer in fixed.layers if layer.first] == [32, 16, 32, 40, 80, 96, 192, 320,
                                                                                 1280]
    v3 = get_space("mobilenetv3-like")
    assert v3.decision("b1.2.expansion").choices == (1, 2, 3, 4, 5, 6)
    assert v3.decision("head2.filters").choices == (512, 640, 768, 1024, 1280, 1536, 2048)


def test_fbnet_skeleton():
    space = get_space("fbnetv2-f")
    ibs = [layer for layer in space.layers if layer.kind == "ib"]
    assert len(ibs) == 17
    assert space.decision("g9.filters").choices == tuple(range(112, 185, 8))
    # the group's blocks share one kernel decision in F, and have their own in F-Fine
    assert {layer.attr("kernel").key for layer in ibs if layer.name.startswith("g8.")} == {"g8.kernel"}
    fine = get_space("fbnetv2-f-fine")
    assert {layer.attr("kernel").key for layer in fine.layers if layer.name.startswith("g8.")} == {
        "g8.0.kernel", "g8.1.kernel", "g8.2.kernel"}
    assert get_space("fbnetv2-f++").decision("g2.attention").choices == (0, 1, 2, 4)


def test_narrow_variant_keeps_choices_distinct():
    assert get_space("proxylessnas-enlarged", 0.25, 2).decision("b1.filters").choices == (2, 4, 6, 8)
    assert get_space("fbnetv2-f", 0.25, 1).decision("g2.filters").choices == (4, 5, 6)


def test_unknown_space_is_a_one_line_error():
    with pytest.raises(ScarletError, match="unknown decision space 'tunas'.*proxylessnas"):
        get_space("tunas")
    assert len(SPACES) == 6
