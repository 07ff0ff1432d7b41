"""Data-parallel fair step on CPU with gloo, 1 rank against 2, and the bytes the step all-reduces at full size.

Measured: ranks started on this machine (one torch thread each), strict-fairness steps of a small scarlet-s2
supernet (width 0.25, 32x32, 10 classes, the default job's model) on a fixed global batch split across the ranks,
with the phases timed separately: the local step (the m forward and backward passes on the rank's shard), the
gradient all-reduce (:func:`scarlet.distributed.average_step`, which includes waiting for the slower rank) and the
update; plus a bare all-reduce of the same buffer after a barrier (the transfer alone). 1 and 2 ranks run in
alternating rounds and each keeps its best round, which suits a shared machine.

Computed: the bytes one step all-reduces for the papers' full-size supernets (width 1.0, 224x224, 1000 classes):
every parameter's gradient under strict fairness (every choice is trained each step), the BN running statistics
and the m losses, in float32.

    python benchmarks/distributed.py [--quick] [--out benchmarks/results/distributed_cpu.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scarlet import distributed  # noqa: E402
from scarlet.executor import make_step  # noqa: E402
from scarlet.samplers import FairSampler  # noqa: E402
from scarlet.supernet import Supernet, SupernetConfig  # noqa: E402
from benchmarks.machine import cpu_name  # noqa: E402

SMALL = dict(space="scarlet-s2", width=0.25, resolution=32, stem_stride=2, in_channels=3, num_classes=10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank(rank, world, port, global_batch, steps, out_dir):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), LOCAL_RANK=str(rank),
                      WORLD_SIZE=str(world))
    torch.set_num_threads(1)
    dist = distributed.setup("cpu", timeout_s=300)
    torch.manual_seed(0)
    model = Supernet(SupernetConfig(**SMALL))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=4e-5)
    sampler = FairSampler(SMALL["space"], seed=0)
    local_step = make_step("sequential", model, None)
    gen = torch.Generator().manual_seed(1)
    images = torch.randn(global_batch, 3, SMALL["resolution"], SMALL["resolution"], generator=gen)
    labels = torch.randint(SMALL["num_classes"], (global_batch,), generator=gen)
    part = dist.shard(global_batch)
    x, y = images[part], labels[part]
    rows = []
    for i in range(steps + 1):  # the first step warms up
        perms = sampler.permutations()
        t0 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        losses = local_step(x, y, perms)
        t1 = time.perf_counter()
        distributed.average_step(model, losses, dist)
        t2 = time.perf_counter()
        optimizer.step()
        t3 = time.perf_counter()
        if i:
            rows.append({"step_s": t3 - t0, "local_s": t1 - t0, "allreduce_s": t2 - t1})
    buffer_numel = sum(p.numel() for p in model.parameters() if p.grad is not None) + sum(
        t.numel() for t in distributed.running_stats(model)) + perms.shape[1]
    bare = None
    if dist.parallel:  # the transfer alone: both ranks ready, then one all-reduce of the same size
        flat = torch.zeros(buffer_numel)
        times = []
        for _ in range(5):
            torch.distributed.barrier()
            t0 = time.perf_counter()
            torch.distributed.all_reduce(flat)
            times.append(time.perf_counter() - t0)
        bare = min(times)
    if dist.is_main:
        (Path(out_dir) / f"world{world}.json").write_text(json.dumps(
            {"rows": rows, "buffer_bytes": buffer_numel * 4, "bare_allreduce_s": bare}))
    dist.close()


def measure(world, global_batch, steps, out_dir) -> dict:
    mp.start_processes(_rank, args=(world, _free_port(), global_batch, steps, out_dir), nprocs=world, join=True,
                       start_method="spawn")
    data = json.loads((Path(out_dir) / f"world{world}.json").read_text())
    rows = data["rows"]
    step = statistics.median(r["step_s"] for r in rows)
    allreduce = statistics.median(r["allreduce_s"] for r in rows)
    return {"ranks": world, "global_batch": global_batch, "per_rank_batch": global_batch // world,
            "paths_per_step": 13, "steps": len(rows), "step_s_median": round(step, 5),
            "local_step_s_median": round(statistics.median(r["local_s"] for r in rows), 5),
            "allreduce_s_median": round(allreduce, 5), "allreduce_share": round(allreduce / step, 4),
            "bare_allreduce_s": None if data["bare_allreduce_s"] is None else round(data["bare_allreduce_s"], 5),
            "images_per_s": round(global_batch / step, 2), "allreduce_bytes": data["buffer_bytes"]}


def full_size_bytes() -> list[dict]:
    """What one strict-fairness step all-reduces for the papers' supernets, float32."""
    out = []
    for space in ("scarlet-s2", "fairnas"):
        model = Supernet(SupernetConfig(space=space))  # width 1.0, 224x224, 1000 classes
        params = sum(p.numel() for p in model.parameters())
        stats = sum(t.numel() for t in distributed.running_stats(model))
        m = model.space.num_choices
        out.append({"space": space, "params": params, "bn_running_stats": stats, "paths": m,
                    "allreduce_bytes_fp32": 4 * (params + stats + m)})
    return out



def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="fewer steps and rounds (a smoke run)")
    p.add_argument("--global-batch", type=int, default=32)
    p.add_argument("--out", default=None, help="also write the JSON here")
    args = p.parse_args(argv)
    steps, rounds = (2, 1) if args.quick else (4, 2)
    best: dict[int, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for _ in range(rounds):  # 1 and 2 ranks side by side, best round kept
            for world in (1, 2):
                r = measure(world, args.global_batch, steps, tmp)
                print(json.dumps(r), file=sys.stderr, flush=True)
                if world not in best or r["step_s_median"] < best[world]["step_s_median"]:
                    best[world] = r
    report = {
        "device": cpu_name(), "device_type": "cpu", "backend": "gloo", "torch": torch.__version__,
        "threads_per_rank": 1, "load_average_1min": os.getloadavg()[0], "model": SMALL, "rounds": rounds,
        "measured": [best[1], best[2]],
        "speedup_2_ranks": round(best[1]["step_s_median"] / best[2]["step_s_median"], 3),
        "full_size_allreduce": full_size_bytes(),
        "note": "CPU timings on a machine shared with other jobs: indicative only. GPU figures: not measured.",
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
