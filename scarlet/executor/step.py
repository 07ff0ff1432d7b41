"""The batched fair step: the paths of a training step in one forward and one backward, optionally replayed
from a CUDA graph.

It reproduces :func:`scarlet.fair_step.sequential_step` (gradients, BN running statistics, updated weights):

- the stem and first block run once; their BN statistics get one update per path (:class:`TrainNorm`);
- every choice runs once per path that took it, on that path's activation (:mod:`scarlet.executor.stacked`);
- the head runs on the stacked paths with per-path BN statistics, its running statistics updated in path order;
- the loss is the sum of the per-path mean cross-entropies, so one backward accumulates what the sequential
  step's per-path backwards accumulate; then one optimizer step.

Any number of paths works: strict-fair permutations (m columns), one uniform path, or the EF sampler's m
identical columns (a choice taken by several paths runs on all of them, each with its own BN statistics, and its
running statistics are updated path after path: exact, no fallback).

``paths_in_flight`` splits the paths into consecutive groups that run forward and backward one after the other
(the stem output is kept and back-propagated once at the end), which bounds activation memory and stays exact.

On a GPU the step is captured once in a CUDA graph and replayed with the new routing copied into a static
buffer (see :class:`BatchedStep` for when that is possible).
"""

from __future__ import annotations

import contextlib
import warnings

import torch
from torch import nn

from scarlet.errors import ScarletError
from scarlet.executor.memory import default_paths_in_flight
from scarlet.executor.norm import TrainNorm
from scarlet.executor.plan import build_plan
from scarlet.executor.stacked import StackedForward
from scarlet.fair_step import SHARED_GRAD_MODES, scale_shared_gradients, sequential_step


def check_perms(perms, model) -> torch.Tensor:
    """``perms`` as a CPU int64 (layers, paths) tensor, validated against ``model``."""
    perms = torch.as_tensor(perms).detach().cpu()
    if perms.dim() != 2 or perms.dtype == torch.bool or perms.dtype.is_floating_point:
        raise ScarletError(f"perms must be an integer (layers, paths) tensor, got {tuple(perms.shape)} {perms.dtype}")
    if perms.shape[0] != len(model.layers) or perms.shape[1] < 1:
        raise ScarletError(f"perms has shape {tuple(perms.shape)}; expected ({len(model.layers)}, paths >= 1)")
    m = model.space.num_choices
    if int(perms.min()) < 0 or int(perms.max()) >= m:
        raise ScarletError(f"perms entries must lie in 0..{m - 1}")
    return perms.to(torch.int64)


def _check_shared_grad(mode: str) -> str:
    if mode not in SHARED_GRAD_MODES:
        raise ScarletError(f"unknown shared_grad {mode!r}; choose one of {', '.join(SHARED_GRAD_MODES)}")
    return mode


def _autocast(device: torch.device, dtype, cache_enabled: bool = True):
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype, cache_enabled=cache_enabled)


class SequentialStep:
    """:func:`scarlet.fair_step.sequential_step` behind the executor interface (the reference)."""

    name = "sequential"

    def __init__(self, model, optimizer, *, autocast_dtype=None, shared_grad: str = "sum"):
        self.model, self.optimizer, self.autocast_dtype = model, optimizer, autocast_dtype
        self.shared_grad = _check_shared_grad(shared_grad)

    def __call__(self, images, labels, perms) -> torch.Tensor:
        perms = check_perms(perms, self.model)
        return sequential_step(self.model, images, labels, perms, self.optimizer, self.autocast_dtype,
                               self.shared_grad)


