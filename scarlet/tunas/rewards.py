"""Rewards of a sampled architecture from its quality Q (top-1 accuracy, a fraction) and cost T (sheet A3).

- ``absolute`` (TuNAS, the default): ``Q + beta * |T / T0 - 1|`` with beta < 0 (default -0.10): any distance
  from the target, above or below, costs reward, so the search settles near T0.
- ``mnasnet-soft``: ``Q * (T / T0) ** beta``; ``mnasnet-hard``: ``Q * min((T / T0) ** beta, 1)`` (MnasNet's
  rewards, TuNAS's ablation of Table 9).
"""

from __future__ import annotations

from scarlet.errors import ScarletError

REWARDS = ("absolute", "mnasnet-soft", "mnasnet-hard")
DEFAULT_BETA = -0.10


def reward(quality: float, cost: float, target: float, beta: float = DEFAULT_BETA, kind: str = "absolute") -> float:
    if target <= 0 or cost <= 0:
        raise ScarletError(f"reward needs a positive cost and target, got cost {cost} and target {target}")
    ratio = cost / target
    if kind == "absolute":
        return quality + beta * abs(ratio - 1.0)
    if kind == "mnasnet-soft":
        return quality * ratio ** beta
    if kind == "mnasnet-hard":
        return quality * min(ratio ** beta, 1.0)
    raise ScarletError(f"unknown reward {kind!r}; choose one of {', '.join(REWARDS)}")
