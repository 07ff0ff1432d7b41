"""Start N ranks of a function on this machine (gloo, CPU), as torchrun would: environment variables, one
process each. Results travel back through files the ranks write."""

from __future__ import annotations

import os
import socket

import torch
import torch.multiprocessing as mp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rank_env(rank: int, world_size: int, port: int) -> dict:
    return {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank), "LOCAL_RANK": str(rank),
            "WORLD_SIZE": str(world_size), "OMP_NUM_THREADS": "1"}


def _entry(rank, fn, world_size, port, args):
    os.environ.update(rank_env(rank, world_size, port))
    torch.set_num_threads(1)
    from scarlet import distributed

    dist = distributed.setup("cpu", timeout_s=60)
    try:
        fn(dist, *args)
    finally:
        dist.close()


def launch(fn, world_size: int, *args) -> None:
    """Run ``fn(dist, *args)`` on ``world_size`` ranks; raises if any rank fails."""
    mp.start_processes(_entry, args=(fn, world_size, free_port(), args), nprocs=world_size, join=True,
                       start_method="spawn")


def write_tiny_cifar(root, per_batch: int = 24, seed: int = 0):
    """CIFAR-10 binary batches of random images (``cifar10:ROOT``): a data set that loads without scikit-learn,
    which keeps the start-up of each rank process short."""
    import numpy as np

    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name in [f"data_batch_{i}.bin" for i in range(1, 6)] + ["test_batch.bin"]:
        records = rng.integers(0, 256, size=(per_batch, 3073), dtype=np.uint8)
        records[:, 0] = rng.integers(0, 10, size=per_batch)
        records.tofile(root / name)
    return root