class BatchedStep:
    """All paths of a step in one pass (per group of ``paths_in_flight``); see the module docstring.

    CUDA graph replay (``cuda_graph=True`` and CUDA tensors) applies when all paths are in flight, no BN uses
    momentum None, and the slot layout (which choices each layer runs, the batch shape) stays the same from step
    to step, as under strict fairness. The first ``warmup_steps`` steps of a layout run eagerly on a side stream,
    then the step is captured and every later step of that layout is a replay. The optimizer step is inside the
    graph only when :func:`optimizer_capturable` (a tensor ``lr`` and ``capturable=True`` in every param group: a
    float lr would be frozen into the graph, and optimizers without that option, SGD among them, read a tensor lr
    on the host); otherwise it runs eagerly right after the replay. A head with dropout > 0 is never captured:
    a replay draws one mask for all paths, the eager step one per path as the sequential step does, so only the
    eager step is exact. Capture failures fall back to eager steps with one warning.
    """

    name = "batched"

    def __init__(self, model, optimizer, *, autocast_dtype=None, paths_in_flight: int | None = None,
                 cuda_graph: bool = True, grouping: str = "shape", kernels: str = "auto", warmup_steps: int = 3,
                 shared_grad: str = "sum"):
        if paths_in_flight is not None and paths_in_flight < 1:
            raise ScarletError(f"paths_in_flight must be at least 1, got {paths_in_flight}")
        self.model, self.optimizer, self.autocast_dtype = model, optimizer, autocast_dtype
        self.shared_grad = _check_shared_grad(shared_grad)
        self.paths_in_flight = paths_in_flight
        self.grouping = grouping
        self.cuda_graph = cuda_graph
        self.warmup_steps = max(1, warmup_steps)
        self.forward = StackedForward(model, kernels)
        self._auto_paths: dict = {}
        self._graph: _Graph | None = None
        self._streak = (None, 0)  # (layout key, consecutive steps with it)
        self._warned: set[str] = set()

    # -- public -----------------------------------------------------------------------------------------------
    def __call__(self, images: torch.Tensor, labels: torch.Tensor, perms) -> torch.Tensor:
        perms = check_perms(perms, self.model)
        archs = [tuple(col) for col in perms.t().tolist()]
        in_flight = self._in_flight(images, len(archs))
        if self._graph_possible(images, len(archs), in_flight):
            return self._graph_step(images, labels, archs)
        return self._eager_step(images, labels, archs, in_flight)

    # -- eager ------------------------------------------------------------------------------------------------
    def _in_flight(self, images, num_paths: int) -> int:
        if self.paths_in_flight is not None:
            return min(self.paths_in_flight, num_paths)
        key = (tuple(images.shape), images.dtype, images.device, num_paths)
        if key not in self._auto_paths:
            self._auto_paths[key] = default_paths_in_flight(self.model, images, num_paths, self.autocast_dtype)
        return self._auto_paths[key]

    def _eager_step(self, images, labels, archs, in_flight) -> torch.Tensor:
        self.model.train()
        if self.optimizer is not None:
            self.optimizer.zero_grad(set_to_none=True)
        losses = self._forward_backward(images, labels, archs, in_flight)
        if self.optimizer is not None:
            self.optimizer.step()
        return losses

    def _forward_backward(self, images, labels, archs, in_flight, routing=None, graph_mode=False):
        """Forward and backward of every path; returns the per-path losses in path order (float32)."""
        norm = TrainNorm()
        device = images.device
        ctx = _autocast(device, self.autocast_dtype, cache_enabled=not graph_mode)
        with ctx:
            x0 = self.forward.stem(images, norm, repeat=len(archs))
        chunks = [(a, min(a + in_flight, len(archs))) for a in range(0, len(archs), in_flight)]
        shared = x0 if len(chunks) == 1 else x0.detach().requires_grad_()
        out = []
        for a, b in chunks:
            plan = build_plan(self.model, archs[a:b], self.grouping)
            route = routing if routing is not None else plan.routing().to(device, non_blocking=True)
            with ctx:
                slot_losses, order = self.forward.losses(shared, labels, plan, route, norm,
                                                         dropout="exact")
            slot_losses.sum().backward()
            out.append(slot_losses.detach().float().index_select(0, order))
        if len(chunks) > 1:
            x0.backward(shared.grad)
        scale_shared_gradients(self.model, len(archs), self.shared_grad)  # inside the graph when captured
        return torch.cat(out) if len(out) > 1 else out[0]

    # -- CUDA graph -------------------------------------------------------------------------------------------
    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            warnings.warn(message, stacklevel=3)

    def _graph_possible(self, images, num_paths, in_flight) -> bool:
        if not (self.cuda_graph and images.is_cuda):
            return False
        if in_flight < num_paths:
            self._warn_once("chunks", "batched step: CUDA graph replay needs all paths in flight; running eagerly "
                            f"({in_flight} of {num_paths} paths in flight)")
            return False
        if any(isinstance(m, nn.Dropout) and m.p > 0 for m in self.model.modules()):
            self._warn_once("dropout", "batched step: a replayed graph cannot draw dropout masks as the sequential "
                            "step does; CUDA graph replay disabled, running eagerly")
            return False
        if any(m.momentum is None for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)):
            self._warn_once("momentum", "batched step: BN momentum None reads a counter on the host each step; "
                            "CUDA graph replay disabled, running eagerly")
            return False
        return True

    def _graph_step(self, images, labels, archs) -> torch.Tensor:
        plan = build_plan(self.model, archs, self.grouping)
        key = (plan.signature, tuple(images.shape), images.dtype, tuple(labels.shape), labels.dtype)
        graph = self._graph
        if graph is not None and graph.key == key:
            if graph.hyperparameters_changed():  # replaced parameters, optimizer state or hyperparameters
                self._graph = None
                return self._capture_or_eager(key, images, labels, archs, plan)
            return graph.replay(images, labels, plan.routing())
        streak = self._streak[1] + 1 if self._streak[0] == key else 1
        self._streak = (key, streak)
        if streak <= self.warmup_steps:
            if graph is not None:
                self._warn_once("layout", "batched step: the slot layout changed (non-fair sampler or new batch "
                                "shape); steps with another layout than the captured one run eagerly")
            side = torch.cuda.Stream(device=images.device)
            side.wait_stream(torch.cuda.current_stream(images.device))
            with torch.cuda.stream(side):
                losses = self._eager_step(images, labels, archs, len(archs))
            torch.cuda.current_stream(images.device).wait_stream(side)
            return losses
        return self._capture_or_eager(key, images, labels, archs, plan)

    def _capture_or_eager(self, key, images, labels, archs, plan) -> torch.Tensor:
        try:
            self._graph = _Graph.capture(self, key, images, labels, archs, plan)
        except Exception as e:  # noqa: BLE001 - any failure to capture means: eager from now on
            self._graph = None
            self.cuda_graph = False
            self._warn_once("capture", f"batched step: CUDA graph capture failed ({type(e).__name__}: {e}); "
                            "running eagerly from now on")
            torch.cuda.synchronize(images.device)
            return self._eager_step(images, labels, archs, len(archs))
        return self._graph.replay(images, labels, plan.routing())


