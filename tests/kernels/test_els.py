"""els_pointwise equals ELS followed by the next 1x1 conv; fold_els is the exact composed weight (Lemma 4.1)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from kernel_testing import (ALL_BACKENDS, DEVICE, FAST_BACKENDS, LOW_PRECISION, assert_close,
                            assert_within_twice_torch_error, outputs_and_grads, requires_gpu, to_channels_last)

import scarlet_kernels as sk


def inputs(size, cin=5, cmid=7, cout=9, batch=2, dtype=torch.float32, layout="standard", seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, cin, size, size, generator=gen).to(DEVICE, dtype)
    w_els = torch.randn(cmid, cin, 1, 1, generator=gen).to(DEVICE, dtype)
    w_next = torch.randn(cout, cmid, 1, 1, generator=gen).to(DEVICE, dtype)
    return (to_channels_last(x) if layout == "channels_last" else x), w_els, w_next


def sequential(x, w_els, w_next):
    return F.conv2d(F.conv2d(x, w_els), w_next)


def els(name):
    return lambda x, w_els, w_next: sk.els_pointwise(x, w_els, w_next, backend=name)


@pytest.mark.parametrize("name", ALL_BACKENDS)
@pytest.mark.parametrize("size,layout", [(7, "standard"), (14, "channels_last")])
def test_one_gemm_equals_the_two_convs_with_all_gradients(name, size, layout):
    x, w_els, w_next = inputs(size, layout=layout)
    got = outputs_and_grads(els(name), x, w_els, w_next)
    assert_close(got, outputs_and_grads(sequential, x, w_els, w_next), rtol=1e-4, atol=1e-4)
    assert got[0].is_contiguous() == x.is_contiguous()


@requires_gpu
@pytest.mark.parametrize("name", FAST_BACKENDS)
def test_large_shapes_on_gpu(name):
    x, w_els, w_next = inputs(56, cin=40, cmid=40, cout=240, batch=8)
    assert_close(outputs_and_grads(els(name), x, w_els, w_next), outputs_and_grads(sequential, x, w_els, w_next),
                 rtol=1e-3, atol=1e-3)


@pytest.mark.parametrize("name", ALL_BACKENDS)
def test_matrix_weights_are_accepted(name):
    x, w_els, w_next = inputs(7)
    torch.testing.assert_close(sk.els_pointwise(x, w_els.flatten(1), w_next.flatten(1), backend=name),
                               sequential(x, w_els, w_next), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", FAST_BACKENDS)
@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_low_precision_error_at_most_twice_pytorch(name, dtype):
    x, w_els, w_next = inputs(7, dtype=dtype)
    exact = outputs_and_grads(els("torch"), x.float(), w_els.float(), w_next.float())
    assert_within_twice_torch_error(outputs_and_grads(els(name), x, w_els, w_next), exact,
                                    outputs_and_grads(els("torch"), x, w_els, w_next))


@pytest.mark.parametrize("name", ALL_BACKENDS)
def test_gradcheck_float64(name):
    leaves = [t.requires_grad_() for t in inputs(4, cin=3, cmid=4, cout=2, batch=1, dtype=torch.float64)]
    assert torch.autograd.gradcheck(els(name), leaves, fast_mode=True)


@pytest.mark.parametrize("kernel,stride", [(1, 1), (3, 1), (5, 2)])
def test_fold_is_exact_in_float64(kernel, stride):
    x, w_els, _ = inputs(9, dtype=torch.float64)
    w_next = torch.randn(9, 7, kernel, kernel, dtype=torch.float64, device=DEVICE)
    folded = sk.fold_els(w_els, w_next)
    assert folded.dtype == torch.float64 and folded.shape == (9, 5, kernel, kernel)
    want = F.conv2d(F.conv2d(x, w_els), w_next, stride=stride, padding=kernel // 2)
    torch.testing.assert_close(F.conv2d(x, folded, stride=stride, padding=kernel // 2), want, rtol=1e-12, atol=1e-12)


def test_fold_contracts_over_the_els_outputs():
    w_els = torch.randn(7, 5)
    w_next = torch.randn(9, 7)
    folded = sk.fold_els(w_els, w_next)
    assert folded.shape == (9, 5, 1, 1)
    torch.testing.assert_close(folded[:, :, 0, 0], w_next.double() @ w_els.double())


def test_validation_errors_name_the_argument():
    x, w_els, w_next = inputs(7)
    with pytest.raises(ValueError, match="w_els has 5 input channels but x has 4"):
        sk.els_pointwise(x[:, :4], w_els, w_next)
    with pytest.raises(ValueError, match="w_next has 7 input channels but w_els has 6 outputs"):
        sk.els_pointwise(x, w_els[:6], w_next)
    with pytest.raises(ValueError, match=r"w_els must be a 1x1 conv weight"):
        sk.els_pointwise(x, w_els.expand(7, 5, 3, 3), w_next)
    with pytest.raises(TypeError, match="w_next has dtype torch.float64"):
        sk.els_pointwise(x, w_els, w_next.double())
    with pytest.raises(ValueError, match="x must have 4 dimensions"):
        sk.els_pointwise(x[None], w_els, w_next)
    with pytest.raises(ValueError, match="w_next has 7 input channels but w_els has 6 outputs"):
        sk.fold_els(w_els[:6], w_next)
