"""Fuzz the CLIs as a careless or hostile user would, each case in its own subprocess, and write a JSON summary.

    python benchmarks/fuzz_cli.py [--only CLASS ...] [--out benchmarks/results/fuzz_cli.json]

Every bad input must exit with code 2 and print exactly one line on stderr, starting ``error:``, naming the
problem (each case lists a fragment the line must contain), never a traceback. Faults (a full disk injected at
the n-th fsync through a ``sitecustomize`` hook, a second writer on a busy run directory) must leave the last good
checkpoint loadable, and ``--resume`` must end with the same weights (or search result) as an uninterrupted run.
The fast in-process versions of these cases are in tests/hardening/; this harness runs the real processes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
TINY = ["--space", "fairnas", "--width", "0.125", "--resolution", "16", "--batch-size", "16", "--eval-archs", "0",
        "--recalib-batches", "1", "--no-progress"]
STANDALONE = ["--arch", "fairnas-c", "--width", "0.125", "--resolution", "16", "--batch-size", "16", "--no-progress"]
SEARCH = ["--population", "2", "--generations", "2", "--val-batches", "1", "--recalib-batches", "1", "--seed", "5",
          "--no-progress"]

# Injected into the subprocesses by PYTHONPATH: the n-th os.fsync fails with ENOSPC, as a full disk does.
SITECUSTOMIZE = '''
import errno, os
_at = int(os.environ.get("SCARLET_FUZZ_ENOSPC_AT", "0"))
if _at:
    _real, _calls = os.fsync, [0]
    def _fsync(fd):
        _calls[0] += 1
        if _calls[0] == _at:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return _real(fd)
    os.fsync = _fsync
'''


class Harness:
    def __init__(self, work: Path):
        self.work = work
        self.hook = work / "hook"
        self.hook.mkdir()
        (self.hook / "sitecustomize.py").write_text(SITECUSTOMIZE)
        self.results: list[dict] = []

    def env(self, enospc_at: int = 0) -> dict:
        return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": f"{ROOT}{os.pathsep}{self.hook}",
                "SCARLET_FUZZ_ENOSPC_AT": str(enospc_at)}

    def cli(self, module: str, args: list[str], enospc_at: int = 0, wait: bool = True):
        cmd = [sys.executable, "-m", module, *args]
        if not wait:
            return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=self.work,
                                    env=self.env(enospc_at))
        return subprocess.run(cmd, capture_output=True, text=True, cwd=self.work, env=self.env(enospc_at),
                              timeout=600)

    def record(self, cls: str, name: str, ok: bool, started: float, detail: str = "") -> None:
        self.results.append({"class": cls, "case": name, "ok": bool(ok), "seconds": round(time.time() - started, 2),
                             "detail": detail[-500:]})
        print(f"{'ok  ' if ok else 'FAIL'} {cls:<12} {name} {'' if ok else detail[-300:]}", flush=True)

    def expect_error(self, cls: str, name: str, module: str, args: list[str], fragment: str, enospc_at: int = 0,
                     untouched: Path | None = None) -> bool:
        """The command must exit 2 with one line naming the problem; ``untouched`` must keep its bytes."""
        started = time.time()
        before = snapshot(untouched) if untouched else None
        p = self.cli(module, args, enospc_at)
        lines = p.stderr.strip().splitlines()
        ok = (p.returncode == 2 and len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0]
              and "Traceback" not in p.stderr and (before is None or snapshot(untouched) == before))
        self.record(cls, name, ok, started, f"rc {p.returncode}: {p.stderr.strip()}")
        return ok

    def expect_ok(self, cls: str, name: str, module: str, args: list[str]) -> bool:
        started = time.time()
        p = self.cli(module, args)
        self.record(cls, name, p.returncode == 0, started, f"rc {p.returncode}: {p.stderr.strip()}")
        return p.returncode == 0


def snapshot(path: Path) -> dict:
    if path.is_file():
        return {path.name: path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*"))
            if p.is_file() and p.name != ".scarlet.lock"}


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = (torch.load(d / "checkpoint.pt", weights_only=True)["model"] for d in (a, b))
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def write_config(h: Harness, name: str, data: bytes) -> str:
    path = h.work / "configs" / name
    path.parent.mkdir(exist_ok=True)
    path.write_bytes(data)
    return str(path)


def fixtures(h: Harness) -> dict:
    """A trained tiny supernet (reference for resumed runs too) and a finished search on it."""
    w = h.work
    run = w / "supernet"
    assert h.expect_ok("setup", "train a tiny supernet", "scarlet.train",
                       [*TINY, "--max-steps", "4", "--checkpoint-every", "2", "--out", str(run)])
    search = w / "search"
    assert h.expect_ok("setup", "search on it", "scarlet.search", ["--supernet", str(run), "--out", str(search),
                                                                   *SEARCH])
    return {"run": run, "search": search}


def case_paths(h: Harness, fx: dict) -> None:
    a_file = h.work / "a_file"
    a_file.write_text("x")
    outs = [(str(a_file), "not a directory"), (str(a_file / "sub"), "not a directory"), ("/proc/x", "/proc"),
            ("/sys/x", "/sys"), ("/dev/null", "/dev")]
    for out, fragment in outs:
        h.expect_error("paths", f"train --out {out}", "scarlet.train", [*TINY, "--out", out], fragment, untouched=a_file)
        h.expect_error("paths", f"search --out {out}", "scarlet.search", ["--supernet", str(fx["run"]), "--out", out],
                       fragment, untouched=a_file)
        h.expect_error("paths", f"export --out {out}", "scarlet.export", ["--supernet", str(fx["run"]), "--arch",
                                                                          "fairnas-a", "--out", out], fragment)
    h.expect_error("paths", "train --out ''", "scarlet.train", [*TINY, "--out", ""], "--out is empty")
    broken = h.work / "broken"
    shutil.copytree(fx["run"], broken)
    (broken / "config.json").unlink()
    (broken / "config.json").mkdir()
    h.expect_error("paths", "config.json is a directory", "scarlet.train", ["--resume", "--out", str(broken)],
                   "is not a regular file")
    (broken / "config.json").rmdir()
    (broken / "metrics.jsonl").write_text("not json\n{\"step\": 1}\n")
    h.expect_error("paths", "corrupt metrics.jsonl", "scarlet.train", ["--resume", "--out", str(broken),
                                                                       "--max-steps", "6"], "line 1 is not a JSON")
    bad_sn = h.work / "bad_supernet"
    shutil.copytree(fx["run"], bad_sn)
    (bad_sn / "config.json").write_text('{"dataset": 7}')
    h.expect_error("paths", "supernet config.json of wrong types", "scarlet.search",
                   ["--supernet", str(bad_sn), "--out", str(h.work / "s2")], "dataset must be a string")


def case_schema(h: Harness, fx: dict) -> None:
    flags = [("--lr", "inf", "finite"), ("--lr", "nan", "finite"), ("--weight-decay", "nan", "finite"),
             ("--momentum", "2", "[0, 1)"), ("--eval-archs", "-1", "--eval-archs"), ("--epochs", "0", "--epochs"),
             ("--log-every", "0", "--log-every"), ("--checkpoint-every", "-1", "--checkpoint-every"),
             ("--max-steps", "0", "--max-steps"), ("--width", "-1", "--width"), ("--eval-archs", "1e9", "int")]
    for f, v, fragment in flags:
        h.expect_error("schema", f"train {f} {v}", "scarlet.train", [*TINY, f, v, "--out", str(h.work / "x")],
                       fragment)
    for f, v, fragment in [("--population", "1000000000", "--population"), ("--generations", "-1", "--generations"),
                           ("--objectives", "acc", "minimise or maximise"), ("--weights", "1,inf,1", "--weights"),
                           ("--madds-max", "nan", "amount"), ("--p-random", "1.5", "--p-random")]:
        h.expect_error("schema", f"search {f} {v}", "scarlet.search", ["--supernet", str(fx["run"]), "--out",
                                                                       str(h.work / "y"), f, v], fragment)
    configs = [("c.yaml", b"epochs: true\n", "boolean"), ("c.yaml", b"epochs: 2.5\n", "integer"),
               ("c.yaml", b"lr: .inf\n", "finite"), ("c.yaml", b"epochs: [1]\n", "a list"),
               ("c.yaml", b"1: 2\n", "strings"), ("c.yaml", b"\x00\x01binary", "binary"),
               ("c.yaml", b"a: &a [1,1]\nb: &b [*a,*a]\nc: [*b,*b]\n", "aliases"),
               ("c.json", b'{"lr": NaN}', "finite"), ("c.json", b'{"epochs": 1e999}', "integer"),
               ("c.json", b"[" * 50000, "not valid JSON"), ("c.yaml", b"out: /dev/null\n", "/dev")]
    for i, (name, data, fragment) in enumerate(configs):
        path = write_config(h, f"{i}-{name}", data)
        h.expect_error("config", f"train --config {data[:30]!r}", "scarlet.train", ["--config", path], fragment)
    for f, v, fragment in [("--log-every", "0", "--log-every"), ("--epochs", "0", "--epochs"),
                           ("--eval-archs", "-5", "--eval-archs"), ("--lr", "0.3", "conflicts")]:
        h.expect_error("resume", f"train --resume {f} {v}", "scarlet.train", ["--resume", "--out", str(fx["run"]),
                                                                               f, v], fragment, untouched=fx["run"])


def case_tampered(h: Harness, fx: dict) -> None:
    from scarlet.checkpoint import save_checkpoint

    good = torch.load(fx["run"] / "checkpoint.pt", weights_only=True)
    bomb = [0]
    for _ in range(40):
        bomb = [bomb, bomb]
    first_conv = next(k for k, v in good["model"].items() if v.dim() == 4)
    tamperings = {
        "wrong shape": (lambda s: s["model"].__setitem__(first_conv, torch.zeros(1)), "size mismatch"),
        "missing optimizer": (lambda s: s.pop("optimizer"), "damaged"),
        "run config of wrong types": (lambda s: s["run_config"].__setitem__("epochs", "5"), "integer"),
        "pickle memo bomb in run config": (lambda s: s["run_config"].__setitem__("dataset", bomb), "a list"),
        "config of wrong types": (lambda s: s["config"].__setitem__("width", [1]), "width"),
    }
    for name, (tamper, fragment) in tamperings.items():
        d = h.work / "tampered" / name.replace(" ", "-")
        shutil.copytree(fx["run"], d)
        state = torch.load(d / "checkpoint.pt", weights_only=True)
        tamper(state)
        save_checkpoint(d / "checkpoint.pt", state)
        h.expect_error("tampered", f"--resume: {name}", "scarlet.train", ["--resume", "--out", str(d)], fragment)
        if name in ("wrong shape", "config of wrong types"):
            h.expect_error("tampered", f"export: {name}", "scarlet.export", ["--supernet", str(d), "--arch",
                                                                             "fairnas-a", "--out", str(d / "e")],
                           fragment)
            h.expect_error("tampered", f"search: {name}", "scarlet.search", ["--supernet", str(d), "--out",
                                                                             str(d / "s")], fragment)
    other = h.work / "tampered" / "other-weights"
    shutil.copytree(fx["run"], other)
    state = torch.load(other / "checkpoint.pt", weights_only=True)
    state["model"][first_conv] += 1
    save_checkpoint(other / "checkpoint.pt", state)
    search = h.work / "tampered" / "search"
    shutil.copytree(fx["search"], search)
    h.expect_error("tampered", "search state of another supernet", "scarlet.search",
                   ["--resume", "--out", str(search), "--supernet", str(other)], "not the supernet")


def case_inputs(h: Harness, fx: dict) -> None:
    zeros = ",".join(["0"] * 19)
    for name, arch, fragment in [("full-width digits", "１" + zeros[1:], "character"),
                                 ("arabic-indic digits", "٣" + zeros[1:], "character"),
                                 ("boolean in JSON list", "[true" + ", 0" * 18 + "]", "boolean"),
                                 ("thousands of nested brackets", "[" * 2000 + "]" * 2000, "nested"),
                                 ("very long", "0," * 50000, "characters long")]:
        h.expect_error("arch", f"export --arch {name}", "scarlet.export",
                       ["--supernet", str(fx["run"]), "--arch", arch, "--out", str(h.work / "e")], fragment)
        h.expect_error("arch", f"train --arch {name}", "scarlet.train",
                       [*STANDALONE[2:], "--arch", arch, "--space", "fairnas", "--out", str(h.work / "t")], fragment)
    import pickle

    import numpy as np

    for name, labels, test_n, fragment in [("label outside the classes", [0, 1, 2, 10], 4, "labels must lie"),
                                           ("fewer labels than images", [0, 1, 2], 4, "3 labels for 4 images"),
                                           ("empty validation split", [0, 1, 2, 3], 0, "validation split is empty")]:
        d = h.work / "cifar" / name.replace(" ", "-")
        d.mkdir(parents=True)
        for i in range(1, 6):
            (d / f"data_batch_{i}").write_bytes(pickle.dumps({b"data": np.zeros((4, 3072), np.uint8),
                                                              b"labels": labels}))
        (d / "test_batch").write_bytes(pickle.dumps({b"data": np.zeros((test_n, 3072), np.uint8),
                                                     b"labels": [0] * test_n}))
        h.expect_error("data", name, "scarlet.train", [*TINY, "--dataset", f"cifar10:{d}", "--out",
                                                       str(h.work / "c")], fragment)


def case_faults(h: Harness, fx: dict) -> None:
    """A full disk at each write of a run, then --resume: the same weights as the uninterrupted run."""
    args = [*TINY, "--max-steps", "4", "--checkpoint-every", "2"]
    # fsync 1: config.json, 2: checkpoint at step 2, 3: checkpoint at step 4, 4: summary.json
    for at, fragment in [(1, "no checkpoint has been written"), (2, "no checkpoint has been written"),
                         (3, "(step 2)"), (4, "training finished")]:
        d = h.work / "faults" / f"train-{at}"
        started = time.time()
        ok = h.expect_error("faults", f"train: full disk at write {at}", "scarlet.train", [*args, "--out", str(d)],
                            fragment, enospc_at=at)
        ok &= not list(d.glob("*.tmp"))
        p = h.cli("scarlet.train", ["--resume", "--out", str(d), "--no-progress"] if (d / "checkpoint.pt").exists()
                  else [*args, "--out", str(d)])
        ok &= p.returncode == 0 and same_weights(d, fx["run"])
        h.record("faults", f"train: resume after full disk at write {at} matches the uninterrupted run", ok, started,
                 p.stderr.strip())
    for at in (1, 3):  # the state after the initial population; the state after generation 1
        d = h.work / "faults" / f"search-{at}"
        started = time.time()
        ok = h.expect_error("faults", f"search: full disk at write {at}", "scarlet.search",
                            ["--supernet", str(fx["run"]), "--out", str(d), *SEARCH], "No space left", enospc_at=at)
        cmd = (["--resume", "--out", str(d), "--no-progress"] if (d / "search_state.json").exists()
               else ["--supernet", str(fx["run"]), "--out", str(d), *SEARCH])
        p = h.cli("scarlet.search", cmd)
        ok &= p.returncode == 0 and all((d / n).read_text() == (fx["search"] / n).read_text()
                                        for n in ("pareto.json", "evaluated.csv"))
        h.record("faults", f"search: resume after full disk at write {at} matches", ok, started, p.stderr.strip())
    export = h.work / "faults" / "export"
    export.mkdir(parents=True)
    (export / "model.pt").write_bytes(b"a previous export")
    (export / "report.json").write_text("{}")
    h.expect_error("faults", "export: full disk, previous export kept", "scarlet.export",
                   ["--supernet", str(fx["run"]), "--arch", "fairnas-a", "--out", str(export)], "No space left",
                   enospc_at=1, untouched=export)
    h.expect_error("faults", "export: typo in --arch, previous export kept", "scarlet.export",
                   ["--supernet", str(fx["run"]), "--arch", "1,2,x", "--out", str(export)], "layers",
                   untouched=export)


def case_writers(h: Harness, fx: dict) -> None:
    """Two trainers, two searches on one directory: the second is refused, the first finishes intact (with the
    result of the same command run alone). The first jobs are long enough to outlast a second process's start."""
    jobs = [("train", "scarlet.train", lambda d: [*TINY, "--max-steps", "120", "--out", str(d)], "config.json"),
            ("search", "scarlet.search", lambda d: ["--supernet", str(fx["run"]), "--out", str(d), *SEARCH,
                                                    "--population", "6", "--generations", "12"], "search_state.json")]
    for name, module, argv, first_file in jobs:
        d, alone = h.work / "writers" / name, h.work / "writers" / f"{name}-alone"
        started = time.time()
        first = h.cli(module, argv(d), wait=False)
        while not (d / first_file).exists() and first.poll() is None:  # written while the lock is held
            time.sleep(0.05)
        ok = h.expect_error("writers", f"second {name} on a busy directory", module, argv(d),
                            "another process is writing")
        if name == "train":
            ok &= h.expect_error("writers", "--resume of a busy run directory", module,
                                 ["--resume", "--out", str(d)], "another process is writing")
        still_running = first.poll() is None
        first.communicate(timeout=600)
        ok &= still_running and first.returncode == 0 and h.cli(module, argv(alone)).returncode == 0
        if name == "train":
            ok &= same_weights(d, alone)
        else:
            ok &= (d / "pareto.json").read_text() == (alone / "pareto.json").read_text()
        h.record("writers", f"the first {name} was running throughout and finished as if alone", ok, started,
                 f"first still running after the refusals: {still_running}, rc {first.returncode}")


