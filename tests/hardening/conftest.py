"""Fixtures of the hardening tests (the shared helpers are in hardening_cases.py)."""

import shutil

import pytest

from hardening_cases import SUPERNET


@pytest.fixture(scope="session")
def supernet_run(tmp_path_factory):
    """A tiny trained fairnas supernet (2 steps), shared read-only; copy it before changing anything."""
    from scarlet.train import main

    out = tmp_path_factory.mktemp("supernet") / "run"
    assert main([*SUPERNET, "--max-steps", "2", "--out", str(out)]) == 0
    return out


@pytest.fixture
def run_copy(supernet_run, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(supernet_run, dst)
    (dst / ".scarlet.lock").unlink(missing_ok=True)
    return dst
