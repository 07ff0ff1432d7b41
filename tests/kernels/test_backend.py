"""How a backend is chosen: automatically, by argument, or by $SCARLET_KERNELS; unavailable ones are errors."""

from __future__ import annotations

import os
import subprocess
import sys

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
    for automatic in ("auto", ""):
        monkeypatch.setenv("SCARLET_KERNELS", automatic)
        assert backend.environment_backend() is None
        assert backend.select(None, torch.zeros(1)) == ("triton" if INTERPRETING else "torch")
    monkeypatch.setenv("SCARLET_KERNELS", "fast")
    message = r"SCARLET_KERNELS must be one of auto, torch, triton, cuda \(or unset\), got 'fast'"
    for call in (backend.environment_backend, lambda: backend.select(None, torch.zeros(1))):
        with pytest.raises(ValueError, match=message):
            call()


def _no_extension(monkeypatch):
    monkeypatch.setattr(backend, "CUDA_EXTENSION_LOADED", False)
    monkeypatch.setattr(backend, "CUDA_EXTENSION_ERROR", "No module named 'scarlet_kernels._C'")


def _no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.delenv("TRITON_INTERPRET", raising=False)


def test_forced_backend_this_machine_cannot_run_is_an_error(monkeypatch):
    _no_extension(monkeypatch)
    monkeypatch.setenv("SCARLET_KERNELS", "cuda")
    with pytest.raises(backend.BackendUnavailableError, match=r"SCARLET_KERNELS=cuda cannot run on this machine: "
                                                              r"the extension scarlet_kernels._C did not load"):
        backend.environment_backend()
    _no_gpu(monkeypatch)
    monkeypatch.setattr(backend, "triton_installed", lambda: True)
    monkeypatch.setenv("SCARLET_KERNELS", "triton")
    with pytest.raises(backend.BackendUnavailableError, match="no CUDA device is visible and TRITON_INTERPRET=1 "
                                                              "is not set"):
        backend.environment_backend()
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert backend.environment_backend() == "triton"


@pytest.mark.parametrize("value,message", [
    ("bogus", "error: SCARLET_KERNELS must be one of auto, torch, triton, cuda (or unset), got 'bogus'"),
    ("cuda", "error: SCARLET_KERNELS=cuda cannot run on this machine: the extension scarlet_kernels._C did not load"),
    ("triton", "error: SCARLET_KERNELS=triton cannot run on this machine: no CUDA device is visible"),
])
def test_clis_refuse_a_bad_kernel_environment_in_one_line(monkeypatch, capsys, value, message):
    from scarlet.cost import main  # the cheapest CLI; all four share the check in scarlet.errors.cli_main

    _no_extension(monkeypatch)
    _no_gpu(monkeypatch)
    monkeypatch.setenv("SCARLET_KERNELS", value)
    with pytest.raises(SystemExit) as exit_:
        main(["scarlet-a"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and err.startswith(message) and err.count("\n") == 1, err
    monkeypatch.setenv("SCARLET_KERNELS", "torch")
    assert main(["scarlet-a"]) in (0, None)


def test_automatic_choice_is_logged_once_per_device_type(monkeypatch, caplog):
    monkeypatch.setattr(backend, "_announced", set())
    with caplog.at_level("INFO", logger="scarlet_kernels"):
        chosen = [backend.select(None, torch.zeros(1)) for _ in range(3)]
    said = [r.getMessage() for r in caplog.records if r.name == "scarlet_kernels"]
    assert len(said) == 1 and f"using the {chosen[0]} backend for CPU tensors" in said[0], said


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


def test_package_imports_and_runs_without_the_extension():
    """In a fresh interpreter whose import of the extension fails, as on a machine where it was never built."""
    code = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(message)s")
sys.modules["scarlet_kernels._C"] = None  # makes `import scarlet_kernels._C` raise ImportError
import torch
import scarlet_kernels as sk
from scarlet_kernels import backend
assert not backend.CUDA_EXTENSION_LOADED and "scarlet_kernels._C" in backend.CUDA_EXTENSION_ERROR
assert sk.available()["cuda"] is False
x, w = torch.ones(1, 1, 1, 3, 3), torch.ones(1, 1, 7, 7)
print("sum", sk.masked_depthwise_conv2d(x, w, [3], backend="torch").sum().item())
"""
    env = {k: v for k, v in os.environ.items() if k not in ("SCARLET_KERNELS", "TRITON_INTERPRET")}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "sum 49.0" in proc.stdout  # a 3x3 box filter over a 3x3 image of ones: 4 corners of 4, 4 edges of 6, 9
    assert proc.stderr.count("the compiled CUDA kernels are unavailable") == 1, proc.stderr
