"""The TuNAS CLI: bit-exact resume, one-line errors for bad flags, config values and table files."""

import json
from dataclasses import replace

import pytest
import torch

from scarlet.decisions.arch import random_decision_arch
from scarlet.decisions.concrete import resolve
from scarlet.decisions.space import get_space
from scarlet.tunas.cli import main
from scarlet.tunas.cost import TableCost, check_table, form_of, layer_forms, table_header

TINY = ["--steps", "4", "--archs-per-step", "2", "--batch-size", "4", "--reward-batch-size", "4",
        "--log-every", "1", "--checkpoint-every", "2", "--latency-repeats", "1", "--rl-lr", "0.5"]


def _error(argv, capsys) -> str:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


def test_resume_is_bit_exact(tmp_path):
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert main(TINY + ["--out", str(straight)]) == 0
    assert main(TINY + ["--out", str(split), "--stop-after", "2"]) == 0
    assert not (split / "summary.json").exists()
    assert main(["--resume", "--out", str(split)]) == 0
    a = torch.load(straight / "checkpoint.pt", weights_only=True)
    b = torch.load(split / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 4
    for part in ("supernet", "policy"):
        for k in a[part]:
            assert torch.equal(a[part][k], b[part][k]), (part, k)
    assert a["baseline"] == b["baseline"]
    assert any(not torch.equal(v, torch.zeros_like(v)) for v in a["policy"].values())  # the policy moved

    def lines(d):
        return [{k: v for k, v in json.loads(x).items() if k != "elapsed_s"}
                for x in (d / "metrics.jsonl").read_text().splitlines()]

    assert lines(straight) == lines(split) and len(lines(straight)) == 4
    sa, sb = (json.loads((d / "summary.json").read_text()) for d in (straight, split))
    assert sa["final_arch"] == sb["final_arch"] and sa["probabilities"] == sb["probabilities"]
    assert (straight / "policy.png").stat().st_size > 0


def test_bad_flags_and_config_values_are_one_line_errors(tmp_path, capsys):
    out = ["--out", str(tmp_path / "r")]
    assert "--steps" in _error(["--steps", "0"] + out, capsys)
    assert "--space" in _error(["--space", "fbnetv2-f"] + out, capsys)
    assert "--filter-warmup" in _error(["--filter-warmup", "0.5"] + out, capsys)
    assert "--cost-table" in _error(["--cost", "table"] + out, capsys)
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"archs_per_step": "four"}))
    assert "archs_per_step" in _error(["--config", str(cfg)] + out, capsys)
    cfg.write_text(json.dumps({"bogus": 1}))
    assert "bogus" in _error(["--config", str(cfg)] + out, capsys)
    assert "no checkpoint" in _error(["--resume"] + out, capsys)


def test_resume_refuses_a_changed_setting(tmp_path, capsys):
    out = ["--out", str(tmp_path / "r")]
    assert main(TINY + out + ["--stop-after", "1"]) == 0
    assert "--beta" in _error(["--resume", "--beta", "-0.3"] + out, capsys)
    ckpt = tmp_path / "r" / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    state["run_config"]["steps"] = -5
    torch.save(state, ckpt)
    assert "steps" in _error(["--resume"] + out, capsys)


def _table(space, resolution=32, num_classes=10):
    forms = layer_forms(space, resolution)
    layers = {name: [{"form": form_of(c), "cost": 0.01 * (j + 1)} for j, c in enumerate(cs)]
              for name, cs in forms.items()}
    return {**table_header(space, resolution, num_classes), "unit": "ms", "fit": {"scale": 2.0, "bias": 0.5},
            "layers": layers}


def test_a_table_cost_is_the_scaled_sum_of_the_layers_entries():
    space = replace(get_space("proxylessnas", 0.25, 8), in_channels=1)
    table = _table(space)
    cost = TableCost(check_table(table, space, 32, 10, "t"), space, 32, 10, "t")
    entries = {name: {json.dumps(e["form"], sort_keys=True): e["cost"] for e in es}
               for name, es in table["layers"].items()}
    for seed in range(3):
        arch = random_decision_arch(space, torch.Generator().manual_seed(seed))
        expected = sum(entries[spec.name][json.dumps(form_of(c), sort_keys=True)]
                       for spec, c in zip(space.layers, resolve(space, arch, 32)) if c.kind != "identity")
        assert cost(arch) == pytest.approx(2.0 * expected + 0.5)


def test_bad_table_files_are_one_line_errors(tmp_path, capsys):
    space = replace(get_space("proxylessnas", 0.25, 8), in_channels=1)
    path = tmp_path / "t.json"
    argv = TINY + ["--out", str(tmp_path / "r"), "--cost", "table", "--cost-table", str(path)]
    good = _table(space)
    cases = {"not valid JSON": "{", "resolution": {**good, "resolution": 64},
             "lacks 1 of": {**good, "layers": {**good["layers"], "b1.0": good["layers"]["b1.0"][1:]}},
             "cost must be": {**good, "layers": {**good["layers"], "stem": [{**good["layers"]["stem"][0],
                                                                             "cost": -1}]}},
             "fit must be": {**good, "fit": {"scale": 0, "bias": 0}}, "does not exist": None}
    for needle, content in cases.items():
        if content is None:
            path.unlink()
        else:
            path.write_text(content if isinstance(content, str) else json.dumps(content))
        assert needle in _error(argv, capsys)
    path.write_text(json.dumps(good))
    assert main(argv[:1] + ["1"] + argv[2:] + ["--target", "3.0"]) == 0  # a valid table runs (1 step)
