"""Architectures: one choice index per searchable layer, in the papers' numbering.

Accepted inputs (all go through :func:`parse_arch`):

- the papers' encodings: ``"1,3,1,0,12,..."``, ``"(0, 5, 0, 6, ...)"``, JSON lists, Python sequences of ints;
- readable tokens: ``"e3k7se id e6k3 ..."`` (``+`` may stand for ``se``; ``id``, ``skip`` and ``identity`` name
  the skip choice), separated by commas, spaces or dashes;
- named architectures: ``scarlet-a``, ``scarlet-b``, ``scarlet-c``, ``fairnas-a``, ``fairnas-b``, ``fairnas-c``.
"""

from __future__ import annotations

import json
import operator
import re
from dataclasses import dataclass
from typing import Sequence

from scarlet.errors import ScarletError
from scarlet.space import SearchSpace, get_space


@dataclass(frozen=True)
class Arch:
    space: str
    genes: tuple[int, ...]

    def __iter__(self):
        return iter(self.genes)

    def __len__(self):
        return len(self.genes)

    def __getitem__(self, i):
        return self.genes[i]

    def encoding(self) -> str:
        """The papers' comma-separated index encoding."""
        return ",".join(str(g) for g in self.genes)

    def tokens(self) -> str:
        space = get_space(self.space)
        return " ".join(space.choices[g].token for g in self.genes)

    def __str__(self) -> str:
        return self.encoding()


# REFERENCE section 5 (SCARLET: S2 tokens, FairNAS: the 6-choice space).
NAMED_ARCHS: dict[str, tuple[str, str]] = {
    "scarlet-a": ("scarlet-s2", "e3k7 e6k5 e3k5 e3k7se e6k3se e3k5se e6k3se e3k3 e3k7se e3k7 e3k5 e3k7se e3k3 "
                                "e3k7se e6k3se e6k5se e3k3se e6k3se e6k7se"),
    "scarlet-b": ("scarlet-s2", "e3k3se e3k5se e3k3se e6k7se e3k3 e3k5 e6k7se e3k3se id e3k5 e3k3se e3k3se "
                                "e6k7se e3k3se e6k5se e6k5se id e6k7se e6k5se"),
    "scarlet-c": ("scarlet-s2", "e3k5se e3k3se e3k5se id id e3k3 e6k7se e3k3se e3k3se e3k5 e3k7se e3k7 e3k3se "
                                "e3k7se e3k3se id e6k3se e6k7se e6k5se"),
    "fairnas-a": ("fairnas", "e3k7 e3k3 e3k7 e6k3 e6k7 e3k3 e3k3 e6k7 e6k7 e3k5 e6k3 e3k5 e3k5 e6k3 e6k3 e6k7 "
                             "e6k3 e6k7 e6k5"),
    "fairnas-b": ("fairnas", "e3k5 e3k3 e3k5 e3k3 e6k3 e3k5 e3k7 e3k3 e6k3 e3k5 e3k3 e6k3 e3k7 e3k3 e6k7 e6k5 "
                             "e6k7 e6k3 e6k5"),
    "fairnas-c": ("fairnas", "e3k5 e3k3 e3k7 e3k3 e3k3 e3k3 e3k3 e3k3 e3k3 e6k3 e3k3 e3k3 e3k3 e3k3 e6k7 e6k7 "
                             "e6k3 e6k3 e6k5"),
}

_TOKEN = re.compile(r"e([0-9]+)k([0-9]+)(se|\+)?", re.ASCII)
_INT = re.compile(r"-?[0-9]+", re.ASCII)  # ASCII digits only: int() would also accept full-width and other digits
MAX_ARCH_CHARS = 4096  # 19 layers of the longest token with separators fit in a few hundred characters


def _token_index(token: str, space: SearchSpace, position: int) -> int:
    t = token.strip().lower()
    if t in ("id", "skip", "identity"):
        idx = space.identity_index
        if idx is None:
            raise ScarletError(f"layer {position + 1}: space {space.name} has no identity choice "
                               f"(allowed: {space.describe()})")
        return idx
    m = _TOKEN.fullmatch(t)
    if m:
        e, k, se = int(m.group(1)), int(m.group(2)), m.group(3) is not None
        for i, c in enumerate(space.choices):
            if not c.identity and (c.expansion, c.kernel, c.se) == (e, k, se):
                return i
    raise ScarletError(f"layer {position + 1}: {token!r} is not a choice of {space.name} "
                       f"(allowed: {space.describe()})")


