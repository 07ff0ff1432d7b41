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
from scarlet.evaluate import accuracy, recalibrate_bn
from scarlet.search.problem import Constraint, Objective, Problem
from scarlet.supernet import Supernet, SupernetConfig

VALUE_NAMES = ("acc", "madds", "params")
COST_MODELS = ("supernet", "paper")


EVALUATORS = ("auto", "batched", "one-by-one")


def batched_evaluator_available() -> bool:
    try:
        from scarlet.executor import evaluate_batched  # noqa: F401
    except ImportError:
        return False
    return True


class SupernetEvaluator:
    """``evaluator(genomes) -> accuracies`` on the same calibration and validation batches.

    ``mode``: "one-by-one" (:mod:`scarlet.evaluate`, the reference: it recalibrates the model's own BN buffers
    of each path in turn, from scratch each time, so a result does not depend on what was evaluated before),
    "batched" (:func:`scarlet.executor.evaluate_batched`: all the genomes of a call at once, per-path
    statistics kept outside the model, same accuracies), or "auto" (batched on a GPU, one by one on a CPU
    where the two run at the same speed; see ``benchmarks/search.py``).
    """

    def __init__(self, model: Supernet, calib_batches: Sequence, val_batches: Sequence, mode: str = "auto",
                 chunk: int | None = None):
        if not val_batches:
            raise ScarletError("the validation split is empty: nothing to measure accuracy on")
        if mode not in EVALUATORS:
            raise ScarletError(f"unknown evaluator {mode!r}; choose one of {', '.join(EVALUATORS)}")
        if mode == "auto":
            on_gpu = next(model.parameters()).device.type == "cuda"
            mode = "batched" if on_gpu and batched_evaluator_available() else "one-by-one"
        if mode == "batched" and not batched_evaluator_available():
            raise ScarletError("the batched evaluator (scarlet.executor) is not available; use --evaluator "
                               "one-by-one")
        self.mode, self.chunk = mode, chunk
        self.model, self.calib_batches, self.val_batches = model, list(calib_batches), list(val_batches)

    @torch.no_grad()
    def __call__(self, genomes: Sequence[Sequence[int]]) -> list[float]:
        if self.mode == "batched":
            from scarlet.executor import evaluate_batched

            return evaluate_batched(self.model, [tuple(g) for g in genomes], self.calib_batches, self.val_batches,
                                    self.chunk)
        out = []
        for genes in genomes:
            genes = tuple(genes)
            if self.calib_batches:
                recalibrate_bn(self.model, genes, self.calib_batches)
            out.append(accuracy(self.model, genes, self.val_batches))
        return out


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
