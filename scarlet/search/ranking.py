"""Pareto ranking: non-dominated sorting and (weighted) crowding distance.

Convention: every objective is minimised. A caller that maximises a quantity (accuracy, parameters) passes its
negation. ``F`` is always an ``(n_points, n_objectives)`` float array.

- :func:`non_dominated_sort` is the vectorised version (one dominance matrix, then the fronts are peeled off);
  :func:`non_dominated_sort_plain` is Deb's loop-based fast non-dominated sort (NSGA-II paper, section III-A),
  kept as the readable reference the tests compare the fast one with.
- :func:`non_dominated` returns the first front only and never builds the full ``n x n`` matrix, for large
  archives (random search over thousands of architectures).
- :func:`crowding_distance` is Deb's crowding distance, averaged over objectives (the scale pymoo uses).
  :func:`weighted_crowding_distance` weights the objectives (SCARLET: 0.4 / 0.4 / 0.2 for accuracy, MAdds and
  parameters, after the weighted-preference idea of Friedrich et al., AJCAI 2011).
- Constrained domination (Deb's rule) is available through the ``violation`` argument: a feasible point
  (violation 0) dominates an infeasible one, of two infeasible points the smaller violation dominates, and two
  feasible points compare by Pareto dominance.
"""

from __future__ import annotations

import numpy as np


def _as_objectives(F) -> np.ndarray:
    F = np.asarray(F, dtype=np.float64)
    if F.ndim != 2:
        raise ValueError(f"objectives must be a 2-d array (points x objectives), got shape {F.shape}")
    return F


def dominates(a, b) -> bool:
    """Whether objective vector ``a`` Pareto-dominates ``b`` (no worse everywhere, better somewhere)."""
    a, b = np.asarray(a), np.asarray(b)
    return bool(np.all(a <= b) and np.any(a < b))


def dominance_matrix(F, violation=None) -> np.ndarray:
    """Boolean matrix ``D`` with ``D[i, j]`` true when point ``i`` dominates point ``j``.

    With ``violation`` (one non-negative number per point, 0 = feasible) Deb's constrained domination is used.
    """
    F = _as_objectives(F)
    D = np.all(F[:, None, :] <= F[None, :, :], axis=2) & np.any(F[:, None, :] < F[None, :, :], axis=2)
    if violation is None:
        return D
    cv = np.asarray(violation, dtype=np.float64)
    if cv.shape != (F.shape[0],) or np.any(cv < 0):
        raise ValueError("violation must hold one non-negative number per point")
    feasible = cv == 0
    both_feasible = feasible[:, None] & feasible[None, :]
    return (both_feasible & D) | (cv[:, None] < cv[None, :])


def non_dominated_sort(F, violation=None) -> tuple[list[np.ndarray], np.ndarray]:
    """Fronts and rank of every point.

    Returns ``(fronts, rank)``: ``fronts[r]`` holds the indices (ascending) of the points of rank ``r``, the
    first front being rank 0; ``rank[i]`` is the front of point ``i``.
    """
    F = _as_objectives(F)
    n = F.shape[0]
    D = dominance_matrix(F, violation)
    dominated_by = D.sum(axis=0)
    rank = np.full(n, -1, dtype=np.int64)
    remaining = np.ones(n, dtype=bool)
    fronts = []
    r = 0
    while remaining.any():
        front = np.flatnonzero(remaining & (dominated_by == 0))
        rank[front] = r
        fronts.append(front)
        remaining[front] = False
        dominated_by = dominated_by - D[front].sum(axis=0)
        r += 1
    return fronts, rank


def non_dominated_sort_plain(F, violation=None) -> tuple[list[np.ndarray], np.ndarray]:
    """Deb's fast non-dominated sort, written as loops: the reference for :func:`non_dominated_sort`."""
    F = _as_objectives(F)
    n = F.shape[0]
    cv = None if violation is None else [float(v) for v in violation]

    def dom(i, j):
        if cv is not None:
            if cv[i] == 0 and cv[j] > 0:
                return True
            if cv[i] > 0 or cv[j] > 0:
                return cv[i] < cv[j]
        return dominates(F[i], F[j])

    dominated_sets = [[] for _ in range(n)]
    counts = [0] * n
    for i in range(n):
        for j in range(n):
            if i != j and dom(i, j):
                dominated_sets[i].append(j)
            elif i != j and dom(j, i):
                counts[i] += 1
    rank = np.full(n, -1, dtype=np.int64)
    current = [i for i in range(n) if counts[i] == 0]
    fronts = []
    r = 0
    while current:
        fronts.append(np.array(sorted(current), dtype=np.int64))
        nxt = []
        for i in current:
            rank[i] = r
            for j in dominated_sets[i]:
                counts[j] -= 1
                if counts[j] == 0:
                    nxt.append(j)
        current = nxt
        r += 1
    return fronts, rank


