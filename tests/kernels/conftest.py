"""Kernel tests run the Triton kernels on the CPU through Triton's interpreter when there is no GPU.

Triton decides between compiling and interpreting when a kernel module is imported, so TRITON_INTERPRET=1 is set
here, before anything imports scarlet_kernels.triton_kernels, and the module is imported at once. The variable is
then restored, and set again only around each test of this directory: elsewhere in a session the automatic
backend choice keeps CPU tensors on the PyTorch path instead of the (slow) interpreter.
"""

import os

import pytest
from kernel_testing import INTERPRETING

if INTERPRETING:
    _previous = os.environ.get("TRITON_INTERPRET")
    os.environ["TRITON_INTERPRET"] = "1"
    import scarlet_kernels.triton_kernels  # noqa: E402,F401

    if _previous is None:
        del os.environ["TRITON_INTERPRET"]
    else:
        os.environ["TRITON_INTERPRET"] = _previous


@pytest.fixture(autouse=True)
def _kernel_environment(monkeypatch):
    if INTERPRETING:
        monkeypatch.setenv("TRITON_INTERPRET", "1")
    monkeypatch.delenv("SCARLET_KERNELS", raising=False)
