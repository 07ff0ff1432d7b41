"""Training CLI: smoke tests per space, resume exactness, bad input (one line, exit 2, nothing overwritten)."""

import json
import subprocess
import sys

import pytest
import torch

from scarlet import load_supernet, parse_arch
from scarlet.checkpoint import atomic_write_bytes
from scarlet.train import main

TINY = ["--width", "0.125", "--resolution", "16", "--batch-size", "16", "--eval-archs", "1",
        "--recalib-batches", "1", "--no-progress"]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "scarlet.train", *args], capture_output=True, text=True)


def weights(path):
    return torch.load(path / "checkpoint.pt", weights_only=True)["model"]


@pytest.mark.parametrize("space,skip", [("fairnas", "els"), ("scarlet-s1", "skip"), ("scarlet-s2", "els-relu")])
def test_one_step_smoke_per_space(tmp_path, space, skip):
    out = tmp_path / "run"
    assert main(["--space", space, "--skip", skip, "--max-steps", "1", "--out", str(out), *TINY]) == 0
    summary = json.loads((out / "summary.json").read_text())
    m = {"fairnas": 6, "scarlet-s1": 7, "scarlet-s2": 13}[space]
    assert summary["choice_counts"] == [[1] * m] * 19
    assert summary["steps"] == 1 and summary["final_train_loss"] > 0
    assert {r["name"] for r in summary["evaluated"]} >= {"random-0"}
    published = {"fairnas": ["fairnas-a", "fairnas-b", "fairnas-c"], "scarlet-s1": [],
                 "scarlet-s2": ["scarlet-a", "scarlet-b", "scarlet-c"]}[space]  # each in its own space only
    assert [(r["name"], r["arch"]) for r in summary["evaluated"] if not r["name"].startswith("random-")] == [
        (name, ",".join(map(str, parse_arch(name, space).genes))) for name in published]
    assert all(0 <= r["acc"] <= 1 for r in summary["evaluated"])
    assert json.loads((out / "config.json").read_text())["space"] == space
    assert [json.loads(l)["step"] for l in (out / "metrics.jsonl").read_text().splitlines()] == [1]
    net = load_supernet(out)
    assert not net.training and net.space.name == space and net.resolution == 16
    assert net(torch.randn(2, 1, 16, 16), [0] * 19).shape == (2, 10)


