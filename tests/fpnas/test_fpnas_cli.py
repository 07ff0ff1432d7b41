import json

import pytest
import torch

from scarlet.fpnas.cli import main
from scarlet.fpnas.trainer import final_network

# 11 steps per epoch at batch 64: alpha moves from step 2 (epoch 1/11 > 0.05), the joint distribution from step 4.
TINY = ["--resolution", "16", "--batch-size", "64", "--warmup-epochs", "0.05", "--theta", "0.25", "--lam", "0.05",
        "--recalib-batches", "1", "--no-progress"]


def run(out, *extra):
    return main(TINY + ["--out", str(out), *extra])


def metrics(out):
    lines = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for line in lines:
        line.pop("elapsed_s")
    return lines


def test_resume_is_bit_exact(tmp_path):
    straight, resumed = tmp_path / "a", tmp_path / "b"
    assert run(straight, "--max-steps", "4") == 0
    assert run(resumed, "--max-steps", "2") == 0
    assert main(["--resume", "--out", str(resumed), "--max-steps", "4", "--no-progress"]) == 0
    a = torch.load(straight / "checkpoint.pt", weights_only=True)
    b = torch.load(resumed / "checkpoint.pt", weights_only=True)
    assert a["distribution"]["kind"] == "joint" and a["step"] == b["step"] == 4
    for key in a["model"]:
        assert torch.equal(a["model"][key], b["model"][key]), key
    for x, y in zip(a["distribution"]["logits"], b["distribution"]["logits"], strict=True):
        assert torch.equal(x, y)
    assert torch.equal(a["sampler"], b["sampler"]) and a["samples"] == b["samples"]
    lines = metrics(straight)
    assert lines == metrics(resumed)
    assert [line["k"] for line in lines] == [2] * 4 and "samples_over_target" in lines[1]
    assert "samples_over_target" not in lines[0] and [line["distribution"] for line in lines] == ["factorized"] * 3 + [
        "joint"]
    assert lines[1]["entropy"] == lines[0]["entropy"] != lines[2]["entropy"]  # alpha frozen in warmup
    final_a = json.loads((straight / "final_arch.json").read_text())
    assert final_a == json.loads((resumed / "final_arch.json").read_text())
    assert final_a["arch"] == lines[-1]["mode_arch"] and final_a["madds"] == lines[-1]["mode_madds"]


def test_final_architecture_builds_and_runs(tmp_path):
    assert run(tmp_path, "--max-steps", "2", "--weighting", "average", "--fixed-k", "3",
               "--distribution", "joint") == 0
    lines = metrics(tmp_path)
    assert [line["k"] for line in lines] == [3, 3] and lines[0]["distribution"] == "joint"
    net = final_network(tmp_path / "final_arch.json").eval()
    assert net(torch.randn(2, 1, 16, 16)).shape == (2, 10)


@pytest.mark.parametrize("argv, message", [
    (["--lam", "-1"], "--lam must lie in"),
    (["--space", "proxylessnas"], "--space = 'proxylessnas'; choose one of fbnetv2-f"),
    (["--fixed-k", "2.5"], "--fixed-k must be an integer"),
    (["--beta", "x"], "--beta"),
    (["--likelihood", "product"], "--likelihood = 'product'"),
])
def test_bad_flags_are_one_line_errors(tmp_path, capsys, argv, message):
    with pytest.raises(SystemExit) as e:
        main(argv + ["--out", str(tmp_path / "x")])
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_bad_config_values_and_resume_conflicts(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("fixed-k: 2.5\n")
    with pytest.raises(SystemExit):
        main(["--config", str(config), "--out", str(tmp_path / "x")])
    assert f"config file {config}: fixed_k must be an integer" in capsys.readouterr().err
    config.write_text("lambda: 0.5\n")
    with pytest.raises(SystemExit):
        main(["--config", str(config), "--out", str(tmp_path / "x")])
    assert "unknown option(s) lambda" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--resume", "--out", str(tmp_path / "none")])
    assert "no checkpoint" in capsys.readouterr().err
    assert run(tmp_path / "r", "--max-steps", "1") == 0
    with pytest.raises(SystemExit):
        main(["--resume", "--out", str(tmp_path / "r"), "--beta", "0.5"])
    assert "--beta 0.5 conflicts with the run" in capsys.readouterr().err
