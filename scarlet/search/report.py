"""The files a search leaves in its output directory: pareto.json, evaluated.csv, history.jsonl, pareto.png."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from scarlet.arch import Arch
from scarlet.checkpoint import atomic_write_bytes, atomic_write_text
from scarlet.search.algorithm import Individual, SearchAlgorithm, SearchResult


def _number(x: float):
    return int(x) if float(x).is_integer() else x


def individual_row(ind: Individual, space: str) -> dict:
    row = {"arch": ",".join(map(str, ind.genome)), "tokens": Arch(space, ind.genome).tokens()}
    row.update({k: _number(v) for k, v in ind.values.items()})
    row["generation"] = ind.generation
    return row


def write_pareto_json(path: Path, result: SearchResult, space: str) -> None:
    """The final front in the order of the pick objective; ``pick`` marks the K equispaced picks."""
    picks = {ind.genome for ind in result.picks}
    rows = [{**individual_row(ind, space), "pick": ind.genome in picks} for ind in result.front]
    atomic_write_text(path, json.dumps(rows, indent=2) + "\n")


def write_evaluated_csv(path: Path, algo: SearchAlgorithm, result: SearchResult) -> None:
    """Every evaluated architecture, in evaluation order."""
    front = {ind.genome for ind in result.front}
    names = sorted({k for r in algo.archive.records.values() for k in r.values},
                   key=lambda k: (k != algo.problem.eval_name, k))
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["arch", *names, "generation", "feasible", "on_front"])
    for genome, record in algo.archive.records.items():
        w.writerow([",".join(map(str, genome)), *(_number(record.values[k]) for k in names), record.generation,
                    int(algo.archive.feasible(genome)), int(genome in front)])
    atomic_write_text(path, buf.getvalue())


def write_history_jsonl(path: Path, history: list[dict], elapsed: list[float]) -> None:
    lines = [json.dumps({**record, **({"elapsed_s": round(t, 3)} if t is not None else {})})
             for record, t in zip(history, elapsed + [None] * (len(history) - len(elapsed)))]
    atomic_write_text(path, "".join(line + "\n" for line in lines))


def plot_pareto(path: Path, algo: SearchAlgorithm, result: SearchResult, x: str = "madds", y: str = "acc") -> bool:
    """Accuracy against MAdds: every evaluated architecture shaded by generation, the front and picks on top.

    Returns False (and writes nothing) when matplotlib is not installed.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    records = list(algo.archive.records.values())
    fig, ax = plt.subplots(figsize=(7, 5), dpi=120)
    scale = 1e6 if x in ("madds", "params") else 1.0
    unit = "M" if scale == 1e6 else ""
    if records:
        points = ax.scatter([r.values[x] / scale for r in records], [r.values[y] for r in records],
                            c=[r.generation for r in records], cmap="viridis", s=12, alpha=0.6, linewidths=0)
        fig.colorbar(points, ax=ax, label="generation evaluated")
    front = sorted(result.front, key=lambda ind: ind.values[x])
    if front:
        ax.scatter([i.values[x] / scale for i in front], [i.values[y] for i in front], color="crimson", s=28,
                   label=f"Pareto front ({len(front)})", zorder=2)
        ax.scatter([i.values[x] / scale for i in result.picks], [i.values[y] for i in result.picks], s=120,
                   facecolors="none", edgecolors="black", linewidths=1.5, label=f"picks ({len(result.picks)})",
                   zorder=3)
    ax.set_xlabel(f"{x} ({unit})" if unit else x)
    ax.set_ylabel(y)
    ax.set_title(f"{algo.name}: {len(records)} architectures evaluated")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(path, lambda f: f.write(buf.getvalue()))
    return True
