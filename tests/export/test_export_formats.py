"""Export artifacts: the state_dict + arch.json rebuild, the torch.export program, ONNX, the report, retrain."""

import json

import numpy as np
import pytest
import torch
from fold_cases import arch_with_identities, random_archs

from scarlet import ScarletError, Supernet
from scarlet.cost import CostModel
from scarlet.export import export, load_exported, retrain_net
from scarlet.fold import ExportedNet, fold_path, random_inputs
from scarlet.standalone import StandaloneNet


def _float32(sn):
    net = Supernet(sn.config)
    net.load_state_dict(sn.state_dict())
    return net.eval()


@pytest.fixture(scope="module")
def exported(supernet, tmp_path_factory):
    """An exact, BN-folded export (with ONNX) of an arch with ELS on a stride-2 layer, a chain and the last layer."""
    sn = _float32(supernet("scarlet-s2", "els"))
    genes = arch_with_identities("scarlet-s2", (3, 5, 12, 13, 19), torch.Generator().manual_seed(0))
    out = tmp_path_factory.mktemp("exported")
    report = export(sn, genes, out, fold_bn=True, onnx=True)
    return sn, genes, out, report


def _inputs(config):
    return [random_inputs(config, b, seed=b) for b in (2, 3)]  # two batch sizes: the batch dimension is dynamic


def test_report_records_checks_folds_and_projections(exported):
    sn, genes, out, report = exported
    on_disk = json.loads((out / "report.json").read_text())
    assert on_disk == report and report["ok"] and report["verified"]
    assert report["variant"] == "exact"
    assert report["check"]["float64"]["max_rel"] <= 1e-6 and report["check"]["float32"]["max_rel"] <= 1e-4
    assert [(f["layers"], f["into"], f["shortcut"]) for f in report["folds"]] == [
        ([3], "blocks.3.conv_pw", "projection"), ([5], "blocks.4.conv_pw", "projection"),
        ([12, 13], "blocks.10.conv_pw", "projection"), ([19], "head.conv", "none")]
    assert [p["layer"] for p in report["projections"]] == [4, 6, 14]
    cost = report["cost"]
    assert cost["cost_model"]["madds"] == CostModel(sn.config).madds(genes)
    assert cost["fvcore"]["madds"] == cost["cost_model"]["madds"] + cost["projection_madds"]
    assert {"model.pt", "arch.json", "model.pt2", "model.onnx"} <= {p.name for p in out.iterdir()}


def test_state_dict_and_arch_json_rebuild_the_network(exported):
    sn, genes, out, _ = exported
    net = load_exported(out)
    assert isinstance(net, ExportedNet) and not net.training
    meta = json.loads((out / "arch.json").read_text())
    assert meta["variant"] == "exact" and meta["fold_bn"] and meta["arch"] == ",".join(map(str, genes))
    assert meta["layout"]["projections"] and meta["config"] == sn.config.to_dict()
    state = torch.load(out / "model.pt", weights_only=True)
    assert "blocks.3.shortcut.weight" in state and "blocks.3.conv_pw.bias" in state
    with torch.no_grad():
        for x in _inputs(sn.config):
            torch.testing.assert_close(net(x), sn(x, genes), rtol=1e-4, atol=1e-4 * sn(x, genes).abs().max().item())


def test_torch_export_program_round_trip(exported):
    sn, _, out, report = exported
    program = torch.export.load(str(out / "model.pt2")).module()
    net = load_exported(out)
    with torch.no_grad():
        for x in _inputs(sn.config):
            torch.testing.assert_close(program(x), net(x), rtol=1e-5, atol=1e-6)
    assert report["pt2"]["ok"]


def test_onnx_round_trip_with_onnxruntime(exported):
    import onnx
    import onnxruntime

    sn, _, out, report = exported
    model = onnx.load(str(out / "model.onnx"))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 17
    session = onnxruntime.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    net = load_exported(out)
    with torch.no_grad():
        for x in _inputs(sn.config):
            (y,) = session.run(None, {"x": x.numpy()})
            assert y.shape == (x.shape[0], 10)
            np.testing.assert_allclose(y, net(x).numpy(), rtol=1e-4, atol=1e-5)
    assert report["onnx"]["ok"] and report["onnx"]["opset"] >= 17


