"""The TuNAS step: its order (reward after the weight update), its schedules, and the latency tools."""

import json

import pytest
import torch

from scarlet.data import load_dataset
from scarlet.decisions.arch import random_decision_arch
from scarlet.tunas import latency
from scarlet.tunas.cli import DEFAULTS
from scarlet.tunas.cost import MaddsCost, TableCost, check_table
from scarlet.tunas.trainer import Search, run_space, weight_lr


def _cfg(**kw):
    return {**DEFAULTS, "archs_per_step": 2, "batch_size": 4, "reward_batch_size": 4, "steps": 8, "lr": 0.05,
            "target": 0.7, **kw}


def test_the_reward_sees_the_weights_after_the_update(monkeypatch):
    data = load_dataset("digits", 32)
    cfg = _cfg()
    search = Search(cfg, data, MaddsCost(run_space(cfg, 1), 32, 10))
    param = search.supernet.layers[0].convs["3"].weight
    seen = []
    original = Search.accuracies

    def spy(self, samples, images, labels):
        seen.append(param.detach().clone())
        return original(self, samples, images, labels)

    monkeypatch.setattr(Search, "accuracies", spy)
    before = param.detach().clone()
    line = search.run_step()
    assert torch.equal(seen[0], param.detach()) and not torch.equal(seen[0], before)
    assert line["p_filters"] == line["p_ops"] == 1.0 and line["rl_lr"] == 0.0  # step 0: full warmup, no RL
    assert search.baseline.count == 1 and search.baseline.value == pytest.approx(line["reward"])


def test_weight_learning_rate_warms_up_then_decays_to_zero():
    cfg = {"steps": 200, "lr": 1.0, "lr_warmup": 0.025}
    assert [weight_lr(cfg, t) for t in (0, 4)] == pytest.approx([0.2, 1.0])
    assert weight_lr(cfg, 5) == pytest.approx(1.0)
    assert weight_lr(cfg, 5 + 195 // 2) == pytest.approx(0.5, abs=0.01)
    assert weight_lr(cfg, 200) == pytest.approx(0.0, abs=1e-12)


def test_measured_table_covers_every_form_and_predicts_its_sum(tmp_path):
    from dataclasses import replace

    from scarlet.decisions.space import get_space

    space = replace(get_space("proxylessnas", 0.25, 8), in_channels=1)
    g = torch.Generator().manual_seed(0)
    table = latency.measure_table(space, 16, 10, 1, 2, torch.device("cpu"), g, "min", log=lambda *_: None)
    cost = TableCost(check_table(json.loads(json.dumps(table)), space, 16, 10, "t"), space, 16, 10, "t")
    arch = random_decision_arch(space, g)
    assert cost(arch) == pytest.approx(cost.layer_sum(arch) + table["fit"]["bias"])
    assert all(e["cost"] > 0 for entries in table["layers"].values() for e in entries)
    report = latency.validate(cost, space, 16, 10, 3, 1, torch.device("cpu"), g)
    assert report["networks"] == 3 and len(report["pairs"]) == 3 and report["mape_percent"] >= 0


def test_latency_cli_refuses_bad_flags(tmp_path, capsys):
    for argv, needle in ((["--space", "fbnetv2-f"], "--space"), (["--space", "proxylessnas", "--repeats", "0"],
                                                                  "--repeats")):
        with pytest.raises(SystemExit) as e:
            latency.main(argv + ["--out", str(tmp_path)])
        assert e.value.code == 2
        err = capsys.readouterr().err.strip()
        assert needle in err and "\n" not in err


def test_the_k_path_step_applies_label_smoothing():
    import torch.nn.functional as F

    from scarlet.decisions.space import get_space
    from scarlet.decisions.step import sequential_k_path_step
    from scarlet.decisions.supernet import DecisionSupernet

    space = get_space("proxylessnas", 0.25, 2)
    torch.manual_seed(0)
    model = DecisionSupernet(space, 5).double()
    x, y = torch.randn(4, 3, 16, 16, dtype=torch.float64), torch.tensor([0, 1, 2, 3])
    arch = random_decision_arch(space, torch.Generator().manual_seed(0))
    smoothed = sequential_k_path_step(model, x, y, [arch], None, label_smoothing=0.1)
    plain = sequential_k_path_step(model, x, y, [arch], None)
    logits = model(x, arch).detach()
    assert float(smoothed[0]) == pytest.approx(float(F.cross_entropy(logits, y, label_smoothing=0.1)))
    assert float(plain[0]) == pytest.approx(float(F.cross_entropy(logits, y)))
    assert float(smoothed[0]) != pytest.approx(float(plain[0]))
