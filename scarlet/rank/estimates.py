"""Supernet estimates: each architecture's top-1 and loss on the validation split with inherited weights, after
BatchNorm recalibration on training batches (the search's evaluation, :mod:`scarlet.evaluate`).

The loss is the finer-grained signal: top-1 on a few hundred images ties often, the mean cross-entropy rarely.
The batched evaluator (:func:`scarlet.executor.evaluate.batched_logits`) runs many architectures together; the
sequential reference (:func:`scarlet.evaluate.recalibrate_bn`, one path at a time) is the fallback.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from scarlet.arch import Arch
from scarlet.errors import ScarletError

EVALUATORS = ("auto", "batched", "sequential")


@dataclass
class SupernetRun:
    """A trained supernet and the training configuration of its run directory."""

    label: str
    path: Path
    model: torch.nn.Module
    run_config: dict

    @property
    def config(self):
        return self.model.config


def load_run(label: str, path: str | Path) -> SupernetRun:
    from scarlet import load_supernet

    path = Path(path)
    if not path.is_dir():
        raise ScarletError(f"supernet {label!r}: run directory {path} does not exist")
    model = load_supernet(path)
    config_file = path / "config.json"
    run_config = json.loads(config_file.read_text()) if config_file.exists() else {}
    return SupernetRun(label, path, model, run_config)


def _scores(logits: torch.Tensor, labels: torch.Tensor) -> tuple[int, float]:
    """(correct, summed cross-entropy) of (B, classes) logits."""
    return int((logits.argmax(-1) == labels).sum()), float(F.cross_entropy(logits.float(), labels, reduction="sum"))


def _sequential(model, genes: list[tuple[int, ...]], calib: list, val: list) -> list[tuple[int, float]]:
    from scarlet.evaluate import recalibrate_bn

    work = copy.deepcopy(model)
    out = []
    for g in genes:
        if calib:
            recalibrate_bn(work, g, calib)
        correct, loss = 0, 0.0
        with torch.no_grad():
            for images, labels in val:
                c, l = _scores(work(images, g), labels)
                correct, loss = correct + c, loss + l
        out.append((correct, loss))
    return out


def _batched(model, genes: list[tuple[int, ...]], calib: list, val: list, chunk: int) -> list[tuple[int, float]]:
    from scarlet.executor.evaluate import batched_logits

    out = []
    for start in range(0, len(genes), chunk):
        part = genes[start:start + chunk]
        correct, loss = [0] * len(part), [0.0] * len(part)
        for images, labels in val:  # each call recalibrates on ``calib`` again: identical statistics every time
            logits = batched_logits(model, part, calib, images)
            for p in range(len(part)):
                c, l = _scores(logits[p], labels)
                correct[p], loss[p] = correct[p] + c, loss[p] + l
        out.extend(zip(correct, loss))
    return out


def estimate(run: SupernetRun, archs: Sequence[Arch], calib: list, val: list, evaluator: str = "auto",
             chunk: int = 8) -> list[dict]:
    """``[{"acc", "loss"}]`` per architecture, in ``archs`` order."""
    if evaluator not in EVALUATORS:
        raise ScarletError(f"unknown evaluator {evaluator!r}; choose one of {', '.join(EVALUATORS)}")
    genes = [tuple(run.model.arch(a).genes) for a in archs]
    total = sum(labels.numel() for _, labels in val)
    scores = None
    if evaluator in ("auto", "batched"):
        try:
            scores = _batched(run.model, genes, calib, val, chunk)
        except ScarletError as e:  # a block type the batched executor does not know
            if evaluator == "batched":
                raise
            print(f"note: supernet {run.label}: batched evaluation unavailable ({e}); evaluating one by one")
    if scores is None:
        scores = _sequential(run.model, genes, calib, val)
    return [{"acc": c / total, "loss": l / total} for c, l in scores]
