"""Wall time and accuracy of the default training job, recorded in ``benchmarks/results/default_job_cpu.json``.

Runs ``python -m scarlet.train --no-progress --out DIR [TRAIN_FLAGS...]`` in a subprocess with OMP_NUM_THREADS
(``--threads``, default 1), times it, and adds one entry under ``runs`` (named by ``--name``) with the final
training loss, min / mean / max BN-recalibrated top-1 over the evaluated subnets (8 random + the published
architectures that fit the space), the wall time and the job's user CPU time, the load average before and after
(the machine is shared: wall times under load are inflated), threads, torch and Python versions. Entries already
in the file are kept.

    python benchmarks/default_job.py --name "after: defaults of issue 9" [--threads 1] [-- TRAIN_FLAGS...]
    python benchmarks/default_job.py --name "..." --record RUN_DIR --wall-s S   # a run made by hand, same fields
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "benchmarks" / "results" / "default_job_cpu.json"


def summarise(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "summary.json").read_text())
    config = json.loads((run_dir / "config.json").read_text())
    accs = [r["acc"] for r in summary["evaluated"]]
    return {
        "command_flags": {k: config[k] for k in ("epochs", "batch_size", "lr", "init", "shared_grad", "warmup_steps",
                                                 "width", "resolution", "seed") if k in config},
        "steps": summary["steps"],
        "final_train_loss": round(summary["final_train_loss"], 4),
        "subnet_acc_min": round(min(accs), 4),
        "subnet_acc_mean": round(sum(accs) / len(accs), 4),
        "subnet_acc_max": round(max(accs), 4),
        "subnets": len(accs),
        "acc_by_subnet": {r["name"]: round(r["acc"], 4) for r in summary["evaluated"]},
    }


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--name", required=True, help="name of the entry under 'runs'")
    p.add_argument("--threads", type=int, default=1, help="OMP_NUM_THREADS of the training process [1]")
    p.add_argument("--record", help="record this finished run directory instead of running the job")
    p.add_argument("--wall-s", type=float, help="with --record: the wall time measured for it")
    p.add_argument("--cpu-s", type=float, help="with --record: its user CPU time (e.g. from /usr/bin/time -v)")
    p.add_argument("--out", default=str(RESULT))
    p.add_argument("train_flags", nargs="*", help="extra flags for python -m scarlet.train (after --)")
    args = p.parse_args(argv)
    load_before = os.getloadavg()
    note = None
    if args.record:
        run_dir, wall, cpu = Path(args.record), args.wall_s, args.cpu_s
        threads_note = "as run by hand"
        note = f"recorded from {args.record}: run by hand, wall time and CPU time as given"
    else:
        run_dir = Path(tempfile.mkdtemp(prefix="default-job-")) / "run"
        env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
        started = time.time()
        subprocess.run([sys.executable, "-m", "scarlet.train", "--no-progress", "--out", str(run_dir),
                        *args.train_flags], cwd=ROOT, env=env, check=True)
        wall = time.time() - started
        # CPU time of the job itself: unlike the wall time it hardly depends on what else runs on the machine.
        cpu = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
        threads_note = f"OMP_NUM_THREADS={args.threads}"
    entry = {**summarise(run_dir), "wall_s": None if wall is None else round(wall, 1),
             "cpu_user_s": None if cpu is None else round(cpu, 1), "threads": threads_note,
             "loadavg_1min_before_after": None if args.record else [round(load_before[0], 2),
                                                                     round(os.getloadavg()[0], 2)],
             "torch": torch.__version__, "python": platform.python_version(), "device": "CPU",
             "cpu_cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d %H:%M")}
    if note:
        entry["note"] = note
    out = Path(args.out)
    report = json.loads(out.read_text()) if out.exists() else {"runs": {}}
    report.setdefault("runs", {})[args.name] = entry
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(json.dumps(entry, indent=1))


if __name__ == "__main__":
    main()