def _split(text: str) -> list[str]:
    text = text.strip()
    if text[:1] in "[(" and text[-1:] in ")]":
        text = text[1:-1]
    return [t for t in re.split(r"[\s,;]+|(?<=\w)-(?=\w)", text) if t]


def parse_arch(arch: str | Sequence[int] | Arch, space: str | SearchSpace) -> Arch:
    """Parse any accepted form into an :class:`Arch` of ``space``, validating length and range."""
    space = get_space(space)
    if isinstance(arch, Arch):
        if arch.space == space.name:
            return validate(arch.genes, space)
        # Re-express by tokens: works when every choice exists in the target space.
        arch = arch.tokens()
    if isinstance(arch, str):
        text = arch.strip()
        if not text:
            raise ScarletError("empty architecture")
        if len(text) > MAX_ARCH_CHARS:
            raise ScarletError(f"architecture text is {len(text)} characters long; an architecture of "
                               f"{space.num_layers} layers needs far fewer (at most {MAX_ARCH_CHARS})")
        if not text.isprintable() or not text.isascii():
            bad = next(c for c in text if not (c.isprintable() and c.isascii()))
            raise ScarletError(f"architecture contains the character {bad!r}; use ASCII digits, letters, commas "
                               f"and spaces")
        if text.count("[") + text.count("(") > 1:
            raise ScarletError("architecture has nested brackets; give one flat list such as [1, 3, 0, ...]")
        if text.lower() in NAMED_ARCHS:
            home, tokens = NAMED_ARCHS[text.lower()]
            try:
                return parse_arch(tokens, space)
            except ScarletError as e:
                raise ScarletError(f"named architecture {text!r} (defined in {home}) does not fit {space.name}: "
                                   f"{e}") from None
        if text.startswith("[") and text.endswith("]"):
            try:
                value = json.loads(text)
            except (json.JSONDecodeError, RecursionError):
                value = None
            if isinstance(value, list):
                return parse_arch(value, space)
        parts = _split(text)
        if all(_INT.fullmatch(p) for p in parts):
            return validate([int(p) for p in parts], space)
        if len(parts) != space.num_layers:
            raise ScarletError(f"architecture has {len(parts)} layers, {space.name} has {space.num_layers}")
        return Arch(space.name, tuple(_token_index(p, space, i) for i, p in enumerate(parts)))
    try:
        entries = list(arch)
    except TypeError:
        raise ScarletError(f"an architecture is a string or a sequence of integers, not a "
                           f"{type(arch).__name__}") from None
    if len(entries) > MAX_ARCH_CHARS:
        raise ScarletError(f"architecture has {len(entries)} layers, {space.name} has {space.num_layers}")
    genes = []
    for i, g in enumerate(entries):
        if isinstance(g, bool):  # True == 1 to Python, but never a choice index
            raise ScarletError(f"layer {i + 1}: {g} is a boolean, not a choice index")
        try:
            genes.append(operator.index(g))
        except TypeError:
            raise ScarletError(f"layer {i + 1}: choice must be an integer, got a {type(g).__name__}") from None
    return validate(genes, space)


def validate(genes: Sequence[int], space: SearchSpace) -> Arch:
    space = get_space(space)
    if len(genes) != space.num_layers:
        raise ScarletError(f"architecture has {len(genes)} layers, {space.name} has {space.num_layers}")
    for i, g in enumerate(genes):
        if not 0 <= g < space.num_choices:
            raise ScarletError(f"layer {i + 1}: choice {g} out of range 0..{space.num_choices - 1} "
                               f"for {space.name} ({space.describe()})")
    return Arch(space.name, tuple(int(g) for g in genes))


def random_arch(space: str | SearchSpace, generator) -> Arch:
    """Uniformly random architecture; ``generator`` is a ``torch.Generator``."""
    import torch

    space = get_space(space)
    genes = torch.randint(space.num_choices, (space.num_layers,), generator=generator).tolist()
    return Arch(space.name, tuple(genes))
