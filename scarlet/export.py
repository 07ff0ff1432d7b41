"""Export one architecture of a trained supernet as a deployable network, checked against the supernet.

``python -m scarlet.export --supernet RUN_DIR --arch ARCH --out DIR [--onnx] [--fold-bn] [--variant exact|retrain]``

Two variants, never to be confused:

- ``exact`` (default): the supernet path folded exactly (:mod:`scarlet.fold`): identity layers removed, every ELS
  composed into the next convolution (SCARLET Lemma 4.1), 1x1 projection shortcuts where an ELS fed an identity
  residual. It computes the function the supernet evaluated: the export runs random inputs through both in eval
  mode, in float64 (relative error <= 1e-6) and float32 (<= 1e-4), and fails otherwise.
- ``retrain``: the network the papers train from scratch (:class:`~scarlet.standalone.StandaloneNet`): ELS simply
  dropped, identity shortcuts kept where the shapes match. Weights are inherited from the supernet where the
  shapes match (``--init inherit``) or freshly initialised (``--init fresh``). It is a different function from the
  supernet path and is NOT verified against it.

DIR receives ``model.pt`` (state_dict), ``arch.json`` (architecture, config, variant and fold layout; with
``model.pt`` it rebuilds the network: :func:`load_exported`), ``model.pt2`` (a ``torch.export`` program), with
``--onnx`` ``model.onnx`` (opset 17), all with a dynamic batch dimension and checked after a round trip, and
``report.json`` (errors, cost, where ELS were folded and projections added).
"""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path

import torch
from torch import nn

from scarlet.arch import Arch
from scarlet.checkpoint import atomic_write_bytes, atomic_write_text, check_model_config
from scarlet.cost import CostModel
from scarlet.errors import ArgumentParser, ScarletError, cli_main, reason
from scarlet.fold import TOLERANCE, ExportedNet, check_fold, fold_path, output_error, random_inputs
from scarlet.standalone import StandaloneNet, Subsample
from scarlet.supernet import Supernet, SupernetConfig

FORMAT = "scarlet-export"
VERSION = 1
VARIANTS = ("exact", "retrain")
ONNX_OPSET = 17
ARTIFACTS = ("model.pt", "arch.json", "model.pt2", "model.onnx", "report.json")
FAILED_REPORT = "report.failed.json"  # where a failed export's report goes, beside the untouched previous export


def retrain_net(supernet: Supernet, arch, inherit: bool = True) -> tuple[StandaloneNet, list[str]]:
    """The retrain variant of ``arch`` (ELS dropped); returns it and the state_dict keys left freshly initialised.

    With ``inherit`` every tensor whose supernet counterpart (same module on the path) has the same shape is
    copied; the others (e.g. an expansion conv whose input width shrank after an identity) keep a fresh init.
    """
    arch = supernet.arch(arch)
    net = StandaloneNet(arch, supernet.config)
    fresh = list(net.state_dict())
    if not inherit:
        return net, fresh
    sources = {"stem.": supernet.stem, "first.": supernet.first, "head.": supernet.head}
    mbconvs = [layer[g] for layer, g in zip(supernet.layers, arch.genes) if not supernet.space.choices[g].identity]
    deployed = [i for i, b in enumerate(net.blocks) if not isinstance(b, Subsample)]
    sources.update({f"blocks.{i}.": src for i, src in zip(deployed, mbconvs)})
    src_state = {prefix + k: v for prefix, mod in sources.items() for k, v in mod.state_dict().items()}
    state = net.state_dict()
    fresh = [k for k, v in state.items() if k not in src_state or src_state[k].shape != v.shape]
    net.load_state_dict({**state, **{k: src_state[k] for k in state if k not in fresh}})
    return net, fresh


def _count_cost(net: nn.Module, config: SupernetConfig, arch: Arch) -> dict:
    """MAdds and params three ways: the cost model, fvcore (conv + linear ops only) and the module's parameters."""
    madds, params = CostModel(config).cost(arch)
    p = next(net.parameters())
    x = torch.zeros(1, config.in_channels, config.resolution, config.resolution, dtype=p.dtype, device=p.device)
    mode = net.training
    net.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fvcore's import and trace use the deprecated torch.jit
        from fvcore.nn import FlopCountAnalysis

        flops = FlopCountAnalysis(net, (x,)).unsupported_ops_warnings(False).uncalled_modules_warnings(False)
        by_op = dict(flops.by_operator())
    net.train(mode)
    return {"cost_model": {"madds": madds, "params": params},
            "fvcore": {"madds": sum(v for k, v in by_op.items() if k in ("conv", "linear", "addmm")),
                       "by_operator": by_op},
            "module_params": sum(t.numel() for t in net.parameters())}


