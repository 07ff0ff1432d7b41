"""Export and search outputs under faults: a typo or a full disk never destroys a previous export, and a search
stopped by a full disk resumes to the same result as an uninterrupted one."""

import json

import pytest
from hardening_cases import DiskFull, error_line

from scarlet.export import main as export_main
from scarlet.search.cli import main as search_main

PREVIOUS = {"model.pt": b"old weights", "arch.json": b"{}", "report.json": b'{"ok": true}', "model.onnx": b"old",
            "notes.txt": b"the user's own file"}


def previous_export(out):
    out.mkdir(parents=True, exist_ok=True)
    for name, data in PREVIOUS.items():
        (out / name).write_bytes(data)


def untouched(out):
    return sorted(p.name for p in out.iterdir() if p.name != ".scarlet.lock") == sorted(PREVIOUS) and all(
        (out / n).read_bytes() == d for n, d in PREVIOUS.items())


@pytest.mark.parametrize("arch,message", [("1,2,3", "3 layers"), ("e3k3 " * 18 + "e9k9", "layer 19"),
                                          ("１" + ",0" * 18, "character '１'")])
def test_bad_arch_leaves_the_previous_export(arch, message, supernet_run, tmp_path, capsys):
    out = tmp_path / "export"
    previous_export(out)
    assert message in error_line(capsys, export_main, ["--supernet", str(supernet_run), "--arch", arch,
                                                       "--out", str(out)])
    assert untouched(out)


def test_full_disk_during_export_leaves_the_previous_export(supernet_run, tmp_path, monkeypatch, capsys):
    out = tmp_path / "export"
    previous_export(out)
    DiskFull(monkeypatch, 1)
    line = error_line(capsys, export_main, ["--supernet", str(supernet_run), "--arch", "fairnas-a", "--out",
                                            str(out)])
    assert "No space left on device" in line
    assert untouched(out)  # no staging directory left either


def test_swap_replaces_the_previous_export_as_a_whole(tmp_path):
    """The new files replace the old, a previous export's files this one lacks go, other files stay."""
    from scarlet.export import _swap_in

    out, staging = tmp_path / "export", tmp_path / "export" / ".export-x"
    previous_export(out)
    (out / "report.failed.json").write_text("{}")
    staging.mkdir()
    for name in ("model.pt", "arch.json", "model.pt2", "report.json"):
        (staging / name).write_text("new " + name)
    _swap_in(staging, out)
    assert sorted(p.name for p in out.iterdir()) == [".export-x", "arch.json", "model.pt", "model.pt2", "notes.txt",
                                                     "report.json"]
    assert (out / "report.json").read_text() == "new report.json" and list(staging.iterdir()) == []


SEARCH = ["--population", "2", "--generations", "1", "--val-batches", "1", "--recalib-batches", "1", "--seed", "5",
          "--no-progress"]


def test_full_disk_during_search_then_resume_is_exact(supernet_run, tmp_path, monkeypatch, capsys):
    straight, faulted = tmp_path / "straight", tmp_path / "faulted"
    assert search_main(["--supernet", str(supernet_run), "--out", str(straight), *SEARCH]) == 0
    DiskFull(monkeypatch, 3)  # 1, 2: state and history after the initial population; 3: the state after gen 1
    line = error_line(capsys, search_main, ["--supernet", str(supernet_run), "--out", str(faulted), *SEARCH])
    assert "No space left on device" in line and "(generation 0) is intact" in line
    assert not [p for p in faulted.iterdir() if p.name.endswith(".tmp")]
    monkeypatch.undo()
    assert search_main(["--resume", "--out", str(faulted), "--no-progress"]) == 0
    for name in ("pareto.json", "evaluated.csv"):
        assert (faulted / name).read_text() == (straight / name).read_text(), name


@pytest.mark.parametrize("meta,message", [
    ({"format": "scarlet-export", "version": 1, "variant": "exact", "fold_bn": False, "arch": "0",
      "config": {"width": "wide"}}, r"config: missing option\(s\) dropout"),
    ({"format": "scarlet-export", "version": 1, "variant": "exact", "fold_bn": "no", "arch": "0", "config": {}},
     "wrong type"),
    ([1, 2], "not a Scarlet export"),
])
def test_tampered_export_metadata(meta, message, tmp_path):
    from scarlet import ScarletError
    from scarlet.export import load_exported

    (tmp_path / "arch.json").write_text(json.dumps(meta))
    with pytest.raises(ScarletError, match=message):
        load_exported(tmp_path)
