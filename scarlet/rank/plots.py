"""Figures of the ranking study (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def _interval(ci) -> str:
    return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def ranking_scatter(path: Path, label: str, truth: Sequence[float], estimate: Sequence[float],
                    names: Sequence[str], stats: dict) -> None:
    """Ground-truth mean top-1 (x) against the supernet's estimate (y); published architectures annotated."""
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    ax.scatter(truth, estimate, s=18)
    for x, y, name in zip(truth, estimate, names):
        if not name.startswith("sampled"):
            ax.annotate(name, (x, y), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("trained from scratch: mean top-1 over seeds")
    ax.set_ylabel("supernet estimate: top-1 (BN recalibrated)")
    ax.set_title(f"{label}: Kendall tau {stats['kendall_tau']:.2f} {_interval(stats['kendall_tau_ci'])}, "
                 f"n={stats['n']}", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def similarity_heatmaps(path: Path, title: str, matrices: Sequence, tokens: Sequence[str]) -> None:
    """One heatmap per layer (choices x choices, cosine similarity), in a grid; colour scale -1..1 for all."""
    n = len(matrices)
    cols = 5
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 3.0 * rows), squeeze=False)
    image = None
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        m = matrices[i]
        image = ax.imshow(m, vmin=-1, vmax=1, cmap="coolwarm")
        off_diagonal = (m.sum() - m.trace()) / max(m.shape[0] * (m.shape[0] - 1), 1)
        ax.set_title(f"layer {i + 1} (mean {off_diagonal:.2f})", fontsize=8)
        ax.set_xticks(range(len(tokens)), tokens, rotation=90, fontsize=5)
        ax.set_yticks(range(len(tokens)), tokens, fontsize=5)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    if image is not None:
        fig.colorbar(image, ax=axes.ravel().tolist(), shrink=0.6)
    fig.savefig(path, dpi=110)
    plt.close(fig)
