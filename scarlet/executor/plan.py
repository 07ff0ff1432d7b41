"""Routing plan of a batched multi-path pass: which slot of each layer holds which (choice, path) pair.

P paths run together; at every layer each path occupies one *slot*, and the slots are kept in a fixed order that
depends only on the choices present (never on which path took them): MBConv slots first, sorted by hidden width,
kernel, SE and choice, then the identity slots; slots of the same choice (duplicates, in evaluation or the EF
sampler) are sorted by path. Slots that share a stage's shape form a group that runs as one grouped op:

- stage A/C (expansion and projection 1x1 convs, BN1, BN3) group slots of equal hidden width;
- stage B (depthwise conv) splits a group into runs of equal kernel size;
- SE runs on the SE slots of a group, the identity slots form their own group.

With ``grouping="choice"`` every group holds one choice only (the per-choice executor, kept for comparison).

What changes from one strict-fair step to the next is only the routing: for every layer the *source* index
(for each slot, the position in the previous layer of the path it serves: pi_{l-1} o pi_l^-1) and, after the last
layer, the slot of each path (``head_order``). Those live in one int64 tensor (:meth:`Plan.routing`) that a CUDA
graph can read from a static buffer; everything else in the plan is the static *signature*.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from scarlet.blocks import MBConv, Stabilizer
from scarlet.errors import ScarletError

GROUPINGS = ("shape", "choice")


@dataclass(frozen=True)
class KernelRun:
    """Slots [start, stop) of a group (positions relative to the group) sharing one depthwise kernel size."""

    start: int
    stop: int
    kernel: int


@dataclass(frozen=True)
class MBGroup:
    """Consecutive MBConv slots [start, stop) of a layer with equal hidden width (one grouped 1x1 conv each)."""

    start: int
    stop: int
    hidden: int
    kernel_runs: tuple[KernelRun, ...]
    se_positions: tuple[int, ...]  # relative positions of the slots with SE

    @property
    def size(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True)
class LayerPlan:
    choices: tuple[int, ...]  # choice of each slot
    paths: tuple[int, ...]  # path of each slot
    groups: tuple[MBGroup, ...]
    identity: tuple[int, int] | None  # slots [start, stop) holding the skip choice

    @property
    def size(self) -> int:
        return len(self.choices)


def _sort_key(module, choice: int):
    if isinstance(module, MBConv):
        return (0, module.hidden, module.kernel, module.se is not None, choice)
    if isinstance(module, Stabilizer):
        return (1, 0, 0, False, choice)
    raise ScarletError(f"the batched executor does not know the block type {type(module).__name__}")


def _layer_plan(layer_modules, genes: Sequence[int], grouping: str) -> LayerPlan:
    order = sorted(range(len(genes)), key=lambda k: (_sort_key(layer_modules[genes[k]], genes[k]), k))
    choices = tuple(genes[k] for k in order)
    mods = [layer_modules[c] for c in choices]
    groups, identity = [], None
    i = 0
    while i < len(mods):
        if isinstance(mods[i], Stabilizer):
            j = i
            while j < len(mods) and isinstance(mods[j], Stabilizer):
                j += 1
            identity = (i, j)
            i = j
            continue
        key = mods[i].hidden if grouping == "shape" else choices[i]
        j = i
        while j < len(mods) and isinstance(mods[j], MBConv) and (
                mods[j].hidden if grouping == "shape" else choices[j]) == key:
            j += 1
        runs, r = [], i
        while r < j:
            s = r
            while s < j and mods[s].kernel == mods[r].kernel:
                s += 1
            runs.append(KernelRun(r - i, s - i, mods[r].kernel))
            r = s
        se = tuple(p - i for p in range(i, j) if mods[p].se is not None)
        groups.append(MBGroup(i, j, mods[i].hidden, tuple(runs), se))
        i = j
    return LayerPlan(choices, tuple(order), tuple(groups), identity)


@dataclass(frozen=True)
class Plan:
    """The slot layout of P paths through every layer, plus their routing."""

    layers: tuple[LayerPlan, ...]
    num_paths: int

    @property
    def signature(self) -> tuple:
        """What a captured graph depends on: the choices of every slot (not which path holds them)."""
        return (self.num_paths, tuple(lp.choices for lp in self.layers))

    def sources(self, layer: int) -> list[int]:
        """For each slot of ``layer`` (>= 1), the position of its path among the previous layer's slots."""
        prev = {p: s for s, p in enumerate(self.layers[layer - 1].paths)}
        return [prev[p] for p in self.layers[layer].paths]

    def head_order(self) -> list[int]:
        """The last layer's slot of each path, in path order."""
        where = {p: s for s, p in enumerate(self.layers[-1].paths)}
        return [where[p] for p in range(self.num_paths)]

    def routing(self) -> torch.Tensor:
        """Sources of layers 1..L-1 then the head order, packed into one int64 (CPU) tensor."""
        flat = [s for layer in range(1, len(self.layers)) for s in self.sources(layer)] + self.head_order()
        return torch.tensor(flat, dtype=torch.int64)

    def routing_views(self, packed: torch.Tensor) -> tuple[list[torch.Tensor | None], torch.Tensor]:
        """Split a (device) routing tensor into per-layer source indices (None for layer 0) and the head order."""
        n = self.num_paths
        views: list[torch.Tensor | None] = [None]
        for layer in range(1, len(self.layers)):
            views.append(packed[(layer - 1) * n: layer * n])
        return views, packed[(len(self.layers) - 1) * n:]


def build_plan(model, archs: Sequence[Sequence[int]], grouping: str = "shape") -> Plan:
    """The plan of ``archs`` (one gene tuple per path) through ``model``'s layers."""
    if grouping not in GROUPINGS:
        raise ValueError(f"grouping must be one of {GROUPINGS}, got {grouping!r}")
    if not archs:
        raise ScarletError("no paths to run")
    num_layers = len(model.layers)
    for a in archs:
        if len(a) != num_layers:
            raise ScarletError(f"architecture has {len(a)} layers, the supernet has {num_layers}")
    layers = tuple(_layer_plan(model.layers[l], [int(a[l]) for a in archs], grouping) for l in range(num_layers))
    return Plan(layers, len(archs))