def _roundtrip_check(run, net: nn.Module, inputs: list[torch.Tensor]) -> dict:
    """Compare ``run(x)`` (a reloaded artifact) with ``net(x)`` on each input (different batch sizes)."""
    with torch.no_grad():
        errors = [output_error(torch.as_tensor(run(x)), net(x), TOLERANCE[torch.float32]) for x in inputs]
    worst = max(errors, key=lambda e: e.max_rel)
    return {"batch_sizes": [x.shape[0] for x in inputs], "max_abs": max(e.max_abs for e in errors),
            "max_rel": worst.max_rel, "tolerance": worst.tolerance, "ok": all(e.ok for e in errors)}


def save_program(net: nn.Module, path: Path, example: torch.Tensor) -> None:
    """A ``torch.export`` program with a dynamic batch dimension."""
    batch = torch.export.Dim("batch", min=1)
    program = torch.export.export(net, (example,), dynamic_shapes={"x": {0: batch}})
    torch.export.save(program, str(path))


def save_onnx(net: nn.Module, path: Path, example: torch.Tensor, opset: int = ONNX_OPSET) -> str:
    """ONNX with a dynamic batch dimension; returns which exporter wrote it.

    The torch.export-based exporter needs onnxscript; without it the TorchScript-based one (``dynamo=False``,
    deprecated but present in torch 2.13) is used.
    """
    common = dict(input_names=["x"], output_names=["logits"], opset_version=opset)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if importlib.util.find_spec("onnxscript") is not None:
            torch.onnx.export(net, (example,), str(path), dynamo=True, external_data=False,
                              dynamic_shapes={"x": {0: torch.export.Dim("batch", min=1)}}, **common)
            return "dynamo"
        torch.onnx.export(net, (example,), str(path), dynamo=False,
                          dynamic_axes={"x": {0: "batch"}, "logits": {0: "batch"}}, **common)
    return "torchscript (dynamo=False; onnxscript not installed)"


def _onnx_runner(path: Path):
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return lambda x: session.run(None, {"x": x.cpu().numpy()})[0]


