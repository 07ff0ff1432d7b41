"""Architectures in a decision space: one value per decision, written as a JSON object a user can read and paste.

``{"b0.kernel": 3, "b1.filters": 24, "b1.0.kernel": 3, "b1.0.expansion": 6, "b1.1.op": "zero", ...}``: keys are
the space's decision keys (``<layer or block>.<decision>``), values one of the decision's choices. Every decision
needs a value, those of zeroed layers included (they are part of the space, as TuNAS counts it). Errors name the
layer, the decision and the allowed values.

Named architectures (``NAMED``):

- ``mobilenetv2`` in ``proxylessnas-enlarged``: TuNAS's ``MOBILENET_V2_OPERATIONS`` and filters
  (32,16,24,32,64,96,160,320,1280); every one of these filter values is a choice of the enlarged space.
- ``proxylessnas-mobile`` in ``proxylessnas``: TuNAS's reproduction (``PROXYLESSNAS_MOBILE_OPERATIONS``).
- ``mobilenetv3-large`` in ``mobilenetv3-like``: the member nearest MobileNetV3-Large. Values that are not
  choices are rounded to the nearest choice, ties upward: expansion 2.5 (200/80) -> 3 and 2.3 (184/80) -> 2 (so
  the block's three expanded widths total 560 against MobileNetV3's 568), block filters 112 -> 128 and head
  width 960 -> 1024. Expansions elsewhere are MobileNetV3's exact ratios (64/16 = 4, 72/24 = 3, 120/40 = 3,
  240/40 = 6, 480/80 = 6, 672/112 = 6, 960/160 = 6).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import torch

from scarlet.decisions.space import Space, get_space
from scarlet.errors import ScarletError


@dataclass(frozen=True)
class DecisionArch:
    """One architecture: ``values`` holds (decision key, value) in the space's decision order."""

    space: str
    values: tuple[tuple[str, Any], ...]

    def __getitem__(self, key: str) -> Any:
        for k, v in self.values:
            if k == key:
                return v
        raise KeyError(key)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.values)

    def to_json(self) -> str:
        return json.dumps(self.as_dict())

    def indices(self, space: str | Space) -> list[int]:
        """Choice index of every decision, in the space's decision order (for policies and samplers)."""
        space = get_space(space)
        return [d.choices.index(v) for d, (_, v) in zip(space.decisions, self.values, strict=True)]


def arch_from_indices(space: str | Space, indices) -> DecisionArch:
    """The architecture whose decision i takes choice ``indices[i]``."""
    space = get_space(space)
    indices = list(indices)
    if len(indices) != len(space.decisions):
        raise ScarletError(f"space {space.name} has {len(space.decisions)} decisions, got {len(indices)} indices")
    values = []
    for d, i in zip(space.decisions, indices):
        if not 0 <= int(i) < len(d.choices):
            raise ScarletError(f"{_where(space, d.key)}: index {int(i)} for {d.key} is out of range "
                               f"0..{len(d.choices) - 1}")
        values.append((d.key, d.choices[int(i)]))
    return DecisionArch(space.name, tuple(values))


def _allowed(choices) -> str:
    return ", ".join(json.dumps(c) for c in choices)


def _where(space: Space, key: str) -> str:
    layers = space.layers_using(key)
    return f"layer {layers[0]}" if len(layers) == 1 else f"layers {', '.join(layers)}"


def parse_decision_arch(arch: str | dict | DecisionArch, space: str | Space) -> DecisionArch:
    """Read an architecture (JSON text, a dict, or a name from ``NAMED``) and check it against ``space``."""
    space = get_space(space)
    if isinstance(arch, DecisionArch):
        if arch.space != space.name:
            raise ScarletError(f"architecture of space {arch.space} given for space {space.name}")
        arch = arch.as_dict()
    if isinstance(arch, str):
        name = arch.strip().lower()
        if name in NAMED:
            named_space, build = NAMED[name]
            if named_space != space.name:
                raise ScarletError(f"architecture {name} belongs to space {named_space}, not {space.name}")
            return build(space)
        try:
            arch = json.loads(arch)
        except json.JSONDecodeError as e:
            raise ScarletError(f"architecture for space {space.name} is neither a JSON object of decision values "
                               f"nor one of {', '.join(NAMED)} ({e.msg} at character {e.pos})") from None
    if not isinstance(arch, dict):
        raise ScarletError(f"architecture for space {space.name} must be a JSON object of decision values, "
                           f"got {type(arch).__name__}")
    keys = {d.key for d in space.decisions}
    unknown = [k for k in arch if k not in keys]
    if unknown:
        raise ScarletError(f"space {space.name} has no decision {unknown[0]!r}; decisions are named like "
                           f"{space.decisions[0].key!r} (layer or block, dot, decision)")
    values = []
    for d in space.decisions:
        if d.key not in arch:
            raise ScarletError(f"{_where(space, d.key)}: decision {d.key} is missing (allowed: {_allowed(d.choices)})")
        v = arch[d.key]
        match = [c for c in d.choices if type(c) is type(v) or (_number(c) and _number(v))]
        match = [c for c in match if c == v]
        if not match:
            shown = json.dumps(v) if _jsonable(v) else repr(v)
            raise ScarletError(f"{_where(space, d.key)}: {d.key}={shown} is not allowed "
                               f"(allowed: {_allowed(d.choices)})")
        values.append((d.key, match[0]))
    return DecisionArch(space.name, tuple(values))


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _jsonable(v) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def random_decision_arch(space: str | Space, generator: torch.Generator | None = None) -> DecisionArch:
    """Uniform over the space: each decision drawn independently (TuNAS's zero-logit policy)."""
    space = get_space(space)
    values = []
    for d in space.decisions:
        i = int(torch.randint(len(d.choices), (1,), generator=generator))
        values.append((d.key, d.choices[i]))
    return DecisionArch(space.name, tuple(values))


