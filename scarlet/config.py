"""Run configuration for the CLIs: built-in defaults, then a YAML/JSON file, then explicit flags.

One schema per CLI (``TRAIN_SCHEMA``, ``SEARCH_SCHEMA``, ``EXPORT_SCHEMA``) checks every value the same way
whatever its source: a flag, a config file, or the saved configuration a ``--resume`` reads back. A check refuses
the wrong type (no bool where a number belongs, no float where an int belongs, no string or list where a number
belongs), non-finite numbers and values out of range, and names where the value came from.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from scarlet.errors import ScarletError, reason

CONFIG_MAX_BYTES = 1 << 20  # a config file is a few lines; anything larger is not one


def describe(value) -> str:
    """A short description of any value for an error message (never the repr of a huge or self-similar object)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"{value} (a boolean)"
    if isinstance(value, int):
        return str(value) if abs(value) < 10**18 else f"an integer of {value.bit_length()} bits"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, str):
        return repr(value) if len(value) <= 40 else repr(value[:40]) + f"... ({len(value)} characters)"
    return f"a {type(value).__name__}"


_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


@dataclass(frozen=True)
class Option:
    """What one configuration value may be: ``kind`` is int, float, str, a tuple of choices, or a converter."""

    kind: object
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False  # lo itself excluded
    hi_open: bool = False
    none: bool = False  # None (not given / use the derived default) allowed

    def check(self, value, where: str):
        if value is None:
            if self.none:
                return None
            raise ScarletError(f"{where} must be given, got null")
        if isinstance(self.kind, tuple):
            if isinstance(value, bool) or value not in self.kind:
                raise ScarletError(f"{where} = {describe(value)}; choose one of {', '.join(map(str, self.kind))}")
            return value
        if self.kind is bool:
            if not isinstance(value, bool):
                raise ScarletError(f"{where} must be true or false, got {describe(value)}")
            return value
        if self.kind is str:
            if not isinstance(value, str):
                raise ScarletError(f"{where} must be a string, got {describe(value)}")
            if "\x00" in value:
                raise ScarletError(f"{where} contains a NUL byte")
            return value
        if self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise ScarletError(f"{where} must be an integer, got {describe(value)}")
        elif self.kind is float:
            # PyYAML reads 1e-3 (no dot) as a string: accept plain decimal literals, never inf/nan words.
            if isinstance(value, str) and _DECIMAL.fullmatch(value.strip()):
                value = float(value)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ScarletError(f"{where} must be a number, got {describe(value)}")
            value = float(value)
        else:  # a converter that raises ValueError, e.g. amount() for "500M"
            try:
                if isinstance(value, bool):
                    raise ValueError
                value = self.kind(value)
            except (TypeError, ValueError) as e:
                name = getattr(self.kind, "__name__", "value")
                why = f": {e}" if isinstance(e.args[0] if e.args else None, str) and " " in str(e) else ""
                raise ScarletError(f"{where} = {describe(value)} is not a valid {name}{why}") from None
        if isinstance(value, float) and not math.isfinite(value):
            raise ScarletError(f"{where} must be finite, got {describe(value)}")
        self._check_range(value, where)
        return value

    def _check_range(self, value, where: str) -> None:
        low_ok = self.lo is None or (value > self.lo if self.lo_open else value >= self.lo)
        high_ok = self.hi is None or (value < self.hi if self.hi_open else value <= self.hi)
        if not (low_ok and high_ok):
            lo = "-inf" if self.lo is None else f"{self.lo:,}"
            hi = "inf" if self.hi is None else f"{self.hi:,}"
            left = "(" if self.lo_open or self.lo is None else "["
            right = ")" if self.hi_open or self.hi is None else "]"
            interval = f"{left}{lo}, {hi}{right}"
            raise ScarletError(f"{where} must lie in {interval}, got {describe(value)}")


def Int(lo=None, hi=None, none=False) -> Option:
    return Option(int, lo, hi, none=none)


def Float(lo=None, hi=None, lo_open=False, hi_open=False, none=False) -> Option:
    return Option(float, lo, hi, lo_open, hi_open, none)


def Bool() -> Option:
    return Option(bool)


def Str(none=False) -> Option:
    return Option(str, none=none)


def Choice(*values, none=False) -> Option:
    return Option(tuple(values), none=none)


def Converted(convert: Callable, lo=None, hi=None, lo_open=False, none=False) -> Option:
    return Option(convert, lo, hi, lo_open, none=none)


Schema = dict  # option name -> Option