CLASSES = {"paths": case_paths, "schema": case_schema, "tampered": case_tampered, "inputs": case_inputs,
           "faults": case_faults, "writers": case_writers}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="*", choices=list(CLASSES), help="run only these classes")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fuzz_cli.json"))
    args = parser.parse_args()
    torch.set_num_threads(1)
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="scarlet-fuzz-") as work:
        h = Harness(Path(work))
        fx = fixtures(h)
        for name in args.only or CLASSES:
            CLASSES[name](h, fx)
    by_class: dict[str, dict] = {}
    for r in h.results:
        c = by_class.setdefault(r["class"], {"passed": 0, "failed": 0})
        c["passed" if r["ok"] else "failed"] += 1
    summary = {"device": "cpu", "torch": torch.__version__, "python": platform.python_version(),
               "threads": 1, "subprocess_threads": "OMP_NUM_THREADS=1", "seconds": round(time.time() - started, 1),
               "cases": len(h.results), "failed": sum(not r["ok"] for r in h.results), "by_class": by_class,
               "results": h.results}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(summary, indent=2) + "\n")
    print(f"{summary['cases']} cases, {summary['failed']} failed, {summary['seconds']} s; wrote {args.out}")
    return 1 if summary["failed"] else 0


if __name__ == "__main__":
    sys.exit(main())