# ------------------------------------------------------------------------------------------------ named archs
# TuNAS mobile_model_archive.py: op index per layer; 0 = b0's sepconv kernel 3, then for the 21 IBs
# index = 3 * (expansion == 6) + kernel index (3, 5, 7), and 6 = zero.
MOBILENET_V2_OPS = (0, 3, 3, 6, 6, 3, 3, 3, 6, 3, 3, 3, 3, 3, 3, 3, 6, 3, 3, 3, 6, 3)
MOBILENET_V2_FILTERS = (32, 16, 24, 32, 64, 96, 160, 320, 1280)
PROXYLESSNAS_MOBILE_OPS = (0, 1, 0, 6, 6, 2, 0, 1, 1, 5, 1, 1, 1, 4, 1, 1, 1, 5, 5, 2, 2, 5)


def _from_tunas_ops(space: Space, ops, filters) -> DecisionArch:
    """Arch of a proxylessnas-family space from TuNAS op indices and block filters (stem, b0, b1..b6, head)."""
    values: dict[str, Any] = {"b0.kernel": (3, 5, 7)[ops[0]]}
    blocks = ["stem", "b0"] + [f"b{b}" for b in range(1, 7)] + ["head"]
    for block, f in zip(blocks, filters):
        values[f"{block}.filters"] = f
    ib = [layer for layer in space.layers if layer.kind == "ib"]
    for layer, op in zip(ib, ops[1:], strict=True):
        zero = op == 6
        values[f"{layer.name}.kernel"] = 3 if zero else (3, 5, 7)[op % 3]
        values[f"{layer.name}.expansion"] = 3 if zero or op < 3 else 6
        if layer.attr("op") != "ib":
            values[f"{layer.name}.op"] = "zero" if zero else "ib"
    keys = {d.key for d in space.decisions}
    return parse_decision_arch({k: v for k, v in values.items() if k in keys}, space)


def mobilenet_v2(space: Space) -> DecisionArch:
    return _from_tunas_ops(space, MOBILENET_V2_OPS, MOBILENET_V2_FILTERS)


def proxylessnas_mobile(space: Space) -> DecisionArch:
    return _from_tunas_ops(space, PROXYLESSNAS_MOBILE_OPS, ())


# MobileNetV3-Large per block: (filters, [(kernel, expansion, se) per layer]); layers beyond the list are zero.
MOBILENET_V3_LARGE_NEAREST = {
    "b1": (24, [(3, 4, 0), (3, 3, 0)]),
    "b2": (40, [(5, 3, 1), (5, 3, 1), (5, 3, 1)]),
    "b3": (80, [(3, 6, 0), (3, 3, 0), (3, 2, 0), (3, 2, 0)]),  # 2.5 -> 3, 2.3 -> 2
    "b4": (128, [(3, 6, 1), (3, 6, 1)]),  # filters 112 -> 128
    "b5": (160, [(5, 6, 1), (5, 6, 1), (5, 6, 1)]),
}


def mobilenet_v3_large_nearest(space: Space) -> DecisionArch:
    values: dict[str, Any] = {"stem.filters": 16, "stem.kernel": 3, "stem.1.kernel": 3, "stem.1.op": "sepconv",
                              "head1.filters": 1024, "head2.filters": 1280}  # head1 960 -> 1024
    for block, (filters, layers) in MOBILENET_V3_LARGE_NEAREST.items():
        values[f"{block}.filters"] = filters
        for i in range(4):
            k, e, se = layers[i] if i < len(layers) else (3, 1, 0)
            values.update({f"{block}.{i}.kernel": k, f"{block}.{i}.expansion": e, f"{block}.{i}.se": se})
            if i > 0:
                values[f"{block}.{i}.op"] = "ib" if i < len(layers) else "zero"
    return parse_decision_arch(values, space)


NAMED = {"mobilenetv2": ("proxylessnas-enlarged", mobilenet_v2),
         "proxylessnas-mobile": ("proxylessnas", proxylessnas_mobile),
         "mobilenetv3-large": ("mobilenetv3-like", mobilenet_v3_large_nearest)}