@pytest.mark.parametrize("sampler", ["fair", "uniform"])
def test_resume_continues_exactly(tmp_path, sampler):
    common = ["--space", "scarlet-s1", "--sampler", sampler, "--epochs", "2", "--seed", "7", *TINY]
    straight, split = tmp_path / "straight", tmp_path / "split"
    main([*common, "--max-steps", "6", "--out", str(straight)])
    main([*common, "--max-steps", "3", "--out", str(split)])
    main(["--resume", "--max-steps", "6", "--out", str(split), "--no-progress"])
    a, b = weights(straight), weights(split)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (straight, split))
    assert sa["choice_counts"] == sb["choice_counts"] and sa["final_train_loss"] == sb["final_train_loss"]
    steps = [json.loads(l)["step"] for l in (split / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == 6


def test_standalone_training_and_resume(tmp_path):
    args = ["--arch", "scarlet-c", "--epochs", "1", "--seed", "1", *TINY]
    main([*args, "--out", str(tmp_path / "a"), "--max-steps", "4"])
    main([*args, "--out", str(tmp_path / "b"), "--max-steps", "2"])
    main(["--resume", "--out", str(tmp_path / "b"), "--max-steps", "4", "--no-progress"])
    for k, v in weights(tmp_path / "a").items():
        assert torch.equal(v, weights(tmp_path / "b")[k]), k
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["kind"] == "standalone" and summary["arch"] == parse_arch("scarlet-c", "scarlet-s2").encoding()
    assert summary["config"]["dropout"] == 0.2


def test_checkpoint_every_and_crash_leaves_last_good_checkpoint(tmp_path, monkeypatch):
    out = tmp_path / "run"
    import scarlet.train as train_mod

    calls = {"n": 0}
    real = train_mod.save_checkpoint

    def crash_on_second(path, state):
        calls["n"] += 1
        if calls["n"] == 2:  # the process dies halfway through writing the second checkpoint
            def torn(f):
                f.write(b"half a checkpoint")
                assert list(out.glob(".checkpoint.pt.*.tmp")), "the write goes to a temp file first"
                raise KeyboardInterrupt
            atomic_write_bytes(path, torn)
        real(path, state)

    monkeypatch.setattr(train_mod, "save_checkpoint", crash_on_second)
    with pytest.raises(SystemExit):
        main(["--space", "fairnas", "--max-steps", "4", "--checkpoint-every", "2", "--out", str(out), *TINY])
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    assert state["step"] == 2
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.setattr(train_mod, "save_checkpoint", real)
    main(["--resume", "--out", str(out), "--no-progress"])
    assert torch.load(out / "checkpoint.pt", weights_only=True)["step"] == 4


def one_line_error(proc, *fragments):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.strip().count("\n") == 0, proc.stderr
    for f in fragments:
        assert f in proc.stderr, proc.stderr


def test_bad_input_is_one_line_exit_2(tmp_path):
    one_line_error(run_cli("--dataset", f"cifar10:{tmp_path}/missing", "--out", str(tmp_path / "x")),
                   "missing", "does not exist")
    one_line_error(run_cli("--dataset", "mnist", "--out", str(tmp_path / "x")), "unknown data set 'mnist'")
    one_line_error(run_cli("--arch", "1,2,3", "--space", "scarlet-s1", "--out", str(tmp_path / "x")), "3 layers")
    one_line_error(run_cli("--lr", "-1", "--out", str(tmp_path / "x")), "--lr must lie in (0, 100]")
    bad_choice = run_cli("--skip", "identity")
    assert bad_choice.returncode == 2 and "invalid choice" in bad_choice.stderr
    cfg = tmp_path / "c.yaml"
    cfg.write_text("skip: nope\n")
    one_line_error(run_cli("--config", str(cfg), "--out", str(tmp_path / "x")), "c.yaml", "skip = 'nope'")
    cfg.write_text("bogus: 1\n")
    one_line_error(run_cli("--config", str(cfg)), "unknown option(s) bogus")
    assert not (tmp_path / "x").exists()


def test_corrupt_truncated_and_foreign_checkpoints(tmp_path):
    out = tmp_path / "run"
    main(["--space", "scarlet-s1", "--max-steps", "1", "--out", str(out), *TINY])
    ckpt = out / "checkpoint.pt"
    good = ckpt.read_bytes()
    # another space
    one_line_error(run_cli("--resume", "--out", str(out), "--space", "scarlet-s2"), "conflicts with the run")
    # a fresh run into an existing run directory overwrites nothing
    one_line_error(run_cli("--out", str(out), *TINY), "already holds a run")
    assert ckpt.read_bytes() == good
    # truncated
    ckpt.write_bytes(good[: len(good) // 2])
    one_line_error(run_cli("--resume", "--out", str(out)), "corrupt", str(ckpt))
    assert ckpt.read_bytes() == good[: len(good) // 2]
    # garbage and a pickle carrying code
    ckpt.write_bytes(b"not a checkpoint at all")
    one_line_error(run_cli("--resume", "--out", str(out)), "corrupt")
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"x": Evil()}, ckpt, _use_new_zipfile_serialization=True, pickle_module=pickle)
    proc = run_cli("--resume", "--out", str(out))
    one_line_error(proc, "corrupt")
    assert "pwned" not in proc.stdout
    one_line_error(run_cli("--resume", "--out", str(tmp_path / "nothing")), "no checkpoint")


def test_batched_and_sequential_executors_end_with_matching_weights(tmp_path):
    """The user-facing check of the batched executor: same seed, a few steps, weights equal to relative 1e-4."""
    common = ["--space", "scarlet-s1", "--max-steps", "3", "--width", "0.125", "--resolution", "16",
              "--stem-stride", "1", "--batch-size", "8", "--eval-archs", "0", "--recalib-batches", "0",
              "--no-progress"]
    for executor in ("sequential", "batched"):
        main([*common, "--executor", executor, "--out", str(tmp_path / executor)])
    a, b = weights(tmp_path / "sequential"), weights(tmp_path / "batched")
    floats = [k for k in a if a[k].is_floating_point()]
    diff = torch.sqrt(sum(((a[k] - b[k]) ** 2).sum() for k in floats))
    norm = torch.sqrt(sum((a[k] ** 2).sum() for k in floats))
    assert diff / norm < 1e-4
    assert json.loads((tmp_path / "batched" / "summary.json").read_text())["executor"] == "batched"


@pytest.mark.parametrize("strategy,space_list", [("tunas", "proxylessnas"), ("supernet", "scarlet-s2")])
def test_strategy_flag_hands_the_run_to_its_trainer(strategy, space_list, capsys):
    """--strategy picks the trainer: its own flags are checked (here: the spaces it knows)."""
    with pytest.raises(SystemExit) as e:
        main(["--strategy", strategy, "--space", "nope"])
    assert e.value.code == 2
    assert space_list in capsys.readouterr().err


def test_strategies_without_distributed_sampling_refuse_torchrun(monkeypatch, capsys):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(SystemExit) as e:
        main(["--strategy", "fpnas"])
    assert e.value.code == 2 and "torchrun" in capsys.readouterr().err
