"""Rank statistics for the ranking study: Kendall tau-b, Spearman rho, top-k overlap, bootstrap intervals.

numpy only (scipy is not a dependency); tau-b and rho treat ties as scipy.stats.kendalltau (variant "b") and
scipy.stats.spearmanr do, which the tests check when scipy happens to be installed.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np


def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's tau-b: (concordant - discordant) / sqrt(pairs untied in x * pairs untied in y); nan if undefined."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError("kendall_tau needs two 1-D sequences of equal length")
    sx = np.sign(x[:, None] - x[None, :])
    sy = np.sign(y[:, None] - y[None, :])
    # Each unordered pair appears twice in the full matrices; the factors of 2 cancel.
    denominator = math.sqrt(float(np.count_nonzero(sx)) * float(np.count_nonzero(sy)))
    return float((sx * sy).sum() / denominator) if denominator > 0 else float("nan")


def average_ranks(x: Sequence[float]) -> np.ndarray:
    """Ranks 1..n, ties sharing the mean of the ranks they span."""
    x = np.asarray(x, dtype=np.float64)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), dtype=np.float64)
    sorted_x = x[order]
    start = 0
    for end in range(1, len(x) + 1):
        if end == len(x) or sorted_x[end] != sorted_x[start]:
            ranks[order[start:end]] = (start + end + 1) / 2  # mean of ranks start+1 .. end
            start = end
    return ranks


def spearman_rho(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation of the average ranks; nan if either side is constant."""
    rx, ry = average_ranks(x), average_ranks(y)
    if rx.shape != ry.shape:
        raise ValueError("spearman_rho needs two sequences of equal length")
    rx, ry = rx - rx.mean(), ry - ry.mean()
    denominator = math.sqrt(float((rx * rx).sum()) * float((ry * ry).sum()))
    return float((rx * ry).sum() / denominator) if denominator > 0 else float("nan")


def top_k_overlap(truth: Sequence[float], estimate: Sequence[float], k: int) -> float:
    """Fraction of the k best architectures by ``truth`` that are also among the k best by ``estimate``.

    Ties are broken by position (stable sort), so the value is deterministic.
    """
    truth, estimate = np.asarray(truth), np.asarray(estimate)
    k = min(k, len(truth))
    if k < 1:
        raise ValueError("top-k overlap needs k >= 1")
    best_truth = set(np.argsort(-truth, kind="stable")[:k].tolist())
    best_estimate = set(np.argsort(-estimate, kind="stable")[:k].tolist())
    return len(best_truth & best_estimate) / k


def bootstrap_ci(statistic: Callable[[np.ndarray, np.ndarray], float], x: Sequence[float], y: Sequence[float],
                 samples: int = 1000, seed: int = 0, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic(x, y)``, resampling the pairs (architectures) with replacement.

    Resamples on which the statistic is undefined (nan, e.g. every resampled architecture the same) are dropped.
    """
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(samples):
        idx = rng.integers(0, len(x), len(x))
        v = statistic(x[idx], y[idx])
        if not math.isnan(v):
            values.append(v)
    if not values:
        return float("nan"), float("nan")
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)


def summarise(truth: Sequence[float], estimate: Sequence[float], k: int, samples: int = 1000,
              seed: int = 0) -> dict:
    """Kendall tau, Spearman rho and top-k overlap of ``estimate`` against ``truth``, each with its 95% interval."""
    out = {"n": len(truth), "k": min(k, len(truth))}
    stats = {"kendall_tau": kendall_tau, "spearman_rho": spearman_rho,
             "top_k_overlap": lambda a, b: top_k_overlap(a, b, k)}
    for name, fn in stats.items():
        out[name] = fn(truth, estimate)
        out[name + "_ci"] = list(bootstrap_ci(fn, truth, estimate, samples, seed))
    return out
