"""BatchNorm over stacked slots: one ``F.batch_norm`` call over the slots' concatenated channels.

Every slot (a (module, path) pair) owns a block of channels, so per-channel batch statistics are per-slot
statistics: a segmented BN for free. What differs between uses is where the running statistics come from and go:

- :class:`TrainNorm`, the fair step: each slot's batch statistics update its module's running buffers as the
  sequential step would. A module used by several paths (the head, duplicated choices) is updated path after
  path in path order; the stem, computed once for P paths, gets P updates with the same statistics.
- :class:`CalibrationNorm`: per-slot statistics averaged over calibration batches (BN momentum None) into
  executor-owned buffers; the model's buffers are never touched.
- :class:`EvalNorm`: normalise with per-slot statistics from a calibration, or with the modules' own buffers.

The batch statistics are read exactly as PyTorch computes them: ``F.batch_norm`` with momentum 1 writes the
batch mean and unbiased variance into fresh buffers.
"""

from __future__ import annotations

from typing import Hashable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _affine(modules: Sequence[nn.BatchNorm2d]) -> tuple[torch.Tensor, torch.Tensor]:
    first = modules[0]
    if all(m is first for m in modules):
        if len(modules) == 1:
            return first.weight, first.bias
        return first.weight.repeat(len(modules)), first.bias.repeat(len(modules))
    return torch.cat([m.weight for m in modules]), torch.cat([m.bias for m in modules])


def _eps(modules: Sequence[nn.BatchNorm2d]) -> float:
    eps = modules[0].eps
    if any(m.eps != eps for m in modules):
        raise ValueError("the BatchNorm layers of one group must share eps")
    return eps


def batch_stats_norm(z: torch.Tensor, modules: Sequence[nn.BatchNorm2d]):
    """Train-mode BN of z; returns (output, batch mean, batch unbiased variance), the statistics detached."""
    weight, bias = _affine(modules)
    buf = modules[0].running_mean
    channels = z.shape[1]
    mean = torch.zeros(channels, dtype=buf.dtype, device=buf.device)
    var = torch.ones(channels, dtype=buf.dtype, device=buf.device)
    y = F.batch_norm(z, mean, var, weight, bias, True, 1.0, _eps(modules))
    return y, mean, var


def momenta(module: nn.BatchNorm2d, updates: int) -> list[float]:
    """The averaging factor of each of ``updates`` successive running-stat updates of ``module``."""
    if module.momentum is not None:
        return [module.momentum] * updates
    seen = int(module.num_batches_tracked.item())  # cumulative average: factor 1 / batches seen
    return [1.0 / (seen + i) for i in range(1, updates + 1)]


class TrainNorm:
    """Training-mode BN that updates the modules' running statistics as the sequential step does."""

    def __call__(self, z: torch.Tensor, modules: Sequence[nn.BatchNorm2d], site: Hashable, *, repeat: int = 1,
                 order: torch.Tensor | None = None) -> torch.Tensor:
        """``modules[s]`` owns slot s; ``repeat``: updates per slot (the stem); ``order``: slot of each path in
        path order, for a module shared by all slots (the head) whose slots are not in path order."""
        y, mean, var = batch_stats_norm(z, modules)
        with torch.no_grad():
            self._update(modules, mean, var, repeat, order)
        return y

    def _update(self, modules, mean, var, repeat, order):
        size = modules[0].num_features
        if order is not None:  # one module, slots reordered into path order
            mean = mean.view(len(modules), size).index_select(0, order)
            var = var.view(len(modules), size).index_select(0, order)
            runs = [(modules[0], 0, len(modules))]
        else:
            runs, s = [], 0
            while s < len(modules):
                e = s
                while e < len(modules) and modules[e] is modules[s]:
                    e += 1
                runs.append((modules[s], s, e - s))
                s = e
            if any(m.num_features != size for m in modules):
                raise ValueError("slots of one BN call must have equal widths")
        means, variances = mean.view(len(modules), size), var.view(len(modules), size)
        single: dict[float, tuple[list, list, list, list]] = {}
        tracked: dict[int, list[torch.Tensor]] = {}
        for module, start, count in runs:
            updates = count * repeat
            tracked.setdefault(updates, []).append(module.num_batches_tracked)
            factors = momenta(module, updates)
            if updates == 1:
                lists = single.setdefault(factors[0], ([], [], [], []))
                lists[0].append(module.running_mean)
                lists[1].append(means[start])
                lists[2].append(module.running_var)
                lists[3].append(variances[start])
                continue
            for i, a in enumerate(factors):
                slot = start + i // repeat
                module.running_mean.lerp_(means[slot], a)
                module.running_var.lerp_(variances[slot], a)
        for a, (rm, m, rv, v) in single.items():
            torch._foreach_lerp_(rm, m, a)
            torch._foreach_lerp_(rv, v, a)
        for updates, buffers in tracked.items():
            torch._foreach_add_(buffers, updates)


class CalibrationNorm:
    """Training-mode BN whose per-slot batch statistics are averaged over calibration batches, per call site."""

    def __init__(self):
        self.stats: dict[Hashable, tuple[torch.Tensor, torch.Tensor]] = {}
        self.batches = 0

    def next_batch(self) -> None:
        self.batches += 1

    def __call__(self, z, modules, site, *, repeat=1, order=None):
        y, mean, var = batch_stats_norm(z, modules)
        if self.batches == 1 or site not in self.stats:
            self.stats[site] = (mean, var)
        else:
            rm, rv = self.stats[site]
            rm.lerp_(mean, 1.0 / self.batches)
            rv.lerp_(var, 1.0 / self.batches)
        return y


class EvalNorm:
    """Eval-mode BN with per-site statistics from a :class:`CalibrationNorm`, or the modules' own buffers."""

    def __init__(self, stats: dict | None = None):
        self.stats = stats

    def __call__(self, z, modules, site, *, repeat=1, order=None):
        weight, bias = _affine(modules)
        if self.stats is not None:
            mean, var = self.stats[site]
        elif len(modules) == 1:
            mean, var = modules[0].running_mean, modules[0].running_var
        else:
            mean = torch.cat([m.running_mean for m in modules])
            var = torch.cat([m.running_var for m in modules])
        return F.batch_norm(z, mean, var, weight, bias, False, 0.0, _eps(modules))
