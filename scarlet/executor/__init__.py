"""Executors of the supernet's multi-path work: the training step and the evaluation of many architectures.

- :func:`make_step` ``("sequential" | "batched", model, optimizer, ...)``: the training step
  ``step(images, labels, perms) -> per-path losses``. "sequential" is the reference
  (:func:`scarlet.fair_step.sequential_step`); "batched" (:class:`BatchedStep`) runs all paths in one forward and
  one backward with slots of equal shape grouped, and replays a CUDA graph on a GPU. Both give the same
  gradients, BN running statistics and updated weights.
- :func:`evaluate_batched`: top-1 accuracy of P architectures on the same batches with per-path BN
  recalibration, equal to :func:`evaluate_one_by_one` (the reference, :mod:`scarlet.evaluate`).
"""

from scarlet.executor.evaluate import batched_logits, evaluate_batched, evaluate_one_by_one
from scarlet.executor.plan import Plan, build_plan
from scarlet.executor.step import BatchedStep, SequentialStep, choose_executor, make_step

__all__ = ["BatchedStep", "Plan", "SequentialStep", "batched_logits", "build_plan", "choose_executor",
           "evaluate_batched", "evaluate_one_by_one", "make_step"]