def optimizer_capturable(optimizer) -> bool:
    """Whether ``optimizer.step()`` can run inside a CUDA graph: every param group has a tensor ``lr`` (a float
    would be frozen into the graph) and ``capturable=True``; without that flag (SGD has none) optimizers turn a
    tensor lr into a Python number, a host sync that fails the capture."""
    return all(isinstance(g["lr"], torch.Tensor) and g.get("capturable") is True for g in optimizer.param_groups)


class _Graph:
    """One captured step: static inputs (images, labels, routing), the graph, its losses and gradients."""

    def __init__(self):
        self.key = None

    @classmethod
    def capture(cls, step: BatchedStep, key, images, labels, archs, plan) -> "_Graph":
        self = cls()
        self.key, self.step = key, step
        optimizer = step.optimizer
        self.whole = optimizer is not None and optimizer_capturable(optimizer)
        if optimizer is not None and not self.whole:
            step._warn_once("lr", "batched step: the optimizer step runs eagerly after the graph replay (it is "
                            "captured too with a tensor lr and capturable=True, e.g. Adam(capturable=True))")
        self.params = [p for p in step.model.parameters() if p.requires_grad]
        self.images = images.detach().clone()
        self.labels = labels.detach().clone()
        self.routing = plan.routing().to(images.device)
        self.host_routing = torch.empty_like(self.routing, device="cpu").pin_memory()
        self.copied = torch.cuda.Event()
        self.copied.record()
        step.model.train()
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize(images.device)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.losses = step._forward_backward(self.images, self.labels, archs, len(archs),
                                                 routing=self.routing, graph_mode=True)
            if self.whole:
                optimizer.step()
        self.grads = [p.grad for p in self.params]
        self.hyper = self._hyperparameters()
        return self

    def _hyperparameters(self):
        """What the captured step reads and a user could replace: parameter storages, and with the optimizer
        inside the graph its float hyperparameters, its lr tensors and its state tensors."""
        pointers = tuple(p.data_ptr() for p in self.params)
        optimizer = self.step.optimizer
        if optimizer is None or not self.whole:
            return pointers
        groups = [{k: (("tensor", v.data_ptr()) if isinstance(v, torch.Tensor) else v)
                   for k, v in g.items() if k != "params"} for g in optimizer.param_groups]
        state = tuple(t.data_ptr() for st in optimizer.state.values() for t in st.values()
                      if isinstance(t, torch.Tensor))
        return pointers, groups, state

    def hyperparameters_changed(self) -> bool:
        return self._hyperparameters() != self.hyper

    def replay(self, images, labels, routing: torch.Tensor) -> torch.Tensor:
        self.images.copy_(images, non_blocking=True)
        self.labels.copy_(labels, non_blocking=True)
        self.copied.synchronize()  # the previous step's copy has read the pinned buffer
        self.host_routing.copy_(routing)
        self.routing.copy_(self.host_routing, non_blocking=True)
        self.copied.record()
        self.step.model.train()
        self.graph.replay()
        for p, g in zip(self.params, self.grads):
            if p.grad is not g:
                p.grad = g
        if self.step.optimizer is not None and not self.whole:
            self.step.optimizer.step()
        return self.losses.clone()


