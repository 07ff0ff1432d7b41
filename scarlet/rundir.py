"""Run and output directories: where a CLI may write, one writer at a time, and logs that survive a crash.

- :func:`output_dir` refuses an ``--out`` that cannot be a directory of ours (a file, a path under a file, the
  kernel's pseudo file systems, a device) before anything is written, and creates it.
- :class:`RunLock` is an exclusive ``fcntl.flock`` on ``DIR/.scarlet.lock`` held for the whole run: a second
  trainer, search or export on the same directory is refused instead of interleaving its files with the first's.
  The lock is released by the kernel when the process ends, however it ends, so a crash never leaves it stale.
- :func:`read_jsonl` reads an append-only log (metrics.jsonl): a torn last line (a crash or a full disk in the
  middle of a write) is dropped; damage anywhere else is an error.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
from pathlib import Path

from scarlet.checkpoint import CHECKPOINT_NAME, atomic_write_text
from scarlet.errors import ScarletError

LOCK_NAME = ".scarlet.lock"
_PSEUDO = (Path("/proc"), Path("/sys"), Path("/dev"))


def output_dir(text: str, flag: str = "--out", empty_is_cwd: bool = False, create: bool = True) -> Path:
    """The directory ``text`` names, checked (and created unless ``create`` is False); refusals name ``flag``."""
    if not isinstance(text, str) or "\x00" in text:
        raise ScarletError(f"{flag} must be a path without NUL bytes")
    if not text.strip():
        if not empty_is_cwd:
            raise ScarletError(f"{flag} is empty; name a directory")
        text = "."
    path = Path(text)
    real = Path(os.path.realpath(path))
    if any(real == p or p in real.parents for p in _PSEUDO):
        raise ScarletError(f"{flag} {text} lies in {next(p for p in _PSEUDO if real == p or p in real.parents)}, "
                           f"a system pseudo file system; choose a normal directory")
    if real.exists() and not real.is_dir():
        raise ScarletError(f"{flag} {text} exists and is not a directory")
    for parent in real.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ScarletError(f"{flag} {text} lies under {parent}, which is not a directory")
            break
    if create:
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ScarletError(f"{flag} {text} cannot be created ({e.strerror})") from None
    return path


def require_files(directory: Path, names) -> None:
    """Each of ``names`` inside ``directory`` is absent or a regular file (never a directory or a device)."""
    for name in names:
        p = directory / name
        if (p.exists() or p.is_symlink()) and not p.is_file():
            raise ScarletError(f"{p} is not a regular file; move it away")


class RunLock:
    """Exclusive lock on a run directory for the life of this object (or the process)."""

    def __init__(self, directory: Path, what: str = "run"):
        self.path, self.fd = Path(directory) / LOCK_NAME, None
        if os.environ.get("RANK", "0").strip() not in ("", "0"):
            return  # a torchrun job: its rank 0 holds the lock for all ranks, the others never write here
        try:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ScarletError(f"cannot create the lock file {self.path} ({e.strerror})") from None
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(self.fd)
            self.fd = None
            if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise ScarletError(f"another process is writing to {directory} (it holds {self.path}); wait for "
                                   f"it to finish or choose another directory") from None
            raise ScarletError(f"cannot lock {self.path} ({e.strerror})") from None

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()

    def __del__(self):
        self.release()


def read_jsonl(path: Path) -> list[dict]:
    """The JSON objects of an append-only log, one per line; a torn last line is dropped (not an error)."""
    try:
        lines = path.read_bytes().split(b"\n")
    except OSError as e:
        raise ScarletError(f"{path} cannot be read ({e.strerror})") from None
    records = []
    complete = len(lines) - 1  # text after the last newline was never finished
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            ok = isinstance(record, dict)
        except (ValueError, RecursionError):
            ok = False
        if ok:
            records.append(record)
        elif i >= complete:  # the torn tail of an interrupted write
            break
        else:
            raise ScarletError(f"{path} line {i + 1} is not a JSON object; the log is damaged (move it away to "
                               f"resume without it)")
    return records


def open_resumed(out_text: str, config_given: bool, held, run_files) -> Path:
    """The run directory ``--resume`` continues, locked (``held``: an ExitStack that releases it)."""
    if config_given:
        raise ScarletError("--config cannot be combined with --resume: the run continues with its saved "
                           "configuration")
    out = output_dir(out_text, create=False)
    if not out.is_dir():
        raise ScarletError(f"--resume: no checkpoint at {out / CHECKPOINT_NAME} (no such directory)")
    held.enter_context(RunLock(out))  # before reading: a run still writing here must not be resumed
    require_files(out, run_files)
    return out


def refuse_existing_run(out: Path) -> None:
    if (out / CHECKPOINT_NAME).exists():
        raise ScarletError(f"{out} already holds a run; pass --resume to continue it or choose another --out")


def open_new(out_text: str, held, run_files) -> Path:
    """A new run's directory, created and locked; one that already holds a run is refused."""
    out = output_dir(out_text)
    held.enter_context(RunLock(out))
    require_files(out, run_files)
    refuse_existing_run(out)
    return out


def restart_metrics(path: Path, step: int | None) -> None:
    """A resumed run (``step``: its checkpoint's) drops the metrics lines written after its checkpoint and a torn
    last line (a crash or a full disk may have left either); a new run (``step`` None) starts an empty log."""
    if step is None:
        path.unlink(missing_ok=True)
        return
    if not path.exists():
        return
    records = read_jsonl(path)
    if not all(isinstance(r.get("step"), int) and not isinstance(r.get("step"), bool) for r in records):
        raise ScarletError(f"{path} holds a line without an integer step; the log is damaged (move it away to "
                           f"resume without it)")
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in records if r["step"] <= step))