SEED = Int(0, 2**63 - 1)
COUNT = 10**9  # upper bound of step/batch counts: large, but a typo like 1e12 is refused


def _train_schema() -> Schema:
    from scarlet.executor.layout import CHOICES as LAYOUTS
    from scarlet.fair_step import SHARED_GRAD_MODES
    from scarlet.optim import DECAY_ON
    from scarlet.samplers import SAMPLERS
    from scarlet.space import SKIP_KINDS, SPACES
    from scarlet.supernet_init import INIT_SCHEMES

    return {
        "space": Choice(*SPACES), "skip": Choice(*SKIP_KINDS), "sampler": Choice(*SAMPLERS),
        "executor": Choice("auto", "sequential", "batched"), "memory_format": Choice(*LAYOUTS),
        "arch": Str(none=True),
        "epochs": Int(1, 100_000), "max_steps": Int(1, COUNT, none=True), "batch_size": Int(1, 1 << 16),
        "lr": Float(0, 100, lo_open=True, none=True), "momentum": Float(0, 1, hi_open=True),
        "weight_decay": Float(0, 1, none=True), "weight_decay_on": Choice(*DECAY_ON),
        "width": Float(0, 8, lo_open=True),
        "resolution": Int(8, 4096, none=True), "stem_stride": Choice(1, 2),
        "dropout": Float(0, 1, hi_open=True, none=True),
        "dataset": Str(), "out": Str(), "seed": SEED, "device": Str(), "amp": Choice("none", "bf16"),
        "checkpoint_every": Int(1, COUNT, none=True), "log_every": Int(1, COUNT), "eval_archs": Int(0, 10_000),
        "recalib_batches": Int(0, 10_000),
        "dist_timeout": Float(1, 86_400), "sync_bn": Bool(),
        "init": Choice(*INIT_SCHEMES), "shared_grad": Choice(*SHARED_GRAD_MODES), "warmup_steps": Int(0, COUNT),
    }


def _search_schema() -> Schema:
    from scarlet.search.cli import amount, objectives_spec, weights_list

    probability = Float(0, 1)
    return {
        "supernet": Str(none=True), "out": Str(), "strategy": Choice("nsga2", "random"),
        "objectives": Converted(objectives_spec),
        "weights": Converted(weights_list, none=True), "madds_max": Converted(amount, 0, lo_open=True, none=True),
        "acc_min": Float(0, 1, none=True), "cost_model": Choice("supernet", "paper"),
        "population": Int(1, 10_000), "generations": Int(0, 100_000), "seed": SEED, "k": Int(1, 10_000),
        "budget": Int(1, 10**7, none=True), "max_draws": Int(1, 10**8, none=True),
        "mutation_ratio": probability, "p_random": probability, "p_roulette": probability, "p_policy": probability,
        "p_single": probability, "p_multi": probability, "multi_max": Int(1, 1000),
        "policy_lr": Float(0, 100, lo_open=True), "space": Str(none=True), "dataset": Str(none=True),
        "recalib_batches": Int(0, 10_000, none=True), "calib_batch_size": Int(1, 1 << 16, none=True),
        "val_batches": Int(1, COUNT, none=True), "val_batch_size": Int(1, 1 << 16),
        "evaluator": Choice("auto", "batched", "one-by-one"), "eval_chunk": Int(1, 1 << 20, none=True),
        "device": Str(), "threads": Int(1, 1024, none=True), "dist_timeout": Float(1, 86_400),
    }


def _export_schema() -> Schema:
    return {"supernet": Str(), "arch": Str(), "out": Str(), "batch": Int(2, 1024), "seed": SEED}


_SCHEMAS = {"train": _train_schema, "search": _search_schema, "export": _export_schema}


def schema(name: str) -> Schema:
    """The schema of the ``train``, ``search`` or ``export`` CLI."""
    return _SCHEMAS[name]()


def flag(key: str) -> str:
    return "--" + key.replace("_", "-")


def check_values(values: dict, options: Schema, where: Callable[[str], str]) -> dict:
    """Check (and normalise, e.g. "500M" to 5e8) every key of ``values`` that ``options`` knows."""
    return {k: options[k].check(v, where(k)) if k in options else v for k, v in values.items()}


