"""A search problem on a trained supernet: genomes are architectures, ``acc`` is measured, MAdds and params looked up.

- ``acc``: top-1 accuracy of the subnet with inherited weights on the validation split, after re-estimating the
  BatchNorm statistics of its path on a few training batches (:mod:`scarlet.evaluate`);
- ``madds``, ``params``: the deployed network's cost from the lookup tables of :class:`scarlet.cost.CostModel`,
  either at the supernet's own setting (resolution, classes, width) or at the papers' (224x224, 1000 classes,
  width 1), where SCARLET's 500M MAdds limit is meant.
"""

from __future__ import annotations

from typing import Sequence

import torch

from scarlet.cost import CostModel
from scarlet.errors import ScarletError
from scarlet.evaluate import evaluate_one_by_one
from scarlet.executor.layout import batches_in_layout, memory_format
from scarlet.search.problem import Constraint, Objective, Problem
from scarlet.supernet import Supernet, SupernetConfig

VALUE_NAMES = ("acc", "madds", "params")
COST_MODELS = ("supernet", "paper")


EVALUATORS = ("auto", "batched", "one-by-one")


class SupernetEvaluator:
    """``evaluator(genomes) -> accuracies`` on the same calibration and validation batches.

    ``mode``: "one-by-one" (:func:`scarlet.evaluate.evaluate_one_by_one`, the reference: it recalibrates the
    BN statistics of each path in turn on a copy of the model, from scratch each time, so a result does not
    depend on what was evaluated before),
    "batched" (:func:`scarlet.executor.evaluate_batched`: all the genomes of a call at once, per-path
    statistics kept outside the model, same accuracies), or "auto" (batched: on a CPU in channels-last it was
    1.01x-1.21x the one-by-one evaluation of the default job's 14 architectures in every round, with about 1.5x
    the memory, ``benchmarks/results/fair_step_cpu.json``). The batches are kept in the device's preferred
    memory layout (:mod:`scarlet.executor.layout`).
    """

    def __init__(self, model: Supernet, calib_batches: Sequence, val_batches: Sequence, mode: str = "auto",
                 chunk: int | None = None):
        if not val_batches:
            raise ScarletError("the validation split is empty: nothing to measure accuracy on")
        if mode not in EVALUATORS:
            raise ScarletError(f"unknown evaluator {mode!r}; choose one of {', '.join(EVALUATORS)}")
        device = next(model.parameters()).device
        if mode == "auto":
            mode = "batched"
        self.mode, self.chunk = mode, chunk
        fmt = memory_format("auto", device)
        self.model = model
        self.calib_batches = batches_in_layout(calib_batches, fmt)
        self.val_batches = batches_in_layout(val_batches, fmt)

    @torch.no_grad()
    def __call__(self, genomes: Sequence[Sequence[int]]) -> list[float]:
        if self.mode == "batched":
            from scarlet.executor import evaluate_batched

            return evaluate_batched(self.model, [tuple(g) for g in genomes], self.calib_batches, self.val_batches,
                                    self.chunk)
        return evaluate_one_by_one(self.model, [tuple(g) for g in genomes], self.calib_batches, self.val_batches)


def cost_model_for(model: Supernet, which: str) -> CostModel:
    if which == "supernet":
        return CostModel(model.config)
    if which == "paper":
        return CostModel(SupernetConfig(space=model.space.name))
    raise ScarletError(f"unknown cost model {which!r}; choose one of {', '.join(COST_MODELS)}")


def supernet_problem(model: Supernet, evaluator, objectives: Sequence[Objective], cost: CostModel,
                     madds_max: float | None = None, acc_min: float | None = None) -> Problem:
    """The search problem of SCARLET's equation (4) on ``model``'s space."""
    for o in objectives:
        if o.name not in VALUE_NAMES:
            raise ScarletError(f"unknown objective {o.name!r}; choose from {', '.join(VALUE_NAMES)}")
    constraints = []
    if madds_max is not None:
        constraints.append(Constraint("madds", maximum=float(madds_max)))
    if acc_min is not None:
        constraints.append(Constraint("acc", minimum=float(acc_min)))

    def lookup(genome):
        madds, params = cost.cost(tuple(genome))
        return {"madds": float(madds), "params": float(params)}

    space = model.space
    return Problem(num_choices=[space.num_choices] * space.num_layers, objectives=tuple(objectives),
                   evaluate=evaluator, cost=lookup, constraints=constraints, eval_name="acc")
