"""The CUDA kernels of csrc/ run on the CPU through a host emulation, against the PyTorch reference.

Where no GPU runs them for real, this still checks their indexing and arithmetic: g++ compiles csrc/*.cu against
the stand-in headers of cuda_emulation/ (each launch ``k<<<grid, block, ...>>>(args)`` rewritten into
``::emulator::launch(k, grid, block, ...)(args)``), and the result takes the place of torch.ops.scarlet_kernels
under scarlet_kernels.cuda_kernels. So the whole CUDA backend runs (autograd functions, allocation, both kernel
stages) except csrc/bindings.cpp, whose argument unpacking EmulatedOps below mirrors.
"""

from __future__ import annotations

import ctypes
import functools
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from kernel_testing import (LOW_PRECISION, assert_close, assert_within_twice_torch_error, outputs_and_grads,
                            to_channels_last)

import scarlet_kernels as sk
from scarlet_kernels import backend, cuda_kernels

HERE = Path(__file__).resolve().parent
CSRC = HERE.parent.parent / "csrc"
DTYPES = {torch.float32: 0, torch.float16: 1, torch.bfloat16: 2, torch.float64: 3}

def _gcc_major() -> int:
    if shutil.which("g++") is None:
        return 0
    return int(subprocess.run(["g++", "-dumpversion"], capture_output=True, text=True).stdout.split(".")[0] or 0)


# ucontext fibers need glibc; the fp16 stand-in needs g++ >= 12 (_Float16).
pytestmark = pytest.mark.skipif(sys.platform != "linux" or _gcc_major() < 12,
                                reason="the emulation needs Linux and g++ >= 12")


def _int64s(*values: int):
    return (ctypes.c_int64 * len(values))(*values)


def _ptr(t: torch.Tensor | None):
    return None if t is None else ctypes.c_void_p(t.data_ptr())


def _planes(t: torch.Tensor):
    """(rows, C, HW, row stride, C stride, HW stride), as csrc/bindings.cpp computes them."""
    c, hw = t.shape[-3], t.shape[-2] * t.shape[-1]
    return _int64s(t.numel() // (c * hw), c, hw, t.stride(-4), t.stride(-3), t.stride(-1))


class EmulatedOps:
    """torch.ops.scarlet_kernels on CPU tensors, calling the emulated kernels with the arguments bindings.cpp
    would pass."""

    def __init__(self, lib: ctypes.CDLL):
        self.lib = lib

    @staticmethod
    def _ok(rc: int) -> None:
        assert rc == 0, f"kernel launch returned {rc}"

    def depthwise_forward(self, x, weight, ks, ch, stride, cl, y):
        dims = _int64s(*x.shape, *y.shape[-2:], stride, int(cl))
        self._ok(self.lib.emu_depthwise_forward(DTYPES[x.dtype], dims, _ptr(ks), _ptr(ch), _ptr(x),
                                                _int64s(*x.stride()), _ptr(weight), _ptr(y), _int64s(*y.stride())))

    def depthwise_backward_input(self, dy, weight, ks, ch, stride, cl, dx):
        dims = _int64s(*dx.shape, *dy.shape[-2:], stride, int(cl))
        self._ok(self.lib.emu_depthwise_backward_input(DTYPES[dx.dtype], dims, _ptr(ks), _ptr(ch), _ptr(dy),
                                                       _int64s(*dy.stride()), _ptr(weight), _ptr(dx),
                                                       _int64s(*dx.stride())))

    def depthwise_backward_weight_partial(self, dy, x, ks, ch, stride, cl, part):
        dims = _int64s(*x.shape, *dy.shape[-2:], stride, int(cl))
        self._ok(self.lib.emu_depthwise_backward_weight_partial(
            DTYPES[x.dtype], dims, _ptr(ks), _ptr(ch), _ptr(dy), _int64s(*dy.stride()), _ptr(x),
            _int64s(*x.stride()), _ptr(part), part.shape[0]))

    def channel_sum(self, a, b, cl, out):
        self._ok(self.lib.emu_channel_sum(DTYPES[a.dtype], _ptr(a), _planes(a), _ptr(b),
                                          _planes(a if b is None else b), _ptr(out), int(cl)))

    def channel_scale(self, a, s, add, cl, out):
        self._ok(self.lib.emu_channel_scale(DTYPES[a.dtype], _ptr(a), _planes(a), _ptr(s), _ptr(add), _ptr(out),
                                            _planes(out), int(cl)))

    def pointwise(self, x, w, gate, y):
        px, py = _planes(x), _planes(y)
        dims = _int64s(x.shape[0], x.shape[1], x.shape[2], w.shape[1], px[2], x.stride(0), x.stride(1), px[4],
                       px[5], *w.stride(), y.stride(0), y.stride(1), py[4], py[5])
        self._ok(self.lib.emu_pointwise(DTYPES[x.dtype], dims, _ptr(x), _ptr(w), _ptr(gate), _ptr(y)))


@pytest.fixture(scope="module")
def emulated_library(tmp_path_factory) -> ctypes.CDLL:
    build = tmp_path_factory.mktemp("cuda_emulation")
    flags = ["-std=c++20", "-O1", "-fPIC", "-Wno-unknown-pragmas", "-I", str(HERE / "cuda_emulation"),
             "-I", str(CSRC)]
    compiles = []
    for source in [*sorted(CSRC.glob("*.cu")), HERE / "cuda_emulation" / "harness.cpp"]:
        text, launches = re.subn(r"(\w+<T>)<<<(.*?)>>>\(", r"::emulator::launch(\1, \2)(", source.read_text(),
                                 flags=re.S)
        assert "<<<" not in text and (launches or source.suffix == ".cpp"), f"unrecognised launch in {source}"
        (build / f"{source.stem}.cpp").write_text(text)
        compiles.append(subprocess.Popen(["g++", *flags, "-c", f"{source.stem}.cpp", "-o", f"{source.stem}.o"],
                                         cwd=build, stderr=subprocess.PIPE, text=True))
    for p in compiles:
        assert p.wait() == 0, p.stderr.read()
    objects = sorted(str(o) for o in build.glob("*.o"))
    subprocess.run(["g++", "-shared", *objects, "-o", "libemulated.so"], cwd=build, check=True)
    return ctypes.CDLL(str(build / "libemulated.so"))


@pytest.fixture
def emulated_cuda(monkeypatch, emulated_library):
    """backend='cuda' runs the emulated kernels on CPU tensors."""
    monkeypatch.setattr(cuda_kernels, "ops", EmulatedOps(emulated_library))
    select = backend.select
    monkeypatch.setattr(backend, "select", lambda requested, *t: "cuda" if requested == "cuda" else
                        select(requested, *t))


KERNELS, CHANNELS = [3, 5, 7], [5, 2, 0]


def depthwise_inputs(size, dtype=torch.float32, layout="standard"):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 5, size, size, generator=gen).to(dtype)
    w = torch.randn(3, 5, 7, 7, generator=gen).to(dtype)
    return (to_channels_last(x) if layout == "channels_last" else x), w


