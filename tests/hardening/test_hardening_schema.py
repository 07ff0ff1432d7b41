"""One schema for flags, config files and resumed values: wrong types, non-finite numbers, out-of-range values,
hostile files. Every case must be a one-line error naming the option (exit 2), before anything is written."""

import json

import pytest
from hardening_cases import STANDALONE, error_line

from scarlet.export import main as export_main
from scarlet.search.cli import main as search_main
from scarlet.train import main as train_main

TRAIN_FLAGS = [
    (["--lr", "inf"], "--lr must be finite"), (["--lr", "nan"], "--lr must be finite"),
    (["--lr", "0"], "--lr must lie in (0"), (["--weight-decay", "nan"], "--weight-decay must be finite"),
    (["--weight-decay", "-1"], "--weight-decay must lie in [0"), (["--momentum", "2"], "--momentum must lie in [0, 1)"),
    (["--momentum", "1"], "--momentum must lie in [0, 1)"), (["--eval-archs", "-1"], "--eval-archs must lie in"),
    (["--eval-archs", "1000000000"], "--eval-archs must lie in"), (["--epochs", "0"], "--epochs must lie in"),
    (["--max-steps", "0"], "--max-steps must lie in"), (["--log-every", "0"], "--log-every must lie in"),
    (["--checkpoint-every", "0"], "--checkpoint-every must lie in"), (["--width", "0"], "--width must lie in"),
    (["--dropout", "1"], "--dropout must lie in"), (["--batch-size", "0"], "--batch-size must lie in"),
    (["--seed", "-1"], "--seed must lie in"), (["--eval-archs", "1e9"], "invalid int value"),
]


@pytest.mark.parametrize("flags,message", TRAIN_FLAGS, ids=[" ".join(f) for f, _ in TRAIN_FLAGS])
def test_train_flags(flags, message, tmp_path, capsys):
    out = tmp_path / "run"
    assert message in error_line(capsys, train_main, [*STANDALONE, *flags, "--out", str(out)])
    assert not out.exists()


SEARCH_FLAGS = [
    (["--population", "1000000000"], "--population must lie in"), (["--generations", "-1"], "--generations must"),
    (["--generations", "10000000"], "--generations must"), (["--p-random", "2"], "--p-random must lie in [0, 1]"),
    (["--policy-lr", "inf"], "--policy-lr must be finite"), (["--weights", "1,nan,1"], "--weights = '1,nan,1'"),
    (["--weights", "0,0,0"], "--weights"), (["--madds-max", "-5"], "--madds-max must lie in (0"),
    (["--acc-min", "1.5"], "--acc-min must lie in [0, 1]"), (["--budget", "0"], "--budget must lie in"),
    (["--objectives", "acc"], "say whether to minimise or maximise 'acc'"),
    (["--objectives", "acc:up"], "say whether to minimise or maximise 'acc:up'"),
    (["--threads", "0"], "--threads must lie in"),
]


@pytest.mark.parametrize("flags,message", SEARCH_FLAGS, ids=[" ".join(f) for f, _ in SEARCH_FLAGS])
def test_search_flags(flags, message, tmp_path, capsys):
    out = tmp_path / "search"
    argv = ["--supernet", str(tmp_path / "none"), "--out", str(out), *flags]
    assert message in error_line(capsys, search_main, argv)
    assert not out.exists()


@pytest.mark.parametrize("flags,message", [(["--batch", "1"], "--batch must lie in [2"),
                                           (["--batch", "100000"], "--batch must lie in [2"),
                                           (["--seed", "-3"], "--seed must lie in")])
def test_export_flags(flags, message, tmp_path, capsys):
    argv = ["--supernet", str(tmp_path / "none"), "--arch", "fairnas-a", "--out", str(tmp_path / "x"), *flags]
    assert message in error_line(capsys, export_main, argv)
    assert not (tmp_path / "x").exists()


