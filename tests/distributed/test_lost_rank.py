"""A rank that dies (SIGKILL) or hangs (SIGSTOP) in a 2-rank ``python -m scarlet.train`` run: the other rank exits
with one line (code 2) instead of waiting forever, and the last checkpoint survives. The ranks are started as
torchrun starts them (environment variables, one process each) but without torchrun, whose agent would itself
stop the survivor."""

import os
import signal
import subprocess
import sys
import time

import pytest
from ranks import free_port, rank_env, write_tiny_cifar

from scarlet.checkpoint import load_checkpoint


def start_ranks(tmp_path, timeout_s):
    port, data = free_port(), write_tiny_cifar(tmp_path / "cifar")
    args = [sys.executable, "-m", "scarlet.train", "--space", "fairnas", "--width", "0.125", "--resolution", "16",
            "--batch-size", "16", "--dataset", f"cifar10:{data}", "--epochs", "100", "--checkpoint-every", "1",
            "--no-progress", "--dist-timeout", str(timeout_s), "--out", str(tmp_path / "run")]
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return [subprocess.Popen(args, env={**env, **rank_env(r, 2, port)}, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True) for r in range(2)]


@pytest.mark.parametrize("how", ["killed", "hung"])
def test_a_lost_rank_ends_the_run_with_one_line_and_the_checkpoint_survives(tmp_path, how):
    timeout_s = 5
    ranks = start_ranks(tmp_path, timeout_s)
    checkpoint = tmp_path / "run" / "checkpoint.pt"
    try:
        deadline = time.time() + 120
        while not checkpoint.exists():
            assert time.time() < deadline and all(p.poll() is None for p in ranks), "the ranks did not train"
            time.sleep(0.1)
        os.kill(ranks[1].pid, signal.SIGKILL if how == "killed" else signal.SIGSTOP)
        lost = time.time()
        _, err = ranks[0].communicate(timeout=timeout_s + 60)
        waited = time.time() - lost
    finally:
        for p in ranks:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert ranks[0].returncode == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: rank 0: the gradient all-reduce failed: another rank exited or did not "
                               f"answer within {timeout_s} s"), err
    assert lines[0].endswith("the last checkpoint written is intact"), err
    if how == "hung":  # nothing closes the connection: only the process-group timeout ends the wait
        assert waited >= timeout_s * 0.8, waited
    state = load_checkpoint(checkpoint)
    assert state["step"] >= 1 and state["run_config"]["world_size"] == 2
