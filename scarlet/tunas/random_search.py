"""TuNAS's random-search baseline (``tools/sample_random_architectures.py``, sheet A5): architectures drawn from
the uniform (zero-logit) policy, kept when their predicted cost lies in a window around the target T0 (TuNAS:
83-85 ms for T0 = 84), each trained stand-alone with a fixed recipe; the best on the held-out split is reported."""

from __future__ import annotations

import torch

from scarlet.decisions.arch import random_decision_arch
from scarlet.decisions.concrete import canonical
from scarlet.decisions.space import Space
from scarlet.errors import ScarletError


def sample_in_window(space: Space, cost, target: float, window: float, count: int, generator: torch.Generator,
                     max_draws: int = 100_000) -> tuple[list, int]:
    """``count`` distinct architectures with ``|cost / target - 1| <= window``, and the number of draws it took."""
    found, seen = [], set()
    for draws in range(1, max_draws + 1):
        arch = canonical(space, random_decision_arch(space, generator))
        if arch.values in seen or abs(cost(arch) / target - 1.0) > window:
            continue
        seen.add(arch.values)
        found.append(arch)
        if len(found) == count:
            return found, draws
    raise ScarletError(f"only {len(found)} of {count} random architectures within {window:.0%} of the target "
                       f"{target:.4g} in {max_draws} draws; widen the window")