def export(supernet: Supernet, arch, out_dir, *, variant: str = "exact", fold_bn: bool = False,
           onnx: bool = False, init: str = "inherit", batch: int = 4, seed: int = 0, source: str | None = None) -> dict:
    """Build, check and write the exported network of ``arch``; returns the report (also DIR/report.json).

    Raises ScarletError when the exact fold misses its tolerance or a reloaded artifact disagrees; the report then
    goes to DIR/report.failed.json and the files of a previous export in DIR stay as they were.
    """
    if variant not in VARIANTS:
        raise ScarletError(f"unknown variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    if variant == "retrain" and fold_bn:
        raise ScarletError("--fold-bn applies to the exact variant; the retrain variant is trained with its BN")
    if batch < 2:
        raise ScarletError("--batch must be at least 2 (the round trips also run batch 1)")
    if onnx and not all(importlib.util.find_spec(m) for m in ("onnx", "onnxruntime")):
        raise ScarletError("--onnx needs the onnx and onnxruntime packages (pip install 'scarlet[export]')")
    arch = supernet.arch(arch)  # a bad architecture is refused before anything is written
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    # Everything is written and checked in a staging directory inside DIR, then moved over the previous export:
    # a failure (bad fold, full disk) leaves the previous export as it was.
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=out))
    try:
        report, failed = _build(supernet, arch, staging, variant, fold_bn, onnx, init, batch, seed, source)
        text = json.dumps(report, indent=2) + "\n"
        if failed:
            atomic_write_text(out / FAILED_REPORT, text)
            raise ScarletError(f"export of {arch.encoding()} failed: {'; '.join(failed)} (see {out / FAILED_REPORT};"
                               f" the previous contents of {out} are untouched)")
        atomic_write_text(staging / "report.json", text)
        _swap_in(staging, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return json.loads(text)


def _swap_in(staging: Path, out: Path) -> None:
    """Move the new export's files over the old ones; report.json (which marks a complete export) goes first
    out and last in, and a previous export's files that this one does not have are removed."""
    (out / "report.json").unlink(missing_ok=True)
    for name in (*ARTIFACTS, FAILED_REPORT):
        if not (staging / name).exists():
            (out / name).unlink(missing_ok=True)
    for name in (*[a for a in ARTIFACTS if a != "report.json"], "report.json"):
        if (staging / name).exists():
            os.replace(staging / name, out / name)


def _build(supernet: Supernet, arch: Arch, out: Path, variant: str, fold_bn: bool, onnx: bool, init: str,
           batch: int, seed: int, source: str | None) -> tuple[dict, list[str]]:
    """Build and check the network, write its artifacts into ``out``; returns the report and what failed."""
    config = supernet.config
    sup32 = copy.deepcopy(supernet).to("cpu", torch.float32).eval()
    report = {"format": FORMAT, "version": VERSION, "variant": variant, "supernet": source, "arch": arch.encoding(),
              "tokens": arch.tokens(), "space": config.space, "skip": config.skip, "fold_bn": fold_bn}
    if variant == "exact":
        sup64 = copy.deepcopy(sup32).double()
        net64 = fold_path(sup64, arch, fold_bn).eval()
        net = copy.deepcopy(net64).float()
        x = random_inputs(config, batch, seed=seed)
        checks = {"float64": check_fold(sup64, arch, net64, x.double()), "float32": check_fold(sup32, arch, net, x)}
        report.update(verified=True, description="exact fold of the supernet path (ELS composed into the next conv)",
                      check={"inputs": f"standard normal, batch {batch}, seed {seed}, eval mode",
                             **{k: v.to_dict() for k, v in checks.items()}},
                      folds=net.plan.to_dict()["folds"], projections=net.plan.projections)
        layout = net.plan.to_dict()
    else:
        net, fresh = retrain_net(sup32, arch, inherit=init == "inherit")
        net.eval()
        checks = {}
        report.update(verified=False, init=init, fresh=fresh,
                      description="retrain variant: ELS dropped, identity shortcuts kept where shapes match; a "
                                  "different function from the supernet path, NOT verified against the supernet")
        layout = None
    cost = _count_cost(net, config, arch)
    report["cost"] = {**cost, "projection_madds": sum(p["madds"] for p in report.get("projections", [])),
                      "note": "fvcore counts conv and linear multiply-accumulates; the cost model does not count "
                              "projection shortcuts (projection_madds)"}
    failed = [f"{k} fold error {v.max_rel:.3g} > {v.tolerance:g}" for k, v in checks.items() if not v.ok]
    if not failed:
        meta = {"format": FORMAT, "version": VERSION, "variant": variant, "arch": arch.encoding(),
                "tokens": arch.tokens(), "config": config.to_dict(), "fold_bn": fold_bn, "dtype": "float32",
                "layout": layout}
        inputs = [random_inputs(config, batch, seed=seed + 1), random_inputs(config, 1, seed=seed + 2)]
        failed += _write_artifacts(net, out, meta, report, onnx, inputs)
    report["ok"] = not failed
    return report, failed


def _write_artifacts(net: nn.Module, out: Path, meta: dict, report: dict, onnx: bool,
                     inputs: list[torch.Tensor]) -> list[str]:
    """Write model.pt, arch.json, model.pt2 (and model.onnx), reload each and compare on ``inputs``; adds the
    comparisons to ``report`` and returns what failed."""
    state = net.state_dict()
    atomic_write_bytes(out / "model.pt", lambda f: torch.save(state, f))
    atomic_write_text(out / "arch.json", json.dumps(meta, indent=2) + "\n")
    files = {"weights": "model.pt", "layout": "arch.json", "program": "model.pt2"}
    report["reload"] = _roundtrip_check(load_exported(out), net, inputs)
    save_program(net, out / "model.pt2", inputs[0])
    program = torch.export.load(str(out / "model.pt2")).module()
    report["pt2"] = _roundtrip_check(program, net, inputs)
    if onnx:
        exporter = save_onnx(net, out / "model.onnx", inputs[0])
        report["onnx"] = {"opset": ONNX_OPSET, "exporter": exporter,
                          **_roundtrip_check(_onnx_runner(out / "model.onnx"), net, inputs)}
        files["onnx"] = "model.onnx"
    report["files"] = files
    return [f"{name} round trip error {report[name]['max_rel']:.3g} > {report[name]['tolerance']:g}"
            for name in ("reload", "pt2", "onnx") if name in report and not report[name]["ok"]]


def load_exported(directory) -> nn.Module:
    """Rebuild an exported network from DIR/arch.json and DIR/model.pt (``weights_only=True``), in eval mode."""
    d = Path(directory)
    try:
        meta = json.loads((d / "arch.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ScarletError(f"{d / 'arch.json'} is missing or unreadable ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise ScarletError(f"{d / 'arch.json'} is not a Scarlet export (format {FORMAT} version {VERSION})")
    if meta.get("variant") not in VARIANTS or not isinstance(meta.get("fold_bn"), bool) \
            or not isinstance(meta.get("arch"), str):
        raise ScarletError(f"{d / 'arch.json'}: variant, fold_bn or arch is missing or of the wrong type")
    check_model_config(meta.get("config"), f"{d / 'arch.json'}: config")
    config = SupernetConfig.from_dict(meta["config"])
    if meta["variant"] == "exact":
        net = ExportedNet(meta["arch"], config, fold_bn=meta["fold_bn"])
        if json.loads(json.dumps(net.plan.to_dict())) != meta["layout"]:
            raise ScarletError(f"{d / 'arch.json'}: the recorded fold layout differs from the one this version builds")
    else:
        net = StandaloneNet(meta["arch"], config)
    try:
        state = torch.load(d / "model.pt", map_location="cpu", weights_only=True)
        net.load_state_dict(state)
    except Exception as e:
        raise ScarletError(f"{d / 'model.pt'} does not hold this network's weights ({reason(e)})") from None
    return net.eval()


def _parse(argv):
    p = ArgumentParser(prog="python -m scarlet.export", description=__doc__.split("\n\n")[0])
    p.add_argument("--supernet", required=True, help="run directory or checkpoint file of a trained supernet")
    p.add_argument("--arch", required=True, help="encoding '1,3,...', readable tokens or a name such as scarlet-a")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--variant", choices=VARIANTS, default="exact",
                   help="exact: fold the supernet path exactly and verify it (default); retrain: drop ELS, the "
                        "network to train from scratch (not verified)")
    p.add_argument("--fold-bn", action="store_true", help="fold BatchNorm into the convolutions (exact variant)")
    p.add_argument("--onnx", action="store_true", help="also write model.onnx (opset 17), checked with onnxruntime")
    p.add_argument("--init", choices=("inherit", "fresh"), default="inherit",
                   help="retrain variant: inherit the supernet weights whose shapes match, or start fresh")
    p.add_argument("--batch", type=int, default=4, help="batch of random inputs for the checks")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


@cli_main
def main(argv=None):
    from scarlet import load_supernet

    from scarlet.config import check_values, flag, schema
    from scarlet.rundir import RunLock, output_dir

    args = _parse(argv)
    options = schema("export")
    check_values({k: getattr(args, k) for k in options}, options, flag)
    out = output_dir(args.out, empty_is_cwd=True, create=False)  # --out '' is the current directory
    supernet = load_supernet(args.supernet)
    supernet.arch(args.arch)  # refused here, before the output directory is created or locked
    output_dir(str(out))
    with RunLock(out):
        report = export(supernet, args.arch, out, variant=args.variant, fold_bn=args.fold_bn, onnx=args.onnx,
                        init=args.init, batch=args.batch, seed=args.seed, source=str(args.supernet))
    if report["variant"] == "exact":
        c = report["check"]
        print(f"exact fold of {report['arch']}: float64 rel error {c['float64']['max_rel']:.2e}, float32 "
              f"{c['float32']['max_rel']:.2e}; {len(report['folds'])} identity run(s) folded, "
              f"{len(report['projections'])} projection shortcut(s); "
              f"{report['cost']['fvcore']['madds'] / 1e6:.2f}M MAdds, {report['cost']['module_params'] / 1e6:.3f}M "
              f"params -> {out}")
    else:
        print(f"retrain variant of {report['arch']} (ELS dropped, not verified against the supernet; "
              f"{len(report['fresh'])} fresh tensors) -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
