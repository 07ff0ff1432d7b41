"""Data parallelism across processes started by ``torchrun`` (NCCL on GPUs, gloo on CPUs).

Training (strict fairness, SPOS, EF, standalone): every rank holds the same model, the same sampler state and the
same data order, so every rank trains the same paths on the same global batch; each rank takes its own
contiguous shard of that batch (:meth:`Distributed.shard`). After the step's m backward passes, one all-reduce
averages across ranks, in a single flat buffer: the accumulated gradients, the BatchNorm running statistics and
the per-path losses (:func:`average_step`); then every rank makes the same update. There is no all-reduce per
path: what ``DistributedDataParallel.no_sync`` gives for the first m-1 paths, without wrapping the model (the
batched executor runs the supernet's modules directly, which DDP's forward hooks would not see).

- Gradients: each rank's loss is the mean over its shard, so the average over ranks is the gradient of the mean
  over the global batch, with BN batch statistics computed per shard (per-rank BN, what the papers did).
- BN running statistics: averaged, so every rank holds the same buffers (DDP instead broadcasts rank 0's each
  step); they are only used after BN recalibration anyway. ``--sync-bn`` (CUDA, sequential executor) computes
  the batch statistics over the global batch instead, with torch's SyncBatchNorm.
- Losses: averaged, so every rank sees the global loss and they all stop together on a non-finite one.
- Only rank 0 writes checkpoints, metrics and summaries; every rank resumes from the same checkpoint, and since
  all the state is the same on every rank a resumed run with the same world size is bit-exact.

``--batch-size`` is the global batch (each rank trains ``batch / world_size`` images), so the learning-rate
schedule and the data order do not depend on the number of ranks. A run resumed with a different world size
continues exactly the same global batches, paths and schedule; what changes is the BN batch statistics (computed
over shards of another size) and the order of the floating-point sums, so it is not bit-exact with the
uninterrupted run. ``config.json`` and ``summary.json`` record ``world_size`` (of the last resumption) and
``global_batch_size``. Every rank reads the checkpoint from the run directory, which must be on a file system all
nodes share.

Launch (``--device`` auto or cuda gives each rank ``cuda:LOCAL_RANK``)::

    torchrun --nproc-per-node 8 -m scarlet.train --batch-size 256 ...                 # one machine, 8 GPUs
    torchrun --nnodes 2 --nproc-per-node 8 --rdzv-backend c10d --rdzv-endpoint HOST:29500 -m scarlet.train ...
    torchrun --nproc-per-node 4 -m scarlet.search --supernet runs/s2 ...               # evaluations split

TuNAS and FP-NAS (``--strategy tunas|fpnas``) run in one process only: their distributed sampling (one
architecture per rank with rewards averaged; K samples split across ranks) is not implemented, and the trainer
refuses them under torchrun.

Search and evaluation: :meth:`Distributed.map` splits a list of architectures into contiguous parts, each rank
evaluates its part and the results are gathered in order; every rank runs the same (deterministic) search, so
all of them see the same population and only rank 0 writes.

A rank that dies or hangs makes the others fail with a one-line :class:`RankLost` (a ScarletError): at once when
its connection closes, at the latest after the process-group timeout (``--dist-timeout``); the last checkpoint
is untouched (tested on CPU with gloo). With NCCL, torch's watchdog may end a stuck process itself after the
timeout, with its own message; torchrun then stops the other ranks.

Every rank also shares torch's RNG state (seeded alike, consumed alike), which is what lets one checkpoint resume
every rank exactly; the price is that a dropout layer draws the same masks on every rank's shard.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Callable, Sequence

import torch
import torch.distributed as tdist
from torch import nn

from scarlet.errors import ScarletError

DEFAULT_TIMEOUT_S = 600.0
# Options of the training and search CLIs (see add_arguments).
DEFAULTS = {"dist_timeout": DEFAULT_TIMEOUT_S, "sync_bn": False}


class RankLost(ScarletError):
    """A collective failed: another rank exited, crashed or did not answer within the timeout."""


@dataclass
class Distributed:
    """This process's place in the run; the default is a single process (every method is then local)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    timeout_s: float = DEFAULT_TIMEOUT_S

    @property
    def is_main(self) -> bool:
        """Rank 0: the only one that writes files and prints."""
        return self.rank == 0

    @property
    def parallel(self) -> bool:
        return self.world_size > 1

    def shard(self, n: int) -> slice:
        """This rank's contiguous part of a global batch of ``n`` (``n`` divisible by the world size)."""
        if n % self.world_size:
            raise ScarletError(f"the global batch of {n} does not split into {self.world_size} equal shards; "
                               f"use a --batch-size divisible by the number of ranks")
        per = n // self.world_size
        return slice(self.rank * per, (self.rank + 1) * per)

    def part(self, n: int) -> slice:
        """This rank's contiguous part of ``n`` work items (sizes differ by at most one)."""
        base, extra = divmod(n, self.world_size)
        start = self.rank * base + min(self.rank, extra)
        return slice(start, start + base + (self.rank < extra))

    def map(self, fn: Callable[[list], Sequence], items: Sequence) -> list:
        """``fn(items)`` with the items split across ranks and the results gathered in order on every rank.

        Equal to ``list(fn(items))`` in one process when ``fn`` treats each item independently.
        """
        items = list(items)
        if not self.parallel:
            return list(fn(items))
        mine = items[self.part(len(items))]
        results = list(fn(mine)) if mine else []
        if len(results) != len(mine):
            raise ScarletError(f"rank {self.rank}: {len(results)} results for {len(mine)} items")
        gathered: list = [None] * self.world_size
        self._collective("gathering evaluation results", tdist.all_gather_object, gathered, results)
        return [r for part in gathered for r in part]

    def _collective(self, what: str, fn, *args):
        try:
            return fn(*args)
        except RankLost:
            raise
        except Exception as e:  # noqa: BLE001 - gloo and NCCL raise RuntimeError subclasses with long messages
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise RankLost(f"rank {self.rank}: {what} failed: another rank exited or did not answer within "
                           f"{self.timeout_s:g} s ({first}); the last checkpoint written is intact") from None

    def close(self) -> None:
        if self.parallel and tdist.is_initialized():
            tdist.destroy_process_group()


