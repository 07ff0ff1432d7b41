"""``python -m scarlet.export`` end to end on a saved tiny supernet."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from fold_cases import randomized_supernet, tiny_config

from scarlet.checkpoint import save_checkpoint
from scarlet.export import load_exported
from scarlet.fold import random_inputs

ROOT = Path(__file__).resolve().parents[2]


def _run(*args):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "scarlet.export", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    config = tiny_config("scarlet-s2", "els", in_channels=1)
    sn = randomized_supernet(config, dtype=torch.float32)
    d = tmp_path_factory.mktemp("run")
    save_checkpoint(d / "checkpoint.pt", {"kind": "supernet", "config": config.to_dict(), "model": sn.state_dict()})
    return d, sn


def test_cli_exports_a_published_arch(run_dir, tmp_path):
    d, sn = run_dir
    arch = "1,3,1,0,12,0,0,0,12,12,12,12,12,0,0,0,12,12,9"  # the S2 model of REFERENCE section 2
    r = _run("--supernet", str(d), "--arch", arch, "--out", str(tmp_path), "--onnx", "--fold-bn")
    assert r.returncode == 0, r.stderr
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["ok"] and report["verified"] and report["arch"] == arch and report["fold_bn"]
    assert report["check"]["float64"]["max_rel"] <= 1e-6
    assert [p["layer"] for p in report["projections"]] == [6, 14]
    assert report["onnx"]["ok"] and report["pt2"]["ok"]
    x = random_inputs(sn.config, 3)
    with torch.no_grad():
        ref = sn(x, [int(g) for g in arch.split(",")])
        torch.testing.assert_close(load_exported(tmp_path)(x), ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())


def test_cli_bad_arch_exits_2_with_one_line(run_dir, tmp_path):
    d, _ = run_dir
    r = _run("--supernet", str(d), "--arch", "1,2,3", "--out", str(tmp_path))
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "19" in r.stderr and "Traceback" not in r.stderr
