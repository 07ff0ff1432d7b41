"""Does ``torch.compile`` (inductor, CPU) pay for its compile time in the default job? Prints JSON.

The supernet's forward takes the architecture as a Python list, so compiling the whole model would specialise
(recompile) on every distinct path: a fair step has 13 new paths every step. What can be compiled once is each
block: this script compiles every choice block of every layer (``torch.compile`` per module, fixed shapes) and
compares, at the default job's shapes in channels-last with 1 thread, the eager sequential step with the compiled
one: the first step (which compiles every block a strict-fair step touches: all of them) and the best of the
steady-state steps. The default job trains ``steps`` (110) steps; compiling pays when
``first_step_compiled - first_step_eager < steps * (steady_eager - steady_compiled)``.

    python -m benchmarks.compile_cpu [--width 0.25] [--steps 3] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from scarlet.executor import make_step
from scarlet.executor.layout import to_layout
from scarlet.samplers import FairSampler
from scarlet.supernet import Supernet

DEFAULT_JOB_STEPS = 110  # 5 epochs of the digits training split at batch 64


def _step(width: float, compiled: bool):
    torch.manual_seed(0)
    model = to_layout(Supernet(space="scarlet-s2", width=width, resolution=32, stem_stride=2, num_classes=10,
                               in_channels=1), torch.channels_last)
    if compiled:
        for layer in model.layers:
            for block in layer:
                block.compile()  # nn.Module.compile: compiles this block's forward in place
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    step = make_step("sequential", model, optimizer)
    images = to_layout(torch.randn(64, 1, 32, 32), torch.channels_last)
    labels = torch.randint(10, (64,))
    sampler = FairSampler("scarlet-s2", 0)
    return lambda: step(images, labels, sampler.permutations())


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--steps", type=int, default=3, help="steady-state steps timed after the first")
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    out = {"device": "cpu", "torch": torch.__version__, "threads": 1, "width": args.width, "resolution": 32,
           "batch": 64, "layout": "channels_last", "executor": "sequential"}
    runs = {name: _step(args.width, name == "compiled") for name in ("eager", "compiled")}
    for name, run in runs.items():
        t = time.perf_counter()
        run()
        out[f"first_step_{name}_s"] = round(time.perf_counter() - t, 3)
        print(name, "first step", out[f"first_step_{name}_s"], file=sys.stderr, flush=True)
    best = {name: float("inf") for name in runs}
    for _ in range(args.steps):  # interleaved
        for name, run in runs.items():
            t = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - t)
    for name in runs:
        out[f"steady_step_{name}_s"] = round(best[name], 4)
    saved = DEFAULT_JOB_STEPS * (best["eager"] - best["compiled"])
    cost = out["first_step_compiled_s"] - out["first_step_eager_s"]
    out.update(default_job_steps=DEFAULT_JOB_STEPS, compile_cost_s=round(cost, 2),
               saved_over_default_job_s=round(saved, 2), pays=saved > cost)
    text = json.dumps(out, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
