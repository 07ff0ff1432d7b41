"""atomic_write_bytes: a write that fails part-way leaves the previous file intact and no temp file behind."""

import os

import pytest

from scarlet.checkpoint import atomic_write_bytes, atomic_write_text


def test_a_failed_write_keeps_the_old_file_and_removes_its_temp_file(tmp_path):
    target = tmp_path / "checkpoint.pt"
    atomic_write_text(target, "old")
    seen = []

    def fail_after_writing(f):
        f.write(b"new but torn")
        f.flush()
        seen.extend(p.name for p in tmp_path.iterdir() if p != target)
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(target, fail_after_writing)
    assert len(seen) == 1 and seen[0].startswith(".checkpoint.pt.") and seen[0].endswith(".tmp")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint.pt"]


def test_a_successful_write_replaces_the_file_with_ordinary_permissions(tmp_path):
    target = tmp_path / "sub" / "summary.json"
    atomic_write_text(target, "first")
    atomic_write_text(target, "second")
    assert target.read_text() == "second"
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert [p.name for p in target.parent.iterdir()] == ["summary.json"]
