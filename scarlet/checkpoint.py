"""Checkpoints: written atomically (temp file, fsync, rename), read with ``weights_only=True``.

A checkpoint is a plain dict of tensors and primitives, so it loads without unpickling arbitrary objects:
``format``, ``version``, ``kind`` ("supernet" or "standalone"), ``config`` (the SupernetConfig as a dict), ``arch``
(standalone runs), ``model``, and for resuming ``optimizer``, ``scheduler``, ``sampler``, ``rng``, ``progress``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from scarlet.errors import ScarletError, reason

FORMAT = "scarlet-checkpoint"
VERSION = 1
CHECKPOINT_NAME = "checkpoint.pt"


def atomic_write_bytes(path: str | os.PathLike, write) -> None:
    """Call ``write(file)`` on a temp file beside ``path``, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def save_checkpoint(path: str | os.PathLike, state: dict) -> None:
    state = {"format": FORMAT, "version": VERSION, **state}
    atomic_write_bytes(path, lambda f: torch.save(state, f))


def resolve_checkpoint_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.exists():
        raise ScarletError(f"no checkpoint at {path}")
    return path


def load_checkpoint(path: str | os.PathLike, map_location="cpu") -> dict:
    """Load and sanity-check a checkpoint (file or run directory); any problem is a one-line ScarletError."""
    path = resolve_checkpoint_path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated zip, bad magic, disallowed pickle global, ...
        raise ScarletError(f"checkpoint {path} is corrupt or not a Scarlet checkpoint ({reason(e)})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise ScarletError(f"{path} is not a Scarlet checkpoint")
    if state.get("version") != VERSION:
        raise ScarletError(f"checkpoint {path} has format version {state.get('version')}, expected {VERSION}")
    for key in ("kind", "config", "model"):
        if key not in state:
            raise ScarletError(f"checkpoint {path} is missing {key!r}")
    if state["kind"] not in ("supernet", "standalone"):
        raise ScarletError(f"checkpoint {path}: kind must be 'supernet' or 'standalone'")
    check_model_config(state["config"], f"checkpoint {path}: config")
    if not isinstance(state["model"], dict) or not all(isinstance(v, torch.Tensor) for v in state["model"].values()):
        raise ScarletError(f"checkpoint {path}: model is not a mapping of names to tensors")
    state["path"] = str(path)
    return state


def check_model_config(config, source: str) -> None:
    """A saved SupernetConfig: exactly its fields, each of the right type and range (it comes from a file)."""
    from scarlet.config import Choice, Float, Int, check_saved
    from scarlet.space import SKIP_KINDS, SPACES
    from scarlet.supernet import SupernetConfig
    from scarlet.supernet_init import INIT_SCHEMES

    options = {"space": Choice(*SPACES), "skip": Choice(*SKIP_KINDS), "width": Float(0, 8, lo_open=True),
               "resolution": Int(1, 4096), "stem_stride": Choice(1, 2), "in_channels": Int(1, 4096),
               "num_classes": Int(1, 10**6), "dropout": Float(0, 1, hi_open=True), "init": Choice(*INIT_SCHEMES)}
    if isinstance(config, dict) and "init" not in config:  # saved before the option existed: the papers' init
        config = {**config, "init": "independent"}
    check_saved(config, options, SupernetConfig().to_dict(), source)


def load_supernet(path: str | os.PathLike, map_location="cpu", space: str | None = None):
    """The supernet of a run directory or checkpoint, in eval mode (``.space``, ``.resolution`` set)."""
    from scarlet.supernet import Supernet, SupernetConfig

    state = load_checkpoint(path, map_location)
    if state["kind"] != "supernet":
        raise ScarletError(f"checkpoint {state['path']} holds a {state['kind']} network, not a supernet")
    config = SupernetConfig.from_dict(state["config"])
    if space is not None and config.space != space:
        raise ScarletError(f"checkpoint {state['path']} is a {config.space} supernet, not {space}")
    model = Supernet(config)
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, ValueError, TypeError) as e:
        raise ScarletError(f"checkpoint {state['path']} does not match its config: {reason(e)}") from None
    return model.to(map_location).eval()