def conv(name, stride):
    return lambda x, w: sk.masked_depthwise_conv2d(x, w, KERNELS, stride, CHANNELS, backend=name)


@pytest.mark.parametrize("stride,layout", [(1, "standard"), (2, "channels_last"), (2, "standard")])
def test_depthwise(emulated_cuda, stride, layout):
    x, w = depthwise_inputs(7, layout=layout)
    got = outputs_and_grads(conv("cuda", stride), x, w)
    assert_close(got, outputs_and_grads(conv("torch", stride), x, w), rtol=1e-4, atol=1e-4)
    assert got[1].stride() == x.stride()


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_depthwise_low_precision(emulated_cuda, dtype):
    x, w = depthwise_inputs(7, dtype=dtype)
    exact = outputs_and_grads(conv("torch", 1), x.float(), w.float())
    assert_within_twice_torch_error(outputs_and_grads(conv("cuda", 1), x, w), exact,
                                    outputs_and_grads(conv("torch", 1), x, w))


def test_depthwise_gradcheck_float64(emulated_cuda):
    x, w = depthwise_inputs(5, dtype=torch.float64)
    assert torch.autograd.gradcheck(conv("cuda", 2), (x.requires_grad_(), w.requires_grad_()), fast_mode=True)


def test_depthwise_weight_gradient_splits(emulated_cuda):
    x, w = depthwise_inputs(7)
    dy = torch.randn(3, 2, 5, 7, 7)
    ks, ch = torch.tensor(KERNELS, dtype=torch.int32), torch.tensor(CHANNELS, dtype=torch.int32)
    split = cuda_kernels.depthwise_backward_weight(dy, x, ks, ch, 1, splits=3)
    torch.testing.assert_close(split, cuda_kernels.depthwise_backward_weight(dy, x, ks, ch, 1, splits=1))
    assert torch.equal(split, cuda_kernels.depthwise_backward_weight(dy, x, ks, ch, 1, splits=3))


def se_inputs(layout, dtype=torch.float32):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, 6, 5, 5, generator=gen).to(dtype)
    params = [torch.randn(*s, generator=gen).to(dtype) for s in ((3, 2, 6), (3, 2), (3, 6, 2), (3, 6))]
    gate, w = torch.rand(3, 2, 6, generator=gen).to(dtype), torch.randn(3, 9, 6, generator=gen).to(dtype)
    return (to_channels_last(x) if layout == "channels_last" else x), params, gate, w


@pytest.mark.parametrize("layout", ["standard", "channels_last"])
def test_se_and_pointwise(emulated_cuda, layout):
    x, params, gate, w = se_inputs(layout)
    for op in (sk.fused_se, sk.se_gate):
        got, want = (outputs_and_grads(functools.partial(op, enabled=[True, False, True], backend=name), x, *params)
                     for name in ("cuda", "torch"))
        assert_close(got, want)
    scaled = lambda name: lambda x, g, w: sk.scaled_pointwise(x, g, w, backend=name)  # noqa: E731
    assert_close(outputs_and_grads(scaled("cuda"), x, gate, w), outputs_and_grads(scaled("torch"), x, gate, w),
                 rtol=1e-4, atol=1e-4)
    els = lambda name: lambda x, a, b: sk.els_pointwise(x, a, b, backend=name)  # noqa: E731
    a, b = w[0], w[1].T.contiguous()
    assert_close(outputs_and_grads(els("cuda"), x[0], a, b), outputs_and_grads(els("torch"), x[0], a, b),
                 rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("dtype", LOW_PRECISION)
def test_se_and_pointwise_low_precision(emulated_cuda, dtype):
    x, params, gate, w = se_inputs("standard", dtype)
    fused = lambda name: lambda x, *p: sk.fused_se(x, *p, gate="sigmoid", backend=name)  # noqa: E731
    exact = outputs_and_grads(fused("torch"), x.float(), *(p.float() for p in params))
    assert_within_twice_torch_error(outputs_and_grads(fused("cuda"), x, *params), exact,
                                    outputs_and_grads(fused("torch"), x, *params))
    scaled = lambda name: lambda x, g, w: sk.scaled_pointwise(x, g, w, backend=name)  # noqa: E731
    exact = outputs_and_grads(scaled("torch"), x.float(), gate.float(), w.float())
    assert_within_twice_torch_error(outputs_and_grads(scaled("cuda"), x, gate, w), exact,
                                    outputs_and_grads(scaled("torch"), x, gate, w))
