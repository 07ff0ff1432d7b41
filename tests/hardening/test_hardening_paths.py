"""Output paths and run directories: anything that cannot be our directory is a one-line error, exit 2, before
anything is written; damaged run directories are named, never a traceback."""

import pytest
from hardening_cases import STANDALONE, error_line

from scarlet.export import main as export_main
from scarlet.search.cli import main as search_main
from scarlet.train import main as train_main


def bad_outs(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("x")
    return [(str(a_file), "exists and is not a directory"), (str(a_file / "sub"), "which is not a directory"),
            ("/proc/self/scarlet", "lies in /proc"), ("/sys/scarlet", "lies in /sys"), ("/dev/null", "lies in /dev"),
            ("bad\x00name", "NUL")]


CLIS = {
    "train": (train_main, lambda out: [*STANDALONE, "--max-steps", "1", "--out", out]),
    "search": (search_main, lambda out: ["--supernet", "/nonexistent", "--out", out]),
    "export": (export_main, lambda out: ["--supernet", "/nonexistent", "--arch", "fairnas-a", "--out", out]),
}


@pytest.mark.parametrize("cli", CLIS)
@pytest.mark.parametrize("case", range(6), ids=["file", "under-file", "proc", "sys", "dev-null", "nul"])
def test_out_that_cannot_be_a_directory(cli, case, tmp_path, capsys):
    main, argv = CLIS[cli]
    out, message = bad_outs(tmp_path)[case]
    assert message in error_line(capsys, main, argv(out))
    assert (tmp_path / "file").read_text() == "x"


@pytest.mark.parametrize("cli", ["train", "search"])
def test_empty_out_is_refused_by_train_and_search(cli, capsys):
    main, argv = CLIS[cli]
    assert "--out is empty" in error_line(capsys, main, argv(""))


def test_empty_out_is_the_current_directory_for_export(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    # gets past the --out check to the missing supernet, having created nothing
    assert "no checkpoint" in error_line(capsys, export_main, ["--supernet", "/nonexistent", "--arch", "x",
                                                               "--out", ""])
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["config.json", "metrics.jsonl", "checkpoint.pt"])
def test_directory_in_place_of_a_run_file(name, run_copy, capsys):
    target = run_copy / name
    target.unlink()
    target.mkdir()
    assert f"{target} is not a regular file" in error_line(capsys, train_main, ["--resume", "--out", str(run_copy)])


@pytest.mark.parametrize("content,message", [
    ('{"dataset": 7}', "config.json: dataset must be a string, got 7"),
    ('{"dataset": "digits", "batch_size": true}', "config.json: batch_size must be an integer, got True"),
    ('{"dataset": "digits", "recalib_batches": -4}', "config.json: recalib_batches must lie in [0"),
    ('[1, 2]', "is not a training run configuration"),
    ('{"dataset": ', "config.json is unreadable"),
])
def test_search_refuses_a_supernet_whose_config_has_wrong_types(content, message, run_copy, tmp_path, capsys):
    (run_copy / "config.json").write_text(content)
    out = tmp_path / "search"
    line = error_line(capsys, search_main, ["--supernet", str(run_copy), "--out", str(out), "--population", "2",
                                            "--generations", "0", "--no-progress"])
    assert message in line, line
    assert not (out / "search_state.json").exists()
