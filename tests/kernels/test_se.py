"""fused_se, se_gate and scaled_pointwise: every backend against the PyTorch reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from kernel_testing import (ALL_BACKENDS, DEVICE, FAST_BACKENDS, GPU, LOW_PRECISION, assert_close,
                            assert_within_twice_torch_error, outputs_and_grads, requires_gpu, to_channels_last)

import scarlet_kernels as sk
from scarlet_kernels import se

PATHS, REDUCED = 3, 2
ENABLED = [True, False, True]


def inputs(size, channels=6, batch=2, dtype=torch.float32, layout="standard", cout=9, seed=0):
    """x, the four SE parameters, a gate in (0, 1) and a projection weight."""
    gen = torch.Generator().manual_seed(seed)

    def rand(*shape):
        return torch.randn(*shape, generator=gen).to(DEVICE, dtype)

    x = rand(PATHS, batch, channels, size, size)
    params = [rand(PATHS, REDUCED, channels), rand(PATHS, REDUCED), rand(PATHS, channels, REDUCED),
              rand(PATHS, channels)]
    gate = torch.rand(PATHS, batch, channels, generator=gen).to(DEVICE, dtype)
    return (to_channels_last(x) if layout == "channels_last" else x), params, gate, rand(PATHS, cout, channels)


def se_fn(op, name, gate="hsigmoid", enabled=None):
    return lambda x, *params: op(x, *params, gate=gate, enabled=enabled, backend=name)


def test_reference_matches_a_module_per_path():
    x, (wr, br, we, be), _, _ = inputs(7)
    y = se.fused_se_reference(x, wr, br, we, be, "hsigmoid", torch.tensor(ENABLED))
    for p in range(PATHS):
        if not ENABLED[p]:
            assert torch.equal(y[p], x[p])
            continue
        s = F.conv2d(x[p].mean((2, 3), keepdim=True), wr[p, :, :, None, None], br[p]).relu()
        s = F.hardsigmoid(F.conv2d(s, we[p, :, :, None, None], be[p]))
        torch.testing.assert_close(y[p], x[p] * s)


@pytest.mark.parametrize("name", FAST_BACKENDS)
@pytest.mark.parametrize("size,layout,gate,enabled", [(7, "standard", "hsigmoid", ENABLED),
                                                      (14, "channels_last", "sigmoid", None),
                                                      (28, "standard", "sigmoid", [False, True, True])])
def test_fused_se_and_gate_match_reference(name, size, layout, gate, enabled):
    x, params, _, _ = inputs(size, layout=layout)
    for op in (sk.fused_se, sk.se_gate):
        got = outputs_and_grads(se_fn(op, name, gate, enabled), x, *params)
        assert_close(got, outputs_and_grads(se_fn(op, "torch", gate, enabled), x, *params), rtol=1e-4, atol=1e-5)
        if op is sk.fused_se:
            assert got[0].stride() == got[1].stride() == x.stride(), "fused_se keeps x's layout"


@pytest.mark.parametrize("name", ALL_BACKENDS)
def test_disabled_paths_pass_x_through_and_get_no_gradient(name):
    x, params, _, _ = inputs(7)
    y, dx, *dparams = outputs_and_grads(se_fn(sk.fused_se, name, enabled=ENABLED), x, *params)
    assert torch.equal(y[1], x[1])
    g = torch.linspace(-1, 1, y.numel(), device=DEVICE).sin().view(y.shape)
    torch.testing.assert_close(dx[1], g[1])
    assert all((d[1] == 0).all() for d in dparams)


@pytest.mark.parametrize("name", FAST_BACKENDS)
@pytest.mark.parametrize("size,layout", [(7, "standard"), (14, "channels_last")])
def test_scaled_pointwise_matches_reference(name, size, layout):
    x, _, gate, w = inputs(size, layout=layout)
    fn = lambda x, gate, w: sk.scaled_pointwise(x, gate, w, backend=name)  # noqa: E731
    got = outputs_and_grads(fn, x, gate, w)
    want = outputs_and_grads(lambda x, gate, w: sk.scaled_pointwise(x, gate, w, backend="torch"), x, gate, w)
    assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert got[0].is_contiguous() == x.is_contiguous()


def per_path_gated_conv(x, gate, w):
    """The definition of scaled_pointwise: per path, the 1x1 conv of x * gate, with torch's own conv2d."""
    return torch.stack([F.conv2d(x[p] * gate[p, :, :, None, None], w[p, :, :, None, None]) for p in range(PATHS)])


