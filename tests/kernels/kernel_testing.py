"""What the kernel tests share: the backends that can run here, layouts, gradients and the error rules."""

from __future__ import annotations

import pytest
import torch

from scarlet_kernels import backend

GPU = torch.cuda.is_available()
INTERPRETING = not GPU and backend.triton_installed()  # conftest.py then runs Triton through its CPU interpreter
DEVICE = torch.device("cuda" if GPU else "cpu")
requires_gpu = pytest.mark.skipif(not GPU, reason="needs a CUDA GPU")

# The fast backends, each skipped with its reason where it cannot run: Triton runs everywhere (the interpreter
# on a CPU), the compiled extension needs a GPU and a build.
FAST_BACKENDS = [
    pytest.param("triton", marks=pytest.mark.skipif(not backend.triton_installed(), reason="triton not installed")),
    pytest.param("cuda", marks=pytest.mark.skipif(not (GPU and backend.CUDA_EXTENSION_LOADED),
                                                  reason="needs a GPU and the compiled extension")),
]
ALL_BACKENDS = [pytest.param("torch"), *FAST_BACKENDS]
LOW_PRECISION = [torch.bfloat16, torch.float16]


def to_channels_last(x: torch.Tensor) -> torch.Tensor:
    """The same values with channels-last strides ((..., C, H, W) stored as (..., H, W, C))."""
    n = x.dim() - 3
    return x.permute(*range(n), n + 1, n + 2, n).contiguous().permute(*range(n), n + 2, n, n + 1)


def outputs_and_grads(fn, *inputs: torch.Tensor) -> list[torch.Tensor]:
    """[fn(*inputs), d sum(fn * g) / d input for each input] with a fixed, deterministic g."""
    leaves = [t.detach().clone().requires_grad_() for t in inputs]
    y = fn(*leaves)
    g = torch.linspace(-1, 1, y.numel(), device=y.device, dtype=torch.float32).sin().view(y.shape).to(y.dtype)
    grads = torch.autograd.grad(y, leaves, g)
    return [y.detach(), *grads]


def assert_close(got: list[torch.Tensor], want: list[torch.Tensor], rtol: float = 1e-5, atol: float = 1e-5) -> None:
    for i, (g, w) in enumerate(zip(got, want, strict=True)):
        assert g.shape == w.shape, f"item {i}: shape {tuple(g.shape)} != {tuple(w.shape)}"
        torch.testing.assert_close(g, w, rtol=rtol, atol=atol, msg=lambda m, i=i: f"item {i}: {m}")


def assert_within_twice_torch_error(got: list[torch.Tensor], exact: list[torch.Tensor],
                                    torch_same_dtype: list[torch.Tensor]) -> None:
    """The flash-attention rule: a kernel's error against an fp32 reference is at most twice PyTorch's own error
    at the same dtype (plus a floor of 1e-6 where PyTorch happens to be exact)."""
    for i, (g, e, t) in enumerate(zip(got, exact, torch_same_dtype, strict=True)):
        err = (g.double() - e.double()).abs().max().item()
        torch_err = (t.double() - e.double()).abs().max().item()
        assert err <= 2 * torch_err + 1e-6, f"item {i}: error {err:.3g} > 2 x PyTorch's {torch_err:.3g}"
