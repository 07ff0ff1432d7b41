"""Which implementation runs an op: the compiled extension, Triton, or the PyTorch reference.

Order when nothing is asked for (``SCARLET_KERNELS`` unset, empty or ``auto``): the CUDA extension when it loaded
and the tensors are on a GPU, then Triton when the tensors are on a GPU or ``TRITON_INTERPRET=1`` (Triton's CPU
interpreter, used by the tests), then PyTorch; the choice is logged once per backend and device type.
``backend=`` on a call, or ``SCARLET_KERNELS=torch|triton|cuda``, names one. Any other value of the variable is a
ValueError, and a named backend that cannot run (not built, not installed, no GPU, or not the given tensors' device)
raises :class:`BackendUnavailableError` instead of silently falling back.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import logging
import os
import types
import warnings

import torch

BACKENDS = ("torch", "triton", "cuda")
ENV_VAR = "SCARLET_KERNELS"
ENV_CHOICES = ("auto", *BACKENDS)

log = logging.getLogger("scarlet_kernels")


class BackendUnavailableError(RuntimeError):
    """A backend was asked for by name but cannot run here (not built, not installed, or wrong device)."""


def _load_extension() -> tuple[bool, str]:
    try:
        importlib.import_module("scarlet_kernels._C")
    except ImportError as e:
        return False, str(e)
    return True, ""


CUDA_EXTENSION_LOADED, CUDA_EXTENSION_ERROR = _load_extension()
if not CUDA_EXTENSION_LOADED:
    message = (f"scarlet_kernels: the compiled CUDA kernels are unavailable ({CUDA_EXTENSION_ERROR}); "
               "using Triton or PyTorch instead")
    if torch.cuda.is_available():
        warnings.warn(message, stacklevel=2)
    else:
        log.info(message)


@functools.cache
def triton_installed() -> bool:
    return importlib.util.find_spec("triton") is not None


def triton_interpreting() -> bool:
    """Triton reads this variable when a kernel module is imported; set it before the first Triton call."""
    return os.environ.get("TRITON_INTERPRET") == "1"


def _reason_unavailable(name: str, on_cuda: bool, no_gpu: str = "the tensors are not on a CUDA device") -> str | None:
    if name == "cuda":
        if not CUDA_EXTENSION_LOADED:
            return f"the extension scarlet_kernels._C did not load ({CUDA_EXTENSION_ERROR})"
        if not on_cuda:
            return no_gpu
    elif name == "triton":
        if not triton_installed():
            return "triton is not installed"
        if not (on_cuda or triton_interpreting()):
            return f"{no_gpu} and TRITON_INTERPRET=1 is not set"
    return None


def environment_backend() -> str | None:
    """The backend $SCARLET_KERNELS forces on this machine, or None (unset, empty or ``auto``).

    A value that is not a backend is a ValueError; a forced backend that this machine cannot run at all is a
    :class:`BackendUnavailableError` (the CLIs check this when they start, see ``scarlet.errors.cli_main``).
    """
    value = os.environ.get(ENV_VAR, "")
    if value in ("", "auto"):
        return None
    if value not in BACKENDS:
        raise ValueError(f"{ENV_VAR} must be one of {', '.join(ENV_CHOICES)} (or unset), got {value!r}")
    reason = _reason_unavailable(value, torch.cuda.is_available(), no_gpu="no CUDA device is visible")
    if reason is not None:
        raise BackendUnavailableError(f"{ENV_VAR}={value} cannot run on this machine: {reason}")
    return value


def select(requested: str | None, *tensors: torch.Tensor | None) -> str:
    """The backend that runs an op on ``tensors``: ``requested``, else $SCARLET_KERNELS, else the best available."""
    on_cuda = any(t is not None and t.is_cuda for t in tensors)
    name = requested if requested is not None else environment_backend()
    if name is None:
        chosen = next((c for c in ("cuda", "triton") if _reason_unavailable(c, on_cuda) is None), "torch")
        _announce(chosen, on_cuda)
        return chosen
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, got {name!r}")
    reason = _reason_unavailable(name, on_cuda)
    if reason is not None:
        raise BackendUnavailableError(f"backend {name!r} cannot run here: {reason}")
    return name


_announced: set[tuple[str, bool]] = set()


def _announce(chosen: str, on_cuda: bool) -> None:
    """Log the automatic choice the first time it is made for a kind of device."""
    if (chosen, on_cuda) not in _announced:
        _announced.add((chosen, on_cuda))
        log.info("scarlet_kernels: %s is %s: using the %s backend for %s tensors", ENV_VAR,
                 os.environ.get(ENV_VAR) or "unset", chosen, "CUDA" if on_cuda else "CPU")


def kernels(name: str) -> types.ModuleType:
    """The module holding the fast kernels of backend ``name`` ('triton' or 'cuda'), imported on first use."""
    if name == "triton":
        return importlib.import_module("scarlet_kernels.triton_kernels")
    if name == "cuda":
        return importlib.import_module("scarlet_kernels.cuda_kernels")
    raise ValueError(f"backend {name!r} has no kernel module")


def available() -> dict[str, bool]:
    """Which backends could run CUDA tensors on this machine (the PyTorch reference always can)."""
    gpu = torch.cuda.is_available()
    return {"torch": True, "triton": triton_installed() and (gpu or triton_interpreting()),
            "cuda": CUDA_EXTENSION_LOADED and gpu}
