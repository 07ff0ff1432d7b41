"""The one exception type users see, and the CLI wrapper that turns it into a one-line error."""

from __future__ import annotations

import argparse
import functools
import sys


class ScarletError(Exception):
    """Bad input or an unusable file: the message says what is wrong and where."""


def reason(e: BaseException, limit: int = 200) -> str:
    """One short line saying why ``e`` was raised (for wrapping library errors into a ScarletError)."""
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    if not lines:
        return type(e).__name__
    text = lines[0]
    if text.endswith(":") and len(lines) > 1:  # "Error(s) in loading state_dict for X:" says nothing alone
        text += " " + lines[1]
    return text if len(text) <= limit else text[:limit] + "..."


def cli_main(fn):
    """Run a CLI entry point: ScarletError, argparse's errors and OSError (e.g. a full disk) print one line and exit
    2, no traceback."""

    @functools.wraps(fn)
    def wrapper(argv=None):
        try:
            check_kernel_environment()
            return fn(argv)
        except ScarletError as e:
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        except OSError as e:  # a full disk, a permission, a vanished file: the system's reason, on one line
            where = f" ({e.filename})" if e.filename else ""
            print(f"error: {e.strerror or type(e).__name__}{where}", file=sys.stderr)
            raise SystemExit(2) from None
        except KeyboardInterrupt:
            print("interrupted: the last checkpoint written is intact", file=sys.stderr)
            raise SystemExit(130) from None

    return wrapper


def check_kernel_environment() -> None:
    """$SCARLET_KERNELS, checked when a CLI starts: a CPU run may never call a kernel, and a bad or unavailable
    value must not pass silently (scarlet_kernels.backend.environment_backend says what is wrong)."""
    from scarlet_kernels.backend import environment_backend

    try:
        environment_backend()
    except (ValueError, RuntimeError) as e:
        raise ScarletError(str(e)) from None


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose errors (unknown flag, bad value) are one line and exit code 2, like every other bad input."""

    def error(self, message):
        raise ScarletError(message)
