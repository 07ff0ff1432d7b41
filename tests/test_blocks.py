import pytest
import torch

from scarlet import Supernet
from scarlet.blocks import MBConv, Stabilizer
from scarlet.space import get_space

SKIP_LAYERS = {1: "stride 2, 16->32", 3: "stride 2, 32->40", 11: "80->96", 19: "192->320", 5: "40->40"}


@pytest.mark.parametrize("kind", ["els", "skip", "els-relu"])
@pytest.mark.parametrize("space", ["scarlet-s1", "scarlet-s2"])
def test_skip_kinds_on_stride2_and_channel_changing_layers(kind, space):
    torch.manual_seed(0)
    net = Supernet(space=space, skip=kind, width=0.25, resolution=32, num_classes=10, in_channels=1).eval()
    ident = net.space.identity_index
    x = torch.randn(2, 1, 32, 32)
    h = net.forward_stem(x)
    for i, shape in enumerate(net.shapes):
        mb = net.layers[i][0](h)
        sk = net.layers[i][ident](h)
        assert sk.shape == mb.shape == (2, shape.out_channels, shape.out_size, shape.out_size)
        h = mb
    # the whole all-skip path runs too
    assert net(x, [ident] * 19).shape == (2, 10)


def test_plain_skip_pads_channels_and_subsamples():
    s = Stabilizer(3, 5, 2, "skip")
    x = torch.randn(2, 3, 7, 7)
    y = s(x)
    assert y.shape == (2, 5, 4, 4)
    assert torch.equal(y[:, :3], x[:, :, ::2, ::2]) and torch.count_nonzero(y[:, 3:]) == 0
    assert s.foldable and not list(s.parameters())


def test_els_is_bias_free_strided_1x1_conv_and_linear():
    s = Stabilizer(4, 6, 2, "els")
    assert s.conv.bias is None and s.conv.kernel_size == (1, 1) and s.conv.stride == (2, 2)
    x, z = torch.randn(2, 4, 5, 5), torch.randn(2, 4, 5, 5)
    torch.testing.assert_close(s(x + 2 * z), s(x) + 2 * s(z))
    torch.testing.assert_close(s(x), torch.einsum("oc,nchw->nohw", s.conv.weight[:, :, 0, 0], x[:, :, ::2, ::2]))


def test_els_relu_is_not_linear_and_not_foldable():
    s = Stabilizer(4, 4, 1, "els-relu")
    assert not s.foldable
    x = torch.randn(2, 4, 3, 3)
    assert not torch.allclose(s(-x), -s(x))
    assert (s(x) >= 0).all()


def test_mbconv_conventions():
    scarlet = MBConv(16, 16, 1, 6, 5, True, "scarlet")
    assert scarlet.hidden == 96 and scarlet.residual and scarlet.conv_dw.kernel_size == (5, 5)
    assert scarlet.se.conv_reduce.out_channels == 24 and scarlet.se.conv_reduce.bias is not None
    assert isinstance(scarlet.act1, torch.nn.Hardswish) and isinstance(scarlet.se.gate, torch.nn.Hardsigmoid)
    fair = MBConv(16, 24, 2, 3, 3, False, "fairnas")
    assert isinstance(fair.act1, torch.nn.ReLU6) and fair.se is None and not fair.residual
    x = torch.randn(2, 16, 8, 8)
    assert fair(x).shape == (2, 24, 4, 4)


def test_every_choice_has_its_own_weights():
    net = Supernet(space="scarlet-s2", width=0.25, resolution=32, num_classes=10)
    ids = {id(p) for layer in net.layers for choice in layer for p in choice.parameters()}
    total = sum(1 for layer in net.layers for choice in layer for _ in choice.parameters())
    assert len(ids) == total
    assert len(net.layers) == 19 and all(len(layer) == 13 for layer in net.layers)


def test_space_skeleton_shapes_at_224():
    net = Supernet(space="fairnas")
    sizes = [s.out_size for s in net.shapes]
    assert sizes == [56, 56, 28, 28, 28, 28, 14, 14, 14, 14, 14, 14, 14, 14, 7, 7, 7, 7, 7]
    assert [s.out_channels for s in net.shapes][-1] == 320 and net.head.conv.out_channels == 1280
    assert [i + 1 for i, l in enumerate(get_space("fairnas").layers) if not l.has_residual] == [1, 3, 7, 11, 15, 19]
