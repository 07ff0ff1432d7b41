"""Where one fair step of the default job spends its time on a CPU: ``torch.profiler`` over one step (after a
warm-up step), operators sorted by self time. Prints a table and JSON.

    python -m benchmarks.profile_step [--executor auto|sequential|batched] [--memory-format auto|contiguous]
                                       [--width 0.25] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from scarlet.executor import choose_executor, make_step
from scarlet.executor.layout import memory_format, to_layout
from scarlet.samplers import FairSampler
from scarlet.supernet import Supernet


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--executor", default="auto", choices=("auto", "sequential", "batched"))
    p.add_argument("--memory-format", default="auto", choices=("auto", "channels_last", "contiguous"))
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--top", type=int, default=12)
    p.add_argument("--out", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cpu = torch.device("cpu")
    executor = choose_executor(args.executor, cpu, "fair", width=args.width, resolution=32)
    fmt = memory_format(args.memory_format, cpu)
    torch.manual_seed(0)
    model = to_layout(Supernet(space="scarlet-s2", width=args.width, resolution=32, stem_stride=2, num_classes=10,
                               in_channels=1), fmt)
    step = make_step(executor, model, torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9))
    images, labels = to_layout(torch.randn(64, 1, 32, 32), fmt), torch.randint(10, (64,))
    sampler = FairSampler("scarlet-s2", 0)
    step(images, labels, sampler.permutations())
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        step(images, labels, sampler.permutations())
    events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in events)
    events.sort(key=lambda e: -e.self_cpu_time_total)
    rows = [{"op": e.key, "self_ms": round(e.self_cpu_time_total / 1e3, 1),
             "share": round(e.self_cpu_time_total / total, 3), "calls": e.count} for e in events[:args.top]]
    convs: dict[str, float] = {}  # convolution self time by weight shape: depthwise, 1x1, the dense stem
    for e in prof.key_averages(group_by_input_shape=True):
        if e.key in ("aten::convolution_backward", "aten::mkldnn_convolution"):
            weight = e.input_shapes[2 if e.key == "aten::convolution_backward" else 1]
            kind = "1x1" if weight[2:] == [1, 1] else ("depthwise" if weight[1] == 1 and weight[0] > 8 else "stem")
            name = f"{'backward' if 'backward' in e.key else 'forward'} {kind}"
            convs[name] = convs.get(name, 0.0) + e.self_cpu_time_total
    report = {"device": "cpu", "torch": torch.__version__, "threads": 1, "executor": executor,
              "memory_format": str(fmt).replace("torch.", ""), "width": args.width, "resolution": 32, "batch": 64,
              "aten_self_ms_total": round(total / 1e3, 1), "top_ops": rows,
              "convolution_by_kind": {k: {"self_ms": round(v / 1e3, 1), "share": round(v / total, 3)}
                                      for k, v in sorted(convs.items(), key=lambda kv: -kv[1])}}
    for r in rows:
        print(f"{r['op']:<40} {r['self_ms']:>9.1f} ms {100 * r['share']:>5.1f}% {r['calls']:>6} calls")
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
