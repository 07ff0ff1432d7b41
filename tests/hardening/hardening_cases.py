"""Shared pieces of the hardening tests: tiny runs, and the one-line-error check every bad input must pass."""

import errno
import os

import pytest
import torch

# A standalone network trains in well under a second per call: used wherever the kind of run does not matter.
STANDALONE = ["--arch", "fairnas-c", "--width", "0.125", "--resolution", "16", "--batch-size", "16",
              "--no-progress"]
SUPERNET = ["--space", "fairnas", "--width", "0.125", "--resolution", "16", "--batch-size", "16",
            "--eval-archs", "0", "--recalib-batches", "1", "--no-progress"]


def error_line(capsys, main, argv) -> str:
    """Run a CLI in-process; it must exit 2 with exactly one line on stderr, starting "error: ", no traceback."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert e.value.code == 2, err
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def weights(run_dir):
    return torch.load(run_dir / "checkpoint.pt", weights_only=True)["model"]


def same_weights(a, b) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


class DiskFull:
    """Make the n-th (1-based) os.fsync from now on fail with ENOSPC, as a full disk does at the end of a write.

    Every atomic write (checkpoints, states, reports) fsyncs its temp file once, so this fails the n-th write
    after its bytes went out, which is where a full disk is noticed.
    """

    def __init__(self, monkeypatch, n: int):
        self.calls, self.n = 0, n
        real = os.fsync

        def fsync(fd):
            self.calls += 1
            if self.calls == self.n:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(fd)

        monkeypatch.setattr(os, "fsync", fsync)