def check_saved(saved, options: Schema, defaults: dict, source: str) -> dict:
    """A saved configuration read back for ``--resume``: a mapping with exactly the known keys, each valid."""
    if not isinstance(saved, dict) or not all(isinstance(k, str) for k in saved):
        raise ScarletError(f"{source} is not a mapping of option names to values")
    unknown, missing = set(saved) - set(defaults), set(defaults) - set(saved)
    if unknown or missing:
        what = [f"unknown option(s) {', '.join(sorted(unknown)[:5])}"] if unknown else []
        what += [f"missing option(s) {', '.join(sorted(missing)[:5])}"] if missing else []
        raise ScarletError(f"{source}: {'; '.join(what)}")
    return check_values(saved, options, lambda k: f"{source}: {k}")


@functools.cache
def _no_alias_loader():
    """PyYAML's SafeLoader refusing aliases, so that a few anchors cannot expand into an exponentially large
    document (PyYAML is imported on first use)."""
    import yaml

    class Loader(yaml.SafeLoader):
        def compose_node(self, parent, index):
            if self.check_event(yaml.AliasEvent):
                mark = self.peek_event().start_mark
                raise yaml.composer.ComposerError(None, None, "aliases (*name) are not allowed", mark)
            return super().compose_node(parent, index)

    return Loader


def apply_resumed_flags(cfg: dict, args, defaults: dict, options: Schema, resumable, out) -> dict:
    """A resumed run's configuration with the flags given again applied: each is checked like a new flag; those
    in ``resumable`` replace the saved value, any other must equal it (else a one-line error)."""
    for key, value in vars(args).items():
        if value is None or key not in defaults:
            continue
        value = options[key].check(value, flag(key)) if key in options else value
        if key in resumable:
            cfg[key] = value
        elif cfg.get(key) != value:
            raise ScarletError(f"{flag(key)} {describe(value)} conflicts with the run in {out} "
                               f"({key} = {describe(cfg.get(key))}); drop the flag or start a new --out")
    cfg["out"] = str(out)
    return cfg


def read_config_file(path: str) -> dict:
    """A YAML or JSON mapping of option names (``-`` or ``_``) to values; anything else is a ScarletError."""
    p = Path(path)
    if not p.is_file():
        raise ScarletError(f"config file {p} does not exist" if not p.exists() else f"config file {p} is not a file")
    try:
        with open(p, "rb") as f:
            raw = f.read(CONFIG_MAX_BYTES + 1)
    except OSError as e:
        raise ScarletError(f"config file {p} cannot be read ({e.strerror})") from None
    if len(raw) > CONFIG_MAX_BYTES:
        raise ScarletError(f"config file {p} is larger than {CONFIG_MAX_BYTES >> 20} MiB; it is not a config file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ScarletError(f"config file {p} is not UTF-8 text") from None
    if "\x00" in text:
        raise ScarletError(f"config file {p} is binary (contains NUL bytes)")
    fmt = "JSON" if p.suffix.lower() == ".json" else "YAML"
    try:
        if fmt == "JSON":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.load(text, Loader=_no_alias_loader())
    except Exception as e:  # syntax errors, aliases, too deep nesting (RecursionError), oversized ints, ...
        raise ScarletError(f"config file {p} is not valid {fmt}: {reason(e)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ScarletError(f"config file {p} must hold a mapping of option names to values")
    bad = [k for k in data if not isinstance(k, str)]
    if bad:
        raise ScarletError(f"config file {p}: option names must be strings, got {describe(bad[0])}")
    return {k.replace("-", "_"): v for k, v in data.items()}


def resolve(args: argparse.Namespace, defaults: dict, options: Schema) -> dict:
    """Merge defaults <- config file <- flags given explicitly (argparse defaults are None), each value checked
    by ``options`` and any error naming its source (the flag, or the file and key)."""
    explicit = {k: v for k, v in vars(args).items() if v is not None and k in defaults}
    path = getattr(args, "config", None)
    from_file = read_config_file(path) if path else {}
    unknown = set(from_file) - set(defaults)
    if unknown:
        raise ScarletError(f"config file {path}: unknown option(s) {', '.join(sorted(unknown)[:10])}")
    merged = {**defaults, **from_file, **explicit}

    def where(key):
        return flag(key) if key in explicit else f"config file {path}: {key}" if key in from_file else key

    return check_values(merged, options, where)


def resolve_device(spec: str):
    """``auto`` (CUDA when available), ``cpu``, ``cuda`` or ``cuda:N``; an unusable device is a ScarletError."""
    import torch

    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(spec)
    except RuntimeError:
        raise ScarletError(f"unknown device {describe(spec)}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ScarletError(f"device {spec} requested but CUDA is not available")
    return dev
