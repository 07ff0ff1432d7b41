"""masked_depthwise_conv2d: every backend against the PyTorch reference, and the reference against its definition."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from kernel_testing import (ALL_BACKENDS, DEVICE, FAST_BACKENDS, GPU, LOW_PRECISION, assert_close,
                            assert_within_twice_torch_error, outputs_and_grads, requires_gpu, to_channels_last)

import scarlet_kernels as sk
from scarlet_kernels import backend, depthwise

# Three paths mixing kernel sizes and channel counts: all channels, a part, none. C = 5 is not a multiple of 8.
KERNELS, CHANNELS = [3, 5, 7], [5, 2, 0]


def inputs(size, channels=5, batch=2, dtype=torch.float32, layout="standard", seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(len(KERNELS), batch, channels, size, size, generator=gen).to(DEVICE, dtype)
    w = torch.randn(len(KERNELS), channels, 7, 7, generator=gen).to(DEVICE, dtype)
    return (to_channels_last(x) if layout == "channels_last" else x), w


def conv(name, stride, kernels=KERNELS, channels=CHANNELS):
    return lambda x, w: sk.masked_depthwise_conv2d(x, w, kernels, stride, channels, backend=name)


def test_reference_is_a_grouped_conv_per_path_on_the_centred_window():
    x, w = inputs(9)
    y = depthwise.reference(x, w, KERNELS, 2, CHANNELS)
    for p, (k, active) in enumerate(zip(KERNELS, CHANNELS, strict=True)):
        lo = (7 - k) // 2
        want = F.conv2d(x[p, :, :active], w[p, :active, None, lo:lo + k, lo:lo + k], stride=2, padding=k // 2,
                        groups=active) if active else y.new_zeros(2, 0, 5, 5)
        torch.testing.assert_close(y[p, :, :active], want)
        assert (y[p, :, active:] == 0).all()


# Tiny shapes so that the interpreted Triton kernels stay fast on a CPU; H = 28 once per stride.
CASES = [(7, 1, "standard"), (7, 2, "standard"), (7, 1, "channels_last"), (7, 2, "channels_last"),
         (14, 1, "standard"), (14, 2, "channels_last"), (28, 2, "standard"), (28, 1, "channels_last")]


@pytest.mark.parametrize("name", FAST_BACKENDS)
@pytest.mark.parametrize("size,stride,layout", CASES)
def test_forward_and_gradients_match_reference(name, size, stride, layout):
    x, w = inputs(size, layout=layout)
    got = outputs_and_grads(conv(name, stride), x, w)
    want = outputs_and_grads(conv("torch", stride), x, w)
    assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert got[0].is_contiguous() == x.is_contiguous(), "the output keeps x's layout"
    assert got[1].stride() == x.stride(), "the input gradient keeps x's layout"


@requires_gpu
@pytest.mark.parametrize("name", FAST_BACKENDS)
@pytest.mark.parametrize("size,stride,layout", [(56, 1, "standard"), (56, 2, "channels_last"),
                                                (112, 2, "standard"), (112, 1, "channels_last")])
def test_large_shapes_on_gpu(name, size, stride, layout):
    x, w = inputs(size, channels=37, batch=3, layout=layout)
    assert_close(outputs_and_grads(conv(name, stride), x, w), outputs_and_grads(conv("torch", stride), x, w),
                 rtol=1e-4, atol=2e-3)


@pytest.mark.parametrize("name", FAST_BACKENDS)
@pytest.mark.parametrize("dtype", LOW_PRECISION)
@pytest.mark.parametrize("stride", [1, 2])
def test_low_precision_error_at_most_twice_pytorch(name, dtype, stride):
    size = 28 if GPU else 7
    x, w = inputs(size, dtype=dtype)
    exact = outputs_and_grads(conv("torch", stride), x.float(), w.float())
    got = outputs_and_grads(conv(name, stride), x, w)
    assert all(t.dtype == dtype for t in got)
    assert_within_twice_torch_error(got, exact, outputs_and_grads(conv("torch", stride), x, w))


@pytest.mark.parametrize("name", ALL_BACKENDS)
def test_gradcheck_float64(name):
    x, w = inputs(5, channels=3, batch=1, dtype=torch.float64)
    for stride in (1, 2):
        fn = conv(name, stride, channels=[3, 1, 2])
        assert torch.autograd.gradcheck(fn, (x.requires_grad_(), w.requires_grad_()), fast_mode=True)


@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_taps_outside_the_window_and_inactive_channels_are_never_read(name):
    x, w = inputs(7)
    poisoned = w.clone()
    for p, (k, active) in enumerate(zip(KERNELS, CHANNELS, strict=True)):
        lo = (7 - k) // 2
        window = poisoned[p, :active, lo:lo + k, lo:lo + k].clone()
        poisoned[p] = float("nan")
        poisoned[p, :active, lo:lo + k, lo:lo + k] = window
    y, dx, dw = outputs_and_grads(conv(name, 1), x, poisoned)
    assert_close([y, dx], outputs_and_grads(conv("torch", 1), x, w)[:2], rtol=1e-4, atol=1e-4)
    assert (dw[2] == 0).all() and (dw[1, 2:] == 0).all(), "no gradient for inactive channels"
    assert (dw[0, :, 0] == 0).all() and (dw[0, :, :, 6] == 0).all(), "no gradient outside a 3x3 window"


@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_weight_gradient_split_reduction_is_deterministic_and_split_independent(name):
    x, w = inputs(14, layout="channels_last")
    dy = torch.randn(3, 2, 5, 14, 14, device=DEVICE)
    ks = torch.tensor(KERNELS, dtype=torch.int32, device=DEVICE)
    ch = torch.tensor(CHANNELS, dtype=torch.int32, device=DEVICE)
    impl = backend.kernels(name)
    whole = impl.depthwise_backward_weight(dy, x, ks, ch, 1, splits=1)
    split = impl.depthwise_backward_weight(dy, x, ks, ch, 1, splits=3)
    assert torch.equal(split, impl.depthwise_backward_weight(dy, x, ks, ch, 1, splits=3))
    torch.testing.assert_close(split, whole, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ALL_BACKENDS)
def test_kernel_sizes_and_channels_as_tensors(name):
    x, w = inputs(7)
    ks = torch.tensor(KERNELS, device=DEVICE)
    ch = torch.tensor(CHANNELS, device=DEVICE)
    want = sk.masked_depthwise_conv2d(x, w, KERNELS, 2, CHANNELS, backend="torch")
    torch.testing.assert_close(sk.masked_depthwise_conv2d(x, w, ks, 2, ch, backend=name), want)


def test_validation_errors_name_the_argument():
    x, w = inputs(7)
    cases = [
        (dict(x=x.to(torch.int32)), TypeError, "x must be float32"),
        (dict(x=x[0]), ValueError, "x must have 5 dimensions"),
        (dict(weight=w[:, :, :5, :5]), ValueError, r"weight must have shape \(3, 5, 7, 7\)"),
        (dict(weight=w.double()), TypeError, "weight has dtype torch.float64 but x has"),
        (dict(weight=w.to("meta")), ValueError, "weight is on meta"),
        (dict(weight=w.transpose(2, 3)), ValueError, "weight must be contiguous"),
        (dict(x=x[..., ::2]), ValueError, "x must be contiguous"),
        (dict(kernel_sizes=[3, 4, 7]), ValueError, r"kernel_sizes values must be in \(3, 5, 7\)"),
        (dict(kernel_sizes=[3, 5]), ValueError, r"kernel_sizes must have one value per path \(3\)"),
        (dict(kernel_sizes=torch.tensor([3.0, 5.0, 7.0])), TypeError, "kernel_sizes must hold integers"),
        (dict(channels=[5, 6, 0]), ValueError, r"channels values must be in \[0, 5\]"),
        (dict(stride=3), ValueError, "stride must be 1 or 2"),
    ]
    for change, error, message in cases:
        args = dict(x=x, weight=w, kernel_sizes=KERNELS, stride=1, channels=CHANNELS) | change
        with pytest.raises(error, match=message):
            sk.masked_depthwise_conv2d(**args)