CPU_BATCHED_MAX_RESOLUTION = 32  # see choose_executor


def choose_executor(name: str, device, sampler: str | None, *, width: float, resolution: int) -> str:
    """The executor ``name`` ("auto", "sequential" or "batched") stands for, for a supernet of ``width`` trained
    at ``resolution`` on ``device`` with ``sampler``.

    "auto": batched on CUDA; on a CPU, from the measured rule below. Both give the same results (tested); the
    batched step needs every path of a step to be a different one to pay off, as the fair sampler's are.

    The CPU rule (``benchmarks/results/fair_step_cpu.json``, channels-last, 1 thread, stem stride 2, batch 64):
    batched was 1.06x-1.87x the sequential step in every round at 16 and 32 pixels and widths 0.25-1.0, tied
    at 64 pixels and width 0.25 and lost at 64 pixels and width 1.0 (0.48x-1.2x), where the 13 paths'
    activations no longer fit the caches together; it also holds about twice the memory.
    """
    if name != "auto":
        return name
    if sampler != "fair":
        return "sequential"
    if torch.device(device).type == "cuda":
        return "batched"
    return "batched" if resolution <= CPU_BATCHED_MAX_RESOLUTION else "sequential"


def make_step(name: str, model, optimizer, *, autocast_dtype=None, paths_in_flight: int | None = None,
              cuda_graph: bool = True, shared_grad: str = "sum", **options):
    """The training step of executor ``name``: ``step(images, labels, perms) -> per-path losses (paths,)``.

    ``"sequential"``: the reference (:func:`scarlet.fair_step.sequential_step`); ``paths_in_flight`` and
    ``cuda_graph`` do not apply to it. ``"batched"``: :class:`BatchedStep` (``options``: ``grouping``,
    ``kernels``, ``warmup_steps``). ``optimizer=None`` leaves the accumulated gradients in ``.grad``.
    ``shared_grad``: ``"sum"`` (FairNAS Algorithm 1) or ``"mean"`` over the paths, for the stem, first block and
    head (:func:`scarlet.fair_step.scale_shared_gradients`, honoured by both executors).
    """
    if name == "sequential":
        return SequentialStep(model, optimizer, autocast_dtype=autocast_dtype, shared_grad=shared_grad)
    if name == "batched":
        return BatchedStep(model, optimizer, autocast_dtype=autocast_dtype, paths_in_flight=paths_in_flight,
                           cuda_graph=cuda_graph, shared_grad=shared_grad, **options)
    raise ScarletError(f"unknown executor {name!r}; choose sequential or batched")
