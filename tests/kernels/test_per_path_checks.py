"""The argument checks every backend shares: per-path values read from a GPU once and trusted while unmodified,
and the one limit on path-images of the 1x1 kernels.

A GPU tensor of per-path values is faked on the CPU by a tensor subclass whose ``is_cuda`` is True: that is all
``checks.int_per_path`` looks at, so the caching of checked GPU tensors runs here exactly as on a GPU.
"""

from __future__ import annotations

import gc

import pytest
import torch
from kernel_testing import FAST_BACKENDS

import scarlet_kernels as sk
import scarlet_kernels.triton_kernels
from scarlet_kernels import checks, depthwise


class FakeCudaInts(torch.Tensor):
    """Integer values that claim to live on a GPU; counts the host reads (each one a device sync on a GPU)."""

    __torch_function__ = torch._C._disabled_torch_function_impl  # results of ops are plain CPU tensors
    host_reads = 0

    @property
    def is_cuda(self):
        return True

    def tolist(self):
        FakeCudaInts.host_reads += 1
        return super().tolist()


@pytest.fixture
def fake_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_current_stream_capturing", lambda: False)  # raises on a CPU-only build
    monkeypatch.setattr(FakeCudaInts, "host_reads", 0)


def _count_launches(monkeypatch, name):
    """Count the forward launches of backend ``name``'s depthwise kernel (the reference for 'torch')."""
    launches = []
    module, attr = (depthwise, "reference") if name == "torch" else (scarlet_kernels.triton_kernels,
                                                                      "depthwise_forward")
    real = getattr(module, attr)
    monkeypatch.setattr(module, attr, lambda *a, **k: launches.append(1) or real(*a, **k))
    return launches


@pytest.mark.parametrize("name", ["torch", *FAST_BACKENDS[:1]])
def test_gpu_per_path_values_are_read_once_and_trusted_while_unmodified(fake_gpu, monkeypatch, name):
    kernels = [3, 5, 7]
    gen = torch.Generator().manual_seed(0)
    x, w = torch.randn(3, 1, 2, 5, 5, generator=gen), torch.randn(3, 2, 7, 7, generator=gen)
    want = depthwise.reference(x, w, kernels)
    launches = _count_launches(monkeypatch, name)
    ks = torch.tensor(kernels).as_subclass(FakeCudaInts)
    for call in range(1, 4):  # the same tensor again and again: the second call used to raise
        torch.testing.assert_close(sk.masked_depthwise_conv2d(x, w, ks, backend=name), want, rtol=1e-5, atol=1e-5)
        assert len(launches) == call
    assert FakeCudaInts.host_reads == 1
    ks[1] = 4  # modified in place: checked again, and rejected
    with pytest.raises(ValueError, match=r"kernel_sizes values must be in \(3, 5, 7\), got 4"):
        sk.masked_depthwise_conv2d(x, w, ks, backend=name)
    assert FakeCudaInts.host_reads == 2 and len(launches) == 3


def test_checked_tensors_are_forgotten_when_freed(fake_gpu):
    before = len(checks._checked_on_device)
    ks = torch.tensor([3, 5]).as_subclass(FakeCudaInts)
    checks.int_per_path("kernel_sizes", ks, 2, ks.device, allowed=(3, 5, 7))
    assert len(checks._checked_on_device) == before + 1
    del ks
    gc.collect()
    assert len(checks._checked_on_device) == before


def _pointwise_calls(paths, images):
    x = torch.zeros(paths, images, 1, 1, 1)
    gate, w = torch.ones(paths, images, 1), torch.ones(paths, 1, 1)
    return [lambda name: sk.scaled_pointwise(x, gate, w, backend=name),
            lambda name: sk.els_pointwise(x.view(paths * images, 1, 1, 1), w[0], w[0], backend=name)]


# The limit is checked before a backend is chosen, so every backend refuses alike, available here or not.
@pytest.mark.parametrize("name", ["torch", "triton", "cuda"])
@pytest.mark.parametrize("paths,images", [(1, 65536), (2, 32768)])
def test_one_path_image_limit_for_every_backend(name, paths, images):
    for call in _pointwise_calls(paths, images)[: 2 if paths == 1 else 1]:
        with pytest.raises(ValueError, match=rf"at most 65535 path-images .* got {paths} x {images}"):
            call(name)


def test_the_limit_itself_is_accepted():
    scaled, els = _pointwise_calls(1, 65535)
    assert scaled("torch").shape == (1, 65535, 1, 1, 1)
    assert els("torch").shape == (65535, 1, 1, 1)