SINGLE = Distributed()


def _env_int(name: str, default: int | None = None) -> int:
    value = os.environ.get(name)
    if value is None:
        if default is None:
            raise ScarletError(f"WORLD_SIZE is set but {name} is not: start the ranks with torchrun")
        return default
    try:
        return int(value)
    except ValueError:
        raise ScarletError(f"environment variable {name}={value!r} is not an integer") from None


def _rank_device(spec: str, local_rank: int, parallel: bool) -> torch.device:
    from scarlet.config import resolve_device

    device = resolve_device(spec)
    if device.type == "cuda" and parallel:
        if device.index is not None and spec not in ("auto", "cuda"):
            raise ScarletError(f"--device {spec}: with several ranks use --device cuda (or auto); each rank takes "
                               f"cuda:LOCAL_RANK")
        if local_rank >= torch.cuda.device_count():
            raise ScarletError(f"local rank {local_rank} has no GPU ({torch.cuda.device_count()} visible)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    return device


def setup(device_spec: str = "auto", timeout_s: float = DEFAULT_TIMEOUT_S) -> Distributed:
    """Join the process group described by torchrun's environment (WORLD_SIZE, RANK, LOCAL_RANK, MASTER_ADDR,
    MASTER_PORT); without WORLD_SIZE (or with 1) this is a single process. The device is per local rank."""
    if not timeout_s > 0:
        raise ScarletError(f"--dist-timeout must be positive, got {timeout_s}")
    world = _env_int("WORLD_SIZE", 1)
    if world < 1:
        raise ScarletError(f"WORLD_SIZE={world} must be at least 1")
    if world == 1:
        return Distributed(device=_rank_device(device_spec, 0, False), timeout_s=timeout_s)
    rank, local_rank = _env_int("RANK"), _env_int("LOCAL_RANK", 0)
    if not 0 <= rank < world:
        raise ScarletError(f"RANK={rank} is outside 0..{world - 1}")
    device = _rank_device(device_spec, local_rank, True)
    if not tdist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        try:
            tdist.init_process_group(backend, rank=rank, world_size=world, timeout=timedelta(seconds=timeout_s),
                                     device_id=device if device.type == "cuda" else None)
        except Exception as e:  # noqa: BLE001 - rendezvous errors come as RuntimeError, ValueError, DistError
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise ScarletError(f"rank {rank} could not join the process group at "
                               f"{os.environ.get('MASTER_ADDR')}:{os.environ.get('MASTER_PORT')} ({first})") from None
    dist = Distributed(rank, world, local_rank, device, timeout_s)
    atexit.register(dist.close)
    return dist


def add_arguments(parser) -> None:
    """The CLIs' distributed options (values default to None, resolved against :data:`DEFAULTS`)."""
    parser.add_argument("--dist-timeout", type=float,
                        help=f"seconds a rank waits for the others before the run fails [{DEFAULT_TIMEOUT_S:g}]")


def add_training_arguments(parser) -> None:
    add_arguments(parser)
    parser.add_argument("--sync-bn", action="store_true", default=None,
                        help="BatchNorm statistics over the global batch (SyncBatchNorm; CUDA, sequential "
                             "executor) instead of per rank")


# -- training ---------------------------------------------------------------------------------------------------

def running_stats(model: nn.Module) -> list[torch.Tensor]:
    """The BatchNorm running means and variances, the buffers a data-parallel step averages."""
    return [t for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
            for t in (m.running_mean, m.running_var)]


def average_step(model: nn.Module, losses: torch.Tensor, dist: Distributed) -> torch.Tensor:
    """Average the accumulated gradients, the BN running statistics and ``losses`` across ranks, in place, with
    one all-reduce per dtype (one in practice); returns the averaged losses.

    Every rank must have trained the same paths, so the same parameters have gradients on every rank.
    """
    if not dist.parallel:
        return losses
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    tensors = grads + running_stats(model)
    loss_dtype = grads[0].dtype if grads else torch.float32
    losses = losses.detach().to(loss_dtype)
    tensors.append(losses)
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for t in tensors:
        by_dtype.setdefault(t.dtype, []).append(t)
    for group in by_dtype.values():
        flat = torch.cat([t.reshape(-1) for t in group])
        dist._collective("the gradient all-reduce", tdist.all_reduce, flat)
        flat.div_(dist.world_size)
        offset = 0
        for t in group:
            t.copy_(flat[offset:offset + t.numel()].view_as(t))
            offset += t.numel()
    return losses.float()


class DataParallelStep:
    """A training step on this rank's shard: ``local_step`` (built without an optimizer, so that it only
    accumulates gradients), one :func:`average_step`, then one update."""

    def __init__(self, local_step, model: nn.Module, optimizer: torch.optim.Optimizer, dist: Distributed):
        self.local_step, self.model, self.optimizer, self.dist = local_step, model, optimizer, dist

    def __call__(self, images, labels, perms) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        losses = self.local_step(images, labels, perms)
        losses = average_step(self.model, losses, self.dist)
        self.optimizer.step()
        return losses


def use_sync_batchnorm(model: nn.Module, dist: Distributed, executor: str) -> None:
    """Turn the model's BatchNorm layers into SyncBatchNorm in place (same parameters and buffers)."""
    if not dist.parallel:
        return
    if dist.device.type != "cuda":
        raise ScarletError("--sync-bn needs CUDA devices (torch's SyncBatchNorm does not run on CPUs)")
    if executor != "sequential":
        raise ScarletError("--sync-bn works with --executor sequential (the batched executor computes its own "
                           "per-path BN statistics)")
    _swap_batchnorm(model, nn.modules.batchnorm._BatchNorm, nn.SyncBatchNorm)


def drop_sync_batchnorm(model: nn.Module) -> None:
    """Back to plain BatchNorm2d (same parameters and buffers), e.g. before ranks evaluate different paths."""
    _swap_batchnorm(model, nn.SyncBatchNorm, nn.BatchNorm2d)


def _swap_batchnorm(module: nn.Module, old: type, new: type) -> None:
    for name, child in module.named_children():
        if isinstance(child, old) and type(child) is not new:
            swapped = new(child.num_features, child.eps, child.momentum, child.affine, child.track_running_stats)
            if child.affine:
                swapped.weight, swapped.bias = child.weight, child.bias
            if child.track_running_stats:
                swapped.running_mean, swapped.running_var = child.running_mean, child.running_var
                swapped.num_batches_tracked = child.num_batches_tracked
            swapped.train(child.training)
            setattr(module, name, swapped)
        else:
            _swap_batchnorm(child, old, new)


class ShardedEvaluator:
    """A search evaluator whose batches are split across ranks and gathered (same values as ``evaluate``)."""

    def __init__(self, evaluate: Callable[[list], Sequence[float]], dist: Distributed):
        self.evaluate, self.dist = evaluate, dist
        self.mode = getattr(evaluate, "mode", "custom")

    def __call__(self, genomes: Sequence) -> list[float]:
        return self.dist.map(self.evaluate, genomes)
