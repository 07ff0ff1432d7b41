"""Ground truth of the ranking study: architectures drawn stratified by MAdds, each trained from scratch.

Every architecture is trained as its deployed network (:class:`~scarlet.standalone.StandaloneNet`) with one fixed
recipe (:class:`Recipe`) on one data set, for several seeds, on one thread. Each (architecture, seed, recipe,
data, network configuration) result is a JSON file in the cache directory, named by a hash of that key, so a rerun
or a larger study trains only what is missing.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from scarlet.arch import NAMED_ARCHS, Arch, parse_arch
from scarlet.checkpoint import atomic_write_text
from scarlet.cost import CostModel
from scarlet.data import BatchStream, Dataset, batches
from scarlet.errors import ScarletError
from scarlet.space import get_space
from scarlet.supernet import SupernetConfig

CACHE_VERSION = 1  # bump when the training loop changes what a cached result means


@dataclass(frozen=True)
class Recipe:
    """The one from-scratch recipe: SGD with Nesterov momentum, linear warm-up then cosine to 0, no dropout.

    Short on purpose, so that architectures do not all reach 100%. Measured on digits (width 0.25, 32x32, 10
    architectures, benchmarks/results/ranking_recipe_check_cpu.json): at 4 epochs top-1 is 82-97% and the
    seed-to-seed Kendall tau only 0.26 [-0.34, 0.76]; at 2 epochs (``--epochs 2``) 9-91% and 0.60 [0.12, 0.93],
    a ranking dominated by how fast a network learns. More seeds or architectures narrow the intervals.
    """

    epochs: int = 4
    batch_size: int = 64
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-5
    warmup_steps: int = 10

    def learning_rate(self, step: int, total: int) -> float:
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        span = max(total - self.warmup_steps, 1)
        return self.lr * 0.5 * (1 + math.cos(math.pi * (step - self.warmup_steps) / span))


def published_archs(space: str) -> list[tuple[str, Arch]]:
    """The named architectures of the papers that are expressible in ``space``."""
    out = []
    for name in NAMED_ARCHS:
        try:
            out.append((name, parse_arch(name, space)))
        except ScarletError:
            pass
    return out


def candidate_pool(config: SupernetConfig, size: int = 4000, seed: int = 0) -> dict[tuple[int, ...], int]:
    """Distinct architectures (genes -> MAdds) spread over the space's MAdds range.

    Each is drawn with its own bias towards cheap or expensive choices: uniform sampling alone concentrates around
    the mean MAdds and never reaches the extremes.
    """
    cost = CostModel(config)
    space = cost.space
    rng = np.random.default_rng(seed)
    widths_in = [cost.first_channels] + cost.out_channels[:-1]
    # Per layer, the choices from cheapest to most expensive (at the layer's nominal input width).
    by_cost = [sorted(range(space.num_choices), key=lambda c: table[c][w_in][0])
               for table, w_in in zip(cost.tables, widths_in)]
    pool: dict[tuple[int, ...], int] = {}
    for _ in range(size):
        tilt = math.exp(rng.uniform(-2.5, 2.5))  # u**tilt leans to cheap (tilt > 1) or costly (tilt < 1) choices
        ranks = np.minimum((rng.random(space.num_layers) ** tilt * space.num_choices).astype(int),
                           space.num_choices - 1)
        genes = tuple(order[r] for order, r in zip(by_cost, ranks))
        pool[genes] = cost.madds(genes)
    return pool


def madds_bins(madds: Sequence[float], lowest: float, highest: float, n: int) -> np.ndarray:
    """Index of the equal-width bin of [lowest, highest] (n bins) that holds each MAdds value."""
    edges = np.linspace(lowest, highest, n + 1)
    return np.clip(np.searchsorted(edges, np.asarray(madds, dtype=np.float64), side="right") - 1, 0, n - 1)


def stratified_archs(config: SupernetConfig, n: int, seed: int = 0, pool_size: int = 4000) -> list[Arch]:
    """``n`` distinct architectures, one from each of ``n`` equal-width MAdds bins over the range of
    :func:`candidate_pool` (bins left empty give their draw to the bins with the most candidates left),
    sorted by MAdds."""
    if n < 1:
        raise ScarletError(f"number of architectures must be >= 1, got {n}")
    pool = candidate_pool(config, pool_size, seed)
    if len(pool) < n:
        raise ScarletError(f"only {len(pool)} distinct architectures in the pool, {n} requested")
    genes_list = list(pool)
    madds = np.array([pool[g] for g in genes_list], dtype=np.float64)
    bins = madds_bins(madds, madds.min(), madds.max(), n)
    rng = np.random.default_rng(seed + 1)
    members = [list(rng.permutation(np.flatnonzero(bins == b))) for b in range(n)]
    chosen = [m.pop() for m in members if m]
    while len(chosen) < n:
        chosen.append(max(members, key=len).pop())
    chosen.sort(key=lambda i: madds[i])
    space = get_space(config.space)
    return [Arch(space.name, genes_list[i]) for i in chosen]


def cache_key(arch: Arch, seed: int, recipe: Recipe, dataset: str, config: SupernetConfig) -> dict:
    # Only what shapes the deployed network: supernet-only options (skip kind, new init options) do not.
    network = {k: getattr(config, k) for k in ("width", "resolution", "stem_stride", "in_channels", "num_classes")}
    return {"version": CACHE_VERSION, "arch": arch.encoding(), "space": arch.space, "seed": seed,
            "recipe": asdict(recipe), "dataset": dataset, "network": network}


def cache_path(cache_dir: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return Path(cache_dir) / f"gt-{digest}.json"


@torch.no_grad()
def _validate(model, data: Dataset) -> tuple[float, float]:
    model.eval()
    correct = total = 0
    loss = 0.0
    for images, labels in batches(data.val, 256):
        logits = model(images)
        loss += F.cross_entropy(logits, labels, reduction="sum").item()
        correct += (logits.argmax(1) == labels).sum().item()
        total += labels.numel()
    return correct / max(total, 1), loss / max(total, 1)


def train_from_scratch(arch: Arch, seed: int, recipe: Recipe, data: Dataset, config: SupernetConfig) -> dict:
    """Train ``arch``'s deployed network with ``recipe`` on one thread; validation top-1 and loss."""
    from scarlet.standalone import StandaloneNet

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    started = time.time()
    try:
        torch.manual_seed(seed)
        model = StandaloneNet(arch, config, dropout=0.0)
        optimizer = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum, nesterov=True,
                                    weight_decay=recipe.weight_decay)
        stream = BatchStream(data.train, recipe.batch_size, seed)
        total = recipe.epochs * stream.steps_per_epoch
        model.train()
        loss = torch.tensor(float("nan"))
        for step in range(total):
            for group in optimizer.param_groups:
                group["lr"] = recipe.learning_rate(step, total)
            images, labels = stream.next()
            loss = F.cross_entropy(model(images), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        acc, val_loss = _validate(model, data)
    finally:
        torch.set_num_threads(threads)
    return {"val_acc": acc, "val_loss": val_loss, "final_train_loss": float(loss.detach()), "steps": total,
            "seconds": round(time.time() - started, 2)}


class GroundTruth:
    """Cached from-scratch results; ``trained`` counts the trainings this object actually ran."""

    def __init__(self, cache_dir: str | Path, recipe: Recipe, data: Dataset, dataset: str, config: SupernetConfig):
        self.cache_dir, self.recipe, self.data = Path(cache_dir), recipe, data
        self.dataset, self.config = dataset, config
        self.trained = 0

    def result(self, arch: Arch, seed: int) -> dict:
        key = cache_key(arch, seed, self.recipe, self.dataset, self.config)
        path = cache_path(self.cache_dir, key)
        if path.exists():
            try:
                stored = json.loads(path.read_text())
                if stored.get("key") == key:
                    return stored["result"]
            except (json.JSONDecodeError, KeyError):
                pass  # a damaged entry is retrained and rewritten
        result = train_from_scratch(arch, seed, self.recipe, self.data, self.config)
        self.trained += 1
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps({"key": key, "result": result}, indent=1) + "\n")
        return result

    def table(self, archs: Sequence[Arch], seeds: Sequence[int], progress: bool = True) -> list[list[dict]]:
        """``results[i][j]``: architecture i, seed j (cached or trained now)."""
        from tqdm import tqdm

        jobs = [(i, s) for i in range(len(archs)) for s in seeds]
        out = [[None] * len(seeds) for _ in archs]
        with tqdm(total=len(jobs), disable=not progress, unit="net", desc="ground truth", dynamic_ncols=True) as bar:
            for i, s in jobs:
                out[i][list(seeds).index(s)] = self.result(archs[i], s)
                bar.update(1)
        return out
