import pytest
import torch

from scarlet.decisions.arch import parse_decision_arch, random_decision_arch
from scarlet.decisions.concrete import resolve
from scarlet.decisions.space import SPACES
from scarlet.decisions.supernet import DecisionSupernet
from scarlet.errors import ScarletError

from decision_cases import narrow_space


def _act(x, name):
    return torch.relu(x) if name == "relu" else x * torch.clamp(x + 3, 0, 6) / 6


def module_forward(net, x):
    """Independent reference for a standalone network in eval mode: nn modules called directly, split-attention
    written split by split."""
    pooled = False
    for layer, m in zip(net.concrete, net.layers):
        if layer.kind == "conv_bias" and not pooled:
            x, pooled = x.mean((2, 3), keepdim=True), True
        if layer.kind == "conv":
            x = _act(m.bn(m.conv(x)), layer.act)
        elif layer.kind == "conv_bias":
            x = _act(m.conv(x), layer.act)
        elif layer.kind == "project":
            x = m.bn(m.conv(x))
        elif layer.kind == "sepconv":
            y = m.bn2(m.pw(_act(m.bn1(m.dw(x)), layer.act)))
            x = x + y if layer.residual else y
        else:
            y = _act(m.bn2(m.dw(_act(m.bn1(m.expand(x)), layer.act))), layer.act)
            r = layer.attention
            if r == 1:
                s = m.att.expand(torch.relu(m.att.reduce(y.mean((2, 3), keepdim=True))))
                y = y * (torch.sigmoid(s) if layer.gate == "sigmoid" else torch.clamp(s / 6 + 0.5, 0, 1))
            elif r > 1:
                splits = [y[:, i::r] for i in range(r)]  # dw output channel g * r + i is split i of channel g
                logits = m.att.expand(torch.relu(m.att.reduce(sum(splits).mean((2, 3), keepdim=True))))
                weights = torch.softmax(torch.stack([logits[:, i::r] for i in range(r)]), dim=0)
                y = sum(w * s for w, s in zip(weights, splits))
            y = m.bn3(m.project(y))
            x = x + y if layer.residual else y
    if not pooled:
        x = x.mean((2, 3), keepdim=True)
    return net.classifier(x.flatten(1))


def _randomise_bn(net, g):
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            for t in (m.weight, m.bias, m.running_mean):
                t.data.copy_(torch.randn(t.shape, generator=g, dtype=t.dtype) * 0.5)
            m.running_var.copy_(torch.rand(m.running_var.shape, generator=g, dtype=m.running_var.dtype) + 0.5)
        if isinstance(m, torch.nn.Conv2d) and m.bias is not None:
            m.bias.data.copy_(torch.randn(m.bias.shape, generator=g, dtype=m.bias.dtype) * 0.5)