def non_dominated(F, chunk_elements: int = 4_000_000) -> np.ndarray:
    """Indices (ascending) of the non-dominated points of ``F``, in memory linear in the number of points."""
    F = _as_objectives(F)
    n, m = F.shape
    keep = np.ones(n, dtype=bool)
    step = max(1, chunk_elements // max(1, n * m))
    for start in range(0, n, step):
        block = F[start:start + step]
        le = np.all(F[None, :, :] <= block[:, None, :], axis=2)
        lt = np.any(F[None, :, :] < block[:, None, :], axis=2)
        keep[start:start + step] = ~np.any(le & lt, axis=1)
    return np.flatnonzero(keep)


def weighted_crowding_distance(F, weights=None) -> np.ndarray:
    """Crowding distance of the points of one front, each objective weighted.

    Per objective m the points are sorted (stable sort, so ties keep index order); an inner point gets the gap
    between its two neighbours divided by the objective's span over the front (Deb's normalisation); the two
    extreme points get infinity. The distance of a point is

        cd_i = (1 / M) * sum_m  w_m / max(w) * gap_{i,m} / span_m

    Only the ratios of the weights matter. With all weights equal (or ``weights=None``) every factor
    ``w_m / max(w)`` is exactly 1 and the result is bit-identical to :func:`crowding_distance`, which is Deb's
    distance averaged over the objectives, as in pymoo. An objective whose values are all equal, or whose weight
    is 0, contributes nothing (not even infinity at its extremes). Fronts of one or two points get infinity.
    """
    F = _as_objectives(F)
    n, m = F.shape
    if weights is None:
        scale = np.ones(m)
    else:
        w = np.asarray(weights, dtype=np.float64)
        if w.shape != (m,) or np.any(w < 0) or not np.any(w > 0) or not np.all(np.isfinite(w)):
            raise ValueError(f"need {m} non-negative finite weights, not all zero; got {weights!r}")
        scale = w / w.max()
    if n <= 2:
        return np.full(n, np.inf)
    order = np.argsort(F, axis=0, kind="mergesort")
    Fs = np.take_along_axis(F, order, axis=0)
    span = Fs[-1] - Fs[0]
    per_objective = np.zeros((n, m))
    cols = np.arange(m)
    for j in cols[(span > 0) & (scale > 0)]:
        d = np.empty(n)
        d[1:-1] = (Fs[2:, j] - Fs[:-2, j]) / span[j]
        d[0] = d[-1] = np.inf
        per_objective[order[:, j], j] = d * scale[j]
    return per_objective.sum(axis=1) / m


def crowding_distance(F) -> np.ndarray:
    """Deb's crowding distance of the points of one front (averaged over the objectives)."""
    return weighted_crowding_distance(F, None)


def rank_and_crowding(F, weights=None, violation=None) -> tuple[list[np.ndarray], np.ndarray, np.ndarray]:
    """Non-dominated sort, then the weighted crowding distance of every point within its own front."""
    fronts, rank = non_dominated_sort(F, violation)
    F = _as_objectives(F)
    crowd = np.zeros(F.shape[0])
    for front in fronts:
        crowd[front] = weighted_crowding_distance(F[front], weights)
    return fronts, rank, crowd


def survival_order(F, n_survive: int, weights=None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """NSGA-II survival: the ``n_survive`` best points by rank, ties on the last front cut by crowding.

    Whole fronts are taken in rank order; from the front that does not fit, the points with the largest
    weighted crowding distance are taken (a stable sort: equal distances keep index order). Returns
    ``(indices, rank, crowding)``: the survivors' indices in the order they were taken, and the rank and
    crowding distance of *every* point of ``F``.
    """
    fronts, rank, crowd = rank_and_crowding(F, weights)
    chosen = []
    for front in fronts:
        room = n_survive - len(chosen)
        if room <= 0:
            break
        if len(front) <= room:
            chosen.extend(front.tolist())
        else:
            by_crowding = front[np.argsort(-crowd[front], kind="mergesort")]
            chosen.extend(by_crowding[:room].tolist())
    return np.asarray(chosen, dtype=np.int64), rank, crowd