# (file name, bytes, what the error says)
CONFIG_FILES = [
    ("c.yaml", b"epochs: true\n", "epochs must be an integer, got True (a boolean)"),
    ("c.yaml", b"epochs: 2.0\n", "epochs must be an integer, got 2.0"),
    ("c.yaml", b"epochs: '3'\n", "epochs must be an integer, got '3'"),
    ("c.yaml", b"epochs: [1, 2]\n", "epochs must be an integer, got a list"),
    ("c.yaml", b"epochs: 100000000000000000000000000000\n", "epochs must lie in [1, 100,000]"),
    ("c.yaml", b"lr: .inf\n", "lr must be finite"),
    ("c.yaml", b"lr: .nan\n", "lr must be finite"),
    ("c.yaml", b"lr: 1e-3x\n", "lr must be a number"),
    ("c.yaml", b"momentum: 2\n", "momentum must lie in [0, 1)"),
    ("c.yaml", b"weight_decay: -0.1\n", "weight_decay must lie in [0"),
    ("c.yaml", b"eval_archs: 1000000000\n", "eval_archs must lie in"),
    ("c.yaml", b"space: {a: 1}\n", "space = a dict; choose one of"),
    ("c.yaml", b"arch: 7\n", "arch must be a string, got 7"),
    ("c.yaml", b"1: 2\n", "option names must be strings"),
    ("c.yaml", b"when: 2020-01-01\n", "unknown option(s) when"),
    ("c.yaml", b"- 1\n- 2\n", "must hold a mapping"),
    ("c.yaml", b"a: &a [1, 1]\nb: &b [*a, *a]\nc: [*b, *b]\n", "aliases (*name) are not allowed"),
    ("c.yaml", b"epochs: !!python/object/apply:os.system ['echo pwned']\n", "not valid YAML"),
    ("c.yaml", b"\x00\x01\x02binary", "binary"),
    ("c.yaml", b"\xff\xfe\xfa", "not UTF-8"),
    ("c.yaml", b"#" * (1 << 20) + b"\nepochs: 1\n", "larger than 1 MiB"),
    ("c.json", b'{"lr": NaN}', "lr must be finite"),
    ("c.json", b'{"lr": 1e400}', "lr must be finite"),
    ("c.json", b'{"epochs": 1e3}', "epochs must be an integer"),
    ("c.json", b'{"epochs": false}', "epochs must be an integer, got False (a boolean)"),
    ("c.json", b'{"dataset": ["digits"]}', "dataset must be a string, got a list"),
    ("c.json", b"[" * 100000 + b"]" * 100000, "not valid JSON"),
    ("c.json", b'{"epochs": ' + b"9" * 5000 + b"}", "not valid JSON"),
    ("c.json", b'{"epochs": 2', "not valid JSON"),
]


@pytest.mark.parametrize("name,content,message", CONFIG_FILES, ids=[m for _, _, m in CONFIG_FILES])
def test_train_config_files(name, content, message, tmp_path, capsys):
    cfg = tmp_path / name
    cfg.write_bytes(content)
    out = tmp_path / "run"
    line = error_line(capsys, train_main, ["--no-progress", "--max-steps", "1", "--config", str(cfg), "--out",
                                           str(out)])
    assert message in line and len(line) < 400, line
    assert not out.exists()


def test_search_config_file_values_are_checked_like_flags(tmp_path, capsys):
    cfg = tmp_path / "s.yaml"
    for text, message in [("population: 1.5e9\n", "population must be an integer"),
                          ("madds_max: .inf\n", "madds_max must be finite"),
                          ("weights: [0.4, true, 0.2]\n", "weights = a list is not a valid list of weights"),
                          ("objectives: acc,madds\n", "say whether to minimise or maximise 'acc'")]:
        cfg.write_text(text)
        line = error_line(capsys, search_main, ["--config", str(cfg), "--supernet", str(tmp_path), "--out",
                                                str(tmp_path / "o")])
        assert message in line and str(cfg) in line, line


def test_config_out_is_honoured(supernet_run, tmp_path, capsys):
    """`out:` in a config file is where the run goes: pointing it at an existing run is refused as such."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"out: {json.dumps(str(supernet_run))}\n")
    assert "already holds a run" in error_line(capsys, train_main, [*STANDALONE, "--config", str(cfg)])
    cfg.write_text("out: /dev/null\n")
    assert "/dev" in error_line(capsys, train_main, [*STANDALONE, "--config", str(cfg)])


RESUME_FLAGS = [(["--log-every", "0"], "--log-every must lie in"), (["--epochs", "0"], "--epochs must lie in"),
                (["--max-steps", "0"], "--max-steps must lie in"),
                (["--eval-archs", "-2"], "--eval-archs must lie in"),
                (["--checkpoint-every", "-1"], "--checkpoint-every must lie in"),
                (["--lr", "0.5"], "--lr 0.5 conflicts with the run"),
                (["--config", "x.yaml"], "--config cannot be combined with --resume")]


@pytest.mark.parametrize("flags,message", RESUME_FLAGS, ids=[" ".join(f) for f, _ in RESUME_FLAGS])
def test_resumed_values_pass_the_same_checks(flags, message, run_copy, capsys):
    before = (run_copy / "checkpoint.pt").read_bytes()
    assert message in error_line(capsys, train_main, ["--resume", "--out", str(run_copy), *flags])
    assert (run_copy / "checkpoint.pt").read_bytes() == before