@pytest.mark.parametrize("name", list(SPACES))
@pytest.mark.parametrize("depthwise", ["separate", "centre-crop"])
def test_path_equals_standalone_with_copied_weights(name, depthwise):
    space = narrow_space(name)
    g = torch.Generator().manual_seed(hash((name, depthwise)) % 1000)
    net = DecisionSupernet(space, num_classes=5, depthwise=depthwise).double()
    _randomise_bn(net, g)
    x = torch.randn(2, 3, 32, 32, generator=g, dtype=torch.float64)
    n = 5 if depthwise == "separate" else 2
    for _ in range(n):
        arch = random_decision_arch(space, g)
        standalone = net.build_standalone(arch)
        net.eval(), standalone.eval()
        expected = module_forward(standalone, x)
        torch.testing.assert_close(net(x, arch), expected, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(standalone(x), expected, rtol=1e-10, atol=1e-12)
        # training mode: batch statistics, and the sliced running statistics take the same update
        net.train(), standalone.train()
        torch.testing.assert_close(net(x, arch), standalone(x), rtol=1e-10, atol=1e-12)
        after = net.standalone_state_dict(arch)
        for key, t in standalone.state_dict().items():
            if "running" in key:
                torch.testing.assert_close(after[key], t, rtol=1e-12, atol=1e-14, msg=key)


def _arch(space, **changes):
    values = random_decision_arch(space, torch.Generator().manual_seed(3)).as_dict()
    values.update(changes)
    return parse_decision_arch(values, space)


def test_choices_share_the_first_channels_of_one_weight():
    space = narrow_space("mobilenetv3-like")
    net = DecisionSupernet(space, 5)
    small = _arch(space, **{"b2.0.expansion": 2, "b2.filters": 4, "b2.0.kernel": 3})
    big = _arch(space, **{"b2.0.expansion": 6, "b2.filters": 16, "b2.0.kernel": 3})
    s, b = net.standalone_state_dict(small), net.standalone_state_dict(big)
    i = [c.name for c in resolve(space, small, 32) if c.kind != "identity"].index("b2.0")
    h = s[f"layers.{i}.expand.weight"].shape[0]
    assert h < b[f"layers.{i}.expand.weight"].shape[0]
    assert torch.equal(s[f"layers.{i}.expand.weight"], b[f"layers.{i}.expand.weight"][:h])
    assert torch.equal(s[f"layers.{i}.project.weight"], b[f"layers.{i}.project.weight"][:4, :h])
    assert torch.equal(s[f"layers.{i}.bn3.weight"], b[f"layers.{i}.bn3.weight"][:4])


def test_depthwise_kernels_separate_or_centre_cropped():
    space = narrow_space("proxylessnas")
    k3, k7 = _arch(space, **{"b3.0.kernel": 3}), _arch(space, **{"b3.0.kernel": 7})
    key = f"layers.{[c.name for c in resolve(space, k3, 32) if c.kind != 'identity'].index('b3.0')}.dw.weight"
    sep = DecisionSupernet(space, 5)
    assert not torch.equal(sep.standalone_state_dict(k3)[key], sep.standalone_state_dict(k7)[key][:, :, 2:5, 2:5])
    crop = DecisionSupernet(space, 5, depthwise="centre-crop")
    assert torch.equal(crop.standalone_state_dict(k3)[key], crop.standalone_state_dict(k7)[key][:, :, 2:5, 2:5])


def test_a_path_trains_only_its_own_slices():
    space = narrow_space("proxylessnas-enlarged")
    net = DecisionSupernet(space, 5).double()
    arch = _arch(space, **{"b4.filters": 16, "b4.0.expansion": 3, "b4.0.kernel": 5})
    c = next(c for c in resolve(space, arch, 32) if c.name == "b4.0")
    net(torch.randn(2, 3, 32, 32, dtype=torch.float64), arch).square().sum().backward()
    layer = net.layers[[s.name for s in space.layers].index("b4.0")].plain
    grad = layer.expand.weight.grad
    assert grad[:c.hidden, :c.c_in].abs().sum() > 0
    assert grad[c.hidden:].abs().sum() == 0 and grad[:, c.c_in:].abs().sum() == 0
    assert layer.project.weight.grad[c.c_out:].abs().sum() == 0
    assert layer.dw.convs["3"].weight.grad is None and layer.dw.convs["7"].weight.grad is None
    assert layer.dw.bns["5"].weight.grad[:c.hidden].abs().sum() > 0  # each kernel size has its own BN
    assert layer.dw.bns["3"].weight.grad is None and layer.dw.bns["7"].weight.grad is None


def test_zero_op_is_the_identity_of_a_residual_layer():
    # A residual IB whose last BN outputs zero is x + 0: exactly what the zero op computes.
    space = narrow_space("mobilenetv3-like")
    net = DecisionSupernet(space, 5).double().eval()
    layer = net.layers[[s.name for s in space.layers].index("b3.2")].plain
    layer.bn3.weight.data.zero_()
    layer.bn3.bias.data.zero_()
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    on, off = _arch(space, **{"b3.2.op": "ib"}), _arch(space, **{"b3.2.op": "zero"})
    torch.testing.assert_close(net(x, on), net(x, off), rtol=1e-12, atol=1e-12)


def test_se_is_a_switch():
    # With its gate saturated at 1, SE is the identity: the path equals the path with SE off.
    space = narrow_space("mobilenetv3-like")
    net = DecisionSupernet(space, 5).double().eval()
    layer = net.layers[[s.name for s in space.layers].index("b2.1")].plain
    layer.att.expand.weight.data.zero_()
    layer.att.expand.bias.data.fill_(100.0)
    x = torch.randn(2, 3, 32, 32, dtype=torch.float64)
    on, off = _arch(space, **{"b2.1.se": 1, "b2.1.op": "ib"}), _arch(space, **{"b2.1.se": 0, "b2.1.op": "ib"})
    torch.testing.assert_close(net(x, on), net(x, off), rtol=1e-12, atol=1e-12)
    assert not torch.allclose(net(x, on), net(x, _arch(space, **{"b2.1.se": 0, "b2.1.op": "zero"})))


def test_unknown_depthwise_mode_is_a_one_line_error():
    with pytest.raises(ScarletError, match="depthwise must be one of separate, centre-crop, got 'crop'"):
        DecisionSupernet(narrow_space("proxylessnas"), 5, depthwise="crop")


def test_split_attention_has_its_own_weights():
    space = narrow_space("fbnetv2-f++")
    net = DecisionSupernet(space, 5)
    se, sa = _arch(space, **{"g4.attention": 1, "g4.kernel": 3}), _arch(space, **{"g4.attention": 2, "g4.kernel": 3})
    i = [c.name for c in resolve(space, se, 32) if c.kind != "identity"].index("g4.0")
    a, b = net.standalone_state_dict(se), net.standalone_state_dict(sa)
    assert b[f"layers.{i}.dw.weight"].shape[0] == 2 * a[f"layers.{i}.dw.weight"].shape[0]
    assert not torch.equal(a[f"layers.{i}.expand.weight"], b[f"layers.{i}.expand.weight"])


def test_expansion_is_relative_to_the_sampled_input_width():
    space = narrow_space("proxylessnas-enlarged")
    for f in (2, 8):
        arch = _arch(space, **{"b1.filters": f, "b2.0.expansion": 6})
        c = next(c for c in resolve(space, arch, 32) if c.name == "b2.0")
        assert (c.c_in, c.hidden) == (f, 6 * f)


@pytest.mark.parametrize("name", ["mobilenetv3-like", "fbnetv2-f++"])
def test_bn_folding_keeps_the_eval_network(name):
    from scarlet.decisions.standalone import fold_bn

    space = narrow_space(name)
    g = torch.Generator().manual_seed(7)
    net = DecisionSupernet(space, 5).double()
    _randomise_bn(net, g)
    x = torch.randn(2, 3, 32, 32, generator=g, dtype=torch.float64)
    for _ in range(3):
        standalone = net.build_standalone(random_decision_arch(space, g)).eval()
        folded = fold_bn(standalone)
        assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
        torch.testing.assert_close(folded(x), standalone(x), rtol=1e-10, atol=1e-12)
