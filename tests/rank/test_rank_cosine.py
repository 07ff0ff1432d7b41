"""SCARLET's cosine-similarity analysis."""

import copy

import pytest
import torch

from scarlet.rank.cosine import channel_cosine, layer_similarities, summarise_layers
from scarlet.supernet import Supernet


def test_channel_cosine_known_values():
    a = torch.randn(4, 3, 5, 5)
    assert channel_cosine(a, a) == pytest.approx(1.0)
    assert channel_cosine(a, -a) == pytest.approx(-1.0)
    assert channel_cosine(a, a * torch.tensor([1.0, 2.0, 5.0]).view(1, 3, 1, 1)) == pytest.approx(1.0)
    b = a.clone()
    b[:, 0] = -a[:, 0]  # one channel of three opposite: mean (-1 + 1 + 1) / 3
    assert channel_cosine(a, b) == pytest.approx(1 / 3)


def test_identical_choices_have_similarity_one_and_model_is_untouched():
    torch.manual_seed(0)
    net = Supernet(space="scarlet-s2", width=0.125, resolution=16, in_channels=1, num_classes=10).eval()
    layer = 3  # a residual layer: two copies of one block must give the same output
    net.layers[layer][5] = copy.deepcopy(net.layers[layer][4])
    before = {k: v.clone() for k, v in net.state_dict().items()}
    mats = layer_similarities(net, torch.randn(8, 1, 16, 16), [0] * 19)
    assert len(mats) == 19 and all(m.shape == (13, 13) for m in mats)
    assert mats[layer][4, 5] == pytest.approx(1.0, abs=1e-9)
    assert mats[layer][4, 6] < 0.999  # different blocks differ
    for m in mats:
        assert torch.allclose(m, m.T) and torch.allclose(m.diagonal(), torch.ones(13, dtype=m.dtype))
    assert not net.training
    after = net.state_dict()
    assert all(torch.equal(v, after[k]) for k, v in before.items())


def test_layer_summary_separates_skip_from_blocks():
    m = torch.tensor([[1.0, 0.8, 0.2], [0.8, 1.0, 0.4], [0.2, 0.4, 1.0]], dtype=torch.float64)
    s = summarise_layers([m], identity=2)
    assert s["mbconv_pairs"] == [pytest.approx(0.8)] and s["skip_vs_mbconv"] == [pytest.approx(0.3)]
    assert summarise_layers([m], identity=None)["mbconv_pairs"] == [pytest.approx((0.8 + 0.2 + 0.4) / 3)]