@pytest.mark.parametrize("kind", ["els", "skip"])
def test_cost_matches_cost_model_when_no_projection(kind, supernet):
    sn = _float32(supernet("scarlet-s1", kind))
    model = CostModel(sn.config)
    g = torch.Generator().manual_seed(3)
    # identity runs that end before a block without a residual (at width 0.25: layers 3, 7, 15, 19) or at the head
    runs = [(), (2,), (4, 5, 6), (12, 13, 14), (16, 17, 18), (19,), (2, 16, 17, 18, 19)]
    archs = [arch_with_identities("scarlet-s1", ids, g) for ids in runs]
    if kind == "skip":
        archs += random_archs("scarlet-s1", 3, seed=1)
    from scarlet.export import _count_cost

    for genes in archs:
        net = fold_path(sn, genes)
        assert net.plan.projections == []
        cost = _count_cost(net, sn.config, sn.arch(genes))
        assert cost["fvcore"]["madds"] == model.madds(genes)
        assert cost["module_params"] == model.params(genes)


def test_retrain_variant_is_labelled_and_not_verified(supernet, tmp_path):
    sn = _float32(supernet("scarlet-s1", "els"))
    genes = arch_with_identities("scarlet-s1", (3, 5), torch.Generator().manual_seed(4))
    report = export(sn, genes, tmp_path, variant="retrain")
    assert report["variant"] == "retrain" and report["verified"] is False and "NOT verified" in report["description"]
    assert "check" not in report and "folds" not in report
    net = load_exported(tmp_path)
    assert isinstance(net, StandaloneNet) and not isinstance(net, ExportedNet)
    # inherited where shapes match: the stem and the block of layer 2 are the supernet's
    torch.testing.assert_close(net.stem.conv.weight, sn.stem.conv.weight)
    torch.testing.assert_close(net.blocks[1].conv_dw.weight, sn.layers[1][genes[1]].conv_dw.weight)
    # layer 4 follows the layer-3 identity: its input width shrank, so its expansion conv is fresh
    fresh_net, fresh = retrain_net(sn, genes)
    assert any(k.endswith("conv_pw.weight") for k in fresh)
    with pytest.raises(ScarletError, match="exact variant"):
        export(sn, genes, tmp_path, variant="retrain", fold_bn=True)


def test_failed_check_raises_and_writes_the_report(supernet, tmp_path, monkeypatch):
    import scarlet.export as ex

    sn = _float32(supernet("scarlet-s1", "els"))
    genes = arch_with_identities("scarlet-s1", (5,), torch.Generator().manual_seed(6))

    def broken(*args, **kwargs):  # a fold that forgets the projection
        net = fold_path(*args, **kwargs)
        for b in net.blocks:
            if getattr(b, "shortcut_kind", None) == "projection":
                b.shortcut_kind = "identity"
        return net

    monkeypatch.setattr(ex, "fold_path", broken)
    with pytest.raises(ScarletError, match="fold error"):
        export(sn, genes, tmp_path)
    report = json.loads((tmp_path / "report.failed.json").read_text())
    assert report["ok"] is False and not (tmp_path / "model.pt").exists() and not (tmp_path / "report.json").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["report.failed.json"]  # no staging directory left behind


def test_load_exported_rejects_other_directories(tmp_path):
    with pytest.raises(ScarletError, match="arch.json"):
        load_exported(tmp_path)
    (tmp_path / "arch.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(ScarletError, match="not a Scarlet export"):
        load_exported(tmp_path)


def test_plain_skip_export_with_zero_pad_shortcut_round_trips(supernet, tmp_path):
    sn = _float32(supernet("scarlet-s1", "skip"))
    genes = arch_with_identities("scarlet-s1", (3, 19), torch.Generator().manual_seed(2))
    report = export(sn, genes, tmp_path, onnx=True)
    assert [f["shortcut"] for f in report["folds"]] == ["pad", "none"] and report["projections"] == []
    assert report["ok"] and report["onnx"]["ok"] and report["pt2"]["ok"]
    assert report["cost"]["fvcore"]["madds"] == report["cost"]["cost_model"]["madds"]
