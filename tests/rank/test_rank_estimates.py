"""Supernet estimates: batched and sequential evaluation agree (top-1 and loss)."""

from pathlib import Path

import pytest
import torch

from scarlet.rank.estimates import SupernetRun, estimate
from scarlet.rank.ground_truth import stratified_archs
from scarlet.supernet import Supernet, SupernetConfig


def test_batched_equals_sequential():
    torch.manual_seed(0)
    config = SupernetConfig(space="scarlet-s2", width=0.125, resolution=16, in_channels=1, num_classes=10)
    run = SupernetRun("tiny", Path("."), Supernet(config).eval(), {})
    archs = stratified_archs(config, 5)
    calib = [(torch.randn(16, 1, 16, 16), torch.randint(10, (16,))) for _ in range(2)]
    val = [(torch.randn(20, 1, 16, 16), torch.randint(10, (20,))) for _ in range(2)]
    batched = estimate(run, archs, calib, val, "batched", chunk=3)
    sequential = estimate(run, archs, calib, val, "sequential")
    assert len(batched) == 5
    for b, s in zip(batched, sequential):
        assert b["acc"] == pytest.approx(s["acc"], abs=1 / 40 + 1e-9)  # at most one borderline image
        assert b["loss"] == pytest.approx(s["loss"], rel=1e-4)
        assert s["loss"] > 0
