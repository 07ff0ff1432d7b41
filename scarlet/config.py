"""Run configuration for the CLIs: built-in defaults, then a YAML/JSON file, then explicit flags."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from scarlet.errors import ScarletError


def read_config_file(path: str) -> dict:
    p = Path(path)
    if not p.is_file():
        raise ScarletError(f"config file {p} does not exist")
    text = p.read_text()
    try:
        if p.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as e:
        raise ScarletError(f"config file {p} is not valid {'JSON' if p.suffix == '.json' else 'YAML'}: "
                           f"{str(e).splitlines()[0]}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ScarletError(f"config file {p} must hold a mapping of option names to values")
    return {k.replace("-", "_"): v for k, v in data.items()}


def resolve(args: argparse.Namespace, defaults: dict, parser: argparse.ArgumentParser) -> dict:
    """Merge defaults <- config file <- flags given explicitly (argparse defaults are None)."""
    explicit = {k: v for k, v in vars(args).items() if v is not None and k != "config"}
    from_file = read_config_file(args.config) if getattr(args, "config", None) else {}
    unknown = set(from_file) - set(defaults)
    if unknown:
        raise ScarletError(f"config file {args.config}: unknown option(s) {', '.join(sorted(unknown))}")
    merged = {**defaults, **from_file, **explicit}
    # Values from a file bypass argparse: check them against the same choices and types.
    for action in parser._actions:
        key = action.dest
        if key in from_file and key not in explicit and from_file[key] is not None:
            value = from_file[key]
            if action.type is not None and not isinstance(value, bool):
                try:
                    value = action.type(value)
                except (TypeError, ValueError):
                    raise ScarletError(f"config file {args.config}: {key} = {from_file[key]!r} is not a valid "
                                       f"{getattr(action.type, '__name__', 'value')}") from None
            if action.choices is not None and value not in action.choices:
                raise ScarletError(f"config file {args.config}: {key} = {value!r}; choose one of "
                                   f"{', '.join(map(str, action.choices))}")
            merged[key] = value
    return merged


def resolve_device(spec: str):
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``; an unusable device is a ScarletError."""
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise ScarletError(f"unknown device {spec!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ScarletError(f"device {spec} requested but CUDA is not available")
    return dev
