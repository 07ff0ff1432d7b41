"""How a backend is chosen: automatically, by argument, or by $SCARLET_KERNELS; unavailable ones are errors."""

from __future__ import annotations

import pytest
import torch
from kernel_testing import INTERPRETING

import scarlet_kernels as sk
from scarlet_kernels import backend


def test_reference_backend_always_runs():
    assert backend.select("torch", torch.zeros(1)) == "torch"
    assert sk.available()["torch"]


@pytest.mark.skipif(not INTERPRETING, reason="checks the CPU-only choice")
def test_cpu_tensors_use_triton_when_interpreting_else_torch(monkeypatch):
    x = torch.zeros(1)
    assert backend.select(None, x) == "triton"
    monkeypatch.delenv("TRITON_INTERPRET")
    assert backend.select(None, x) == "torch"
    with pytest.raises(backend.BackendUnavailableError, match="TRITON_INTERPRET=1 is not set"):
        backend.select("triton", x)


def test_environment_variable_names_the_backend(monkeypatch):
    monkeypatch.setenv("SCARLET_KERNELS", "torch")
    assert backend.select(None, torch.zeros(1)) == "torch"
    monkeypatch.setenv("SCARLET_KERNELS", "fast")
    with pytest.raises(ValueError, match=r"\$SCARLET_KERNELS must be one of torch, triton, cuda, got 'fast'"):
        backend.select(None, torch.zeros(1))


def test_argument_wins_over_environment(monkeypatch):
    monkeypatch.setenv("SCARLET_KERNELS", "cuda")
    assert backend.select("torch", torch.zeros(1)) == "torch"
    with pytest.raises(ValueError, match="backend must be one of"):
        backend.select("cudnn", torch.zeros(1))


def test_unavailable_cuda_backend_is_a_clear_error():
    x = torch.zeros(1)  # a CPU tensor: the compiled kernels cannot run it even where they are built
    with pytest.raises(backend.BackendUnavailableError, match="backend 'cuda' cannot run here"):
        backend.select("cuda", x)
    w = torch.zeros(1, 1, 7, 7)
    with pytest.raises(backend.BackendUnavailableError):
        sk.masked_depthwise_conv2d(torch.zeros(1, 1, 1, 3, 3), w, [3], backend="cuda")


@pytest.mark.skipif(backend.CUDA_EXTENSION_LOADED, reason="the extension is built here")
def test_package_imports_without_the_extension():
    assert not backend.CUDA_EXTENSION_LOADED and backend.CUDA_EXTENSION_ERROR
    assert not sk.available()["cuda"]
