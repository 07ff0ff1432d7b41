"""Data loss and faults: diverging updates, full disks, torn logs, two writers. After each fault the last good
checkpoint loads and --resume ends with the weights of an uninterrupted run."""

import json
import threading

import pytest
import torch

from scarlet.optim import RMSpropTF
from hardening_cases import STANDALONE, DiskFull, error_line, same_weights

from scarlet.rundir import RunLock
from scarlet.train import main as train_main

RUN = [*STANDALONE, "--max-steps", "4", "--checkpoint-every", "2", "--seed", "3"]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run every faulted-then-resumed run must reproduce."""
    out = tmp_path_factory.mktemp("ref") / "run"
    assert train_main([*RUN, "--out", str(out)]) == 0
    return out


def resume_and_compare(out, reference):
    assert train_main(["--resume", "--out", str(out), "--max-steps", "4", "--no-progress"]) == 0
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 4
    assert same_weights(out, reference)
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 4


def poison_update(monkeypatch, at: int):
    """The ``at``-th optimizer update writes inf into the weights (what --lr inf did before it was refused)."""
    calls = {"n": 0}
    real = RMSpropTF.step

    def step(self, *args, **kwargs):
        result = real(self, *args, **kwargs)
        calls["n"] += 1
        if calls["n"] == at:
            with torch.no_grad():
                self.param_groups[0]["params"][0].fill_(float("inf"))
        return result

    monkeypatch.setattr(RMSpropTF, "step", step)


def test_diverging_update_is_never_checkpointed(reference, tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    poison_update(monkeypatch, at=4)  # the loss of step 4 is computed before the update: still finite
    line = error_line(capsys, train_main, [*RUN, "--out", str(out)])
    assert "diverged at step 4 (non-finite weights after the update)" in line
    assert f"last good checkpoint is {out / 'checkpoint.pt'} (step 2)" in line
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2 and all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    monkeypatch.undo()
    resume_and_compare(out, reference)


def test_divergence_before_any_checkpoint_says_so(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    poison_update(monkeypatch, at=1)
    line = error_line(capsys, train_main, [*RUN, "--out", str(out)])
    assert "diverged at step 2 (loss nan)" in line and "no checkpoint has been written" in line
    assert not (out / "checkpoint.pt").exists()


@pytest.mark.parametrize("write,message", [(1, "no checkpoint has been written"), (3, "(step 2)"),
                                           (4, "training finished")],
                         ids=["config.json", "second checkpoint", "summary.json"])
def test_full_disk_during_training(write, message, reference, tmp_path, monkeypatch, capsys):
    """fsync 1 is config.json, 2 and 3 the checkpoints of steps 2 and 4, 4 summary.json."""
    out = tmp_path / "run"
    DiskFull(monkeypatch, write)
    line = error_line(capsys, train_main, [*RUN, "--out", str(out)])
    assert "No space left on device" in line and message in line, line
    assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    if write == 1:
        assert not (out / "checkpoint.pt").exists()
        return
    resume_and_compare(out, reference)


def test_torn_metrics_line_is_dropped_on_resume(reference, tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main([*RUN, "--max-steps", "2", "--out", str(out)]) == 0
    with open(out / "metrics.jsonl", "ab") as f:
        f.write(b'{"step": 3, "epoch": 0.0')  # the disk filled up in the middle of a line
    resume_and_compare(out, reference)


def test_damaged_metrics_line_is_one_line_error(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_main([*RUN, "--max-steps", "2", "--out", str(out)]) == 0
    good = (out / "metrics.jsonl").read_text()
    (out / "metrics.jsonl").write_text("garbage\n" + good)
    assert "metrics.jsonl line 1 is not a JSON object" in error_line(capsys, train_main,
                                                                      ["--resume", "--out", str(out)])


def test_second_writer_is_refused_and_first_finishes_intact(reference, tmp_path, monkeypatch, capsys):
    import scarlet.train as train_module

    out = tmp_path / "run"
    first_saving, go_on = threading.Event(), threading.Event()
    real = train_module.save_checkpoint

    def slow_save(path, state):  # the first writer pauses in the middle of its run
        first_saving.set()
        assert go_on.wait(60)
        real(path, state)

    monkeypatch.setattr(train_module, "save_checkpoint", slow_save)
    result = {}
    first = threading.Thread(target=lambda: result.setdefault("rc", train_main([*RUN, "--out", str(out)])))
    first.start()
    try:
        assert first_saving.wait(60)
        for argv in ([*RUN, "--out", str(out)], ["--resume", "--out", str(out)]):
            assert "another process is writing to" in error_line(capsys, train_main, argv)
    finally:
        go_on.set()
        first.join(60)
    assert result == {"rc": 0} and same_weights(out, reference)
    RunLock(out).release()  # the first writer released its lock when it finished


def test_locked_directory_refuses_search_and_export(supernet_run, tmp_path, capsys):
    from scarlet.export import main as export_main
    from scarlet.search.cli import main as search_main

    out = tmp_path / "busy"
    out.mkdir()
    with RunLock(out):
        assert "another process is writing to" in error_line(capsys, export_main, [
            "--supernet", str(supernet_run), "--arch", "fairnas-a", "--out", str(out)])
        assert "another process is writing to" in error_line(capsys, search_main, [
            "--supernet", str(supernet_run), "--out", str(out), "--population", "2", "--generations", "0",
            "--val-batches", "1", "--no-progress"])
    assert sorted(p.name for p in out.iterdir()) == [".scarlet.lock"]