@pytest.mark.parametrize("name", ALL_BACKENDS)
@pytest.mark.parametrize("conv_weight", [False, True])
def test_scaled_pointwise_is_a_gated_conv_per_path(name, conv_weight):
    x, _, gate, w = inputs(7)
    got = sk.scaled_pointwise(x, gate, w[..., None, None] if conv_weight else w, backend=name)
    torch.testing.assert_close(got, per_path_gated_conv(x, gate, w), rtol=1e-4, atol=1e-4)


@requires_gpu
@pytest.mark.parametrize("name", FAST_BACKENDS)
@pytest.mark.parametrize("size,layout", [(56, "standard"), (112, "channels_last")])
def test_large_shapes_on_gpu(name, size, layout):
    x, params, gate, w = inputs(size, channels=72, batch=4, layout=layout, cout=24)
    assert_close(outputs_and_grads(se_fn(sk.fused_se, name, enabled=ENABLED), x, *params),
                 outputs_and_grads(se_fn(sk.fused_se, "torch", enabled=ENABLED), x, *params), rtol=1e-4, atol=1e-4)
    fn = lambda name: lambda x, gate, w: sk.scaled_pointwise(x, gate, w, backend=name)  # noqa: E731
    assert_close(outputs_and_grads(fn(name), x, gate, w), outputs_and_grads(fn("torch"), x, gate, w),
                 rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name", FAST_BACKENDS)
@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_low_precision_error_at_most_twice_pytorch(name, dtype):
    x, params, gate, w = inputs(28 if GPU else 7, dtype=dtype)
    fused = lambda name: se_fn(sk.fused_se, name, "sigmoid", ENABLED)  # noqa: E731
    exact = outputs_and_grads(fused("torch"), x.float(), *(p.float() for p in params))
    assert_within_twice_torch_error(outputs_and_grads(fused(name), x, *params), exact,
                                    outputs_and_grads(fused("torch"), x, *params))
    scaled = lambda name: lambda x, gate, w: sk.scaled_pointwise(x, gate, w, backend=name)  # noqa: E731
    exact = outputs_and_grads(scaled("torch"), x.float(), gate.float(), w.float())
    assert_within_twice_torch_error(outputs_and_grads(scaled(name), x, gate, w), exact,
                                    outputs_and_grads(scaled("torch"), x, gate, w))


@pytest.mark.parametrize("name", ALL_BACKENDS)
def test_gradcheck_float64(name):
    x, params, gate, w = inputs(4, channels=3, batch=1, dtype=torch.float64, cout=4)
    leaves = [t.requires_grad_() for t in (x, *params)]
    for op in (sk.fused_se, sk.se_gate):
        assert torch.autograd.gradcheck(se_fn(op, name, "sigmoid", ENABLED), leaves, fast_mode=True)
    scaled = lambda x, gate, w: sk.scaled_pointwise(x, gate, w, backend=name)  # noqa: E731
    assert torch.autograd.gradcheck(scaled, (x, gate.requires_grad_(), w.requires_grad_()), fast_mode=True)


def test_validation_errors_name_the_argument():
    x, (wr, br, we, be), gate, w = inputs(7)
    cases = [
        (dict(x=x.half()), TypeError, "w_reduce has dtype torch.float32 but x has torch.float16"),
        (dict(w_reduce=wr[:, :, :4]), ValueError, r"w_reduce must have shape \(3, 2, 6\)"),
        (dict(b_expand=be[:2]), ValueError, r"b_expand must have shape \(3, 6\)"),
        (dict(w_expand=we.to("meta")), ValueError, "w_expand is on meta"),
        (dict(gate="relu"), ValueError, "gate must be one of hsigmoid, sigmoid"),
        (dict(enabled=[True, False]), ValueError, r"enabled must have one value per path \(3\)"),
        (dict(enabled=[1, 0, 1]), TypeError, "enabled must be a list of bools"),
        (dict(x=x.transpose(3, 4)), ValueError, "x must be contiguous"),
    ]
    for change, error, message in cases:
        args = dict(x=x, w_reduce=wr, b_reduce=br, w_expand=we, b_expand=be, gate="hsigmoid", enabled=None) | change
        for op in (sk.fused_se, sk.se_gate):
            with pytest.raises(error, match=message):
                op(**args)
    with pytest.raises(ValueError, match=r"gate must have shape \(3, 2, 6\)"):
        sk.scaled_pointwise(x, gate[:, :1], w)
    with pytest.raises(ValueError, match=r"w must have shape"):
        sk.scaled_pointwise(x, gate, w[:, :, :5])
    with pytest.raises(TypeError, match="w has dtype torch.float64"):
        sk.scaled_pointwise(x, gate, w.double())
