"""``python -m scarlet.search`` on a tiny supernet trained in the test: outputs, exact resume, one-line errors."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from scarlet.search.cli import build_parser, main

PAPER_YAML = Path(__file__).resolve().parents[2] / "scarlet" / "search" / "configs" / "paper.yaml"
FAST = ["--val-batches", "1", "--val-batch-size", "64", "--recalib-batches", "1", "--no-progress"]


def train_tiny(out, space):
    from scarlet.train import main as train

    train(["--space", space, "--max-steps", "2", "--width", "0.125", "--resolution", "16", "--batch-size", "16",
           "--eval-archs", "0", "--recalib-batches", "1", "--no-progress", "--out", str(out)])
    return out


@pytest.fixture(scope="module")
def supernet(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp("supernet") / "run", "scarlet-s1")


def search(supernet, out, *args):
    return main(["--supernet", str(supernet), "--out", str(out), *FAST, *args])


def test_search_writes_its_outputs(supernet, tmp_path):
    from scarlet.cost import CostModel
    from scarlet.supernet import SupernetConfig

    out = tmp_path / "search"
    madds_max = 0.8e6
    assert search(supernet, out, "--population", "6", "--generations", "3", "--k", "3",
                  "--madds-max", "0.8M") == 0
    front = json.loads((out / "pareto.json").read_text())
    assert front and all({"arch", "acc", "madds", "params"} <= set(row) for row in front)
    assert [r["madds"] for r in front] == sorted(r["madds"] for r in front)
    assert sum(r["pick"] for r in front) == min(3, len(front))
    cfg = json.loads((supernet / "config.json").read_text())
    cost = CostModel(SupernetConfig(space="scarlet-s1", width=cfg["width"], resolution=cfg["resolution"],
                                    in_channels=1, num_classes=10))
    for row in front:
        genes = tuple(int(g) for g in row["arch"].split(","))
        assert len(genes) == 19 and cost.cost(genes) == (row["madds"], row["params"])
        assert 0 <= row["acc"] <= 1
    with open(out / "evaluated.csv") as f:
        rows = list(csv.DictReader(f))
    assert all(float(r["madds"]) <= madds_max for r in rows)  # nothing over the limit was evaluated
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["generation"] for h in history] == [0, 1, 2, 3]
    assert history[-1]["evaluated"] == len(rows) and all("elapsed_s" in h for h in history)
    assert {r["arch"] for r in rows if r["on_front"] == "1"} == {r["arch"] for r in front}
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_resume_after_interrupt_is_exact(supernet, tmp_path, monkeypatch):
    from scarlet.search import NSGA2

    args = ["--population", "5", "--generations", "3", "--seed", "3"]
    straight, split = tmp_path / "straight", tmp_path / "split"
    assert search(supernet, straight, *args) == 0

    real_step = NSGA2.step

    def interrupted(self):
        if self.generation == 2:
            raise KeyboardInterrupt
        real_step(self)

    monkeypatch.setattr(NSGA2, "step", interrupted)
    with pytest.raises(SystemExit) as e:
        search(supernet, split, *args)
    assert e.value.code == 130
    saved = json.loads((split / "search_state.json").read_text())
    assert saved["search"]["generation"] == 2
    monkeypatch.setattr(NSGA2, "step", real_step)
    assert main(["--resume", "--out", str(split), "--no-progress"]) == 0
    a, b = (json.loads((d / "search_state.json").read_text())["search"] for d in (straight, split))
    assert a == b
    for name in ("pareto.json", "evaluated.csv"):
        assert (straight / name).read_text() == (split / name).read_text()


def test_batched_evaluator_gives_the_same_search(supernet, tmp_path):
    args = ["--population", "4", "--generations", "1", "--seed", "5"]
    assert search(supernet, tmp_path / "one", *args, "--evaluator", "one-by-one") == 0
    assert search(supernet, tmp_path / "batched", *args, "--evaluator", "batched") == 0
    for name in ("pareto.json", "evaluated.csv"):
        assert (tmp_path / "one" / name).read_text() == (tmp_path / "batched" / name).read_text()


def test_random_strategy(supernet, tmp_path):
    out = tmp_path / "random"
    assert search(supernet, out, "--strategy", "random", "--population", "4", "--budget", "10") == 0
    with open(out / "evaluated.csv") as f:
        assert len(list(csv.DictReader(f))) == 10
    assert json.loads((out / "pareto.json").read_text())


def error_line(capsys, argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: "), err
    return err[0]


def test_bad_input_is_one_line_and_exit_2(supernet, tmp_path, capsys):
    base = ["--supernet", str(supernet), "--out", str(tmp_path / "o"), *FAST]
    assert "no checkpoint" in error_line(capsys, ["--supernet", str(tmp_path / "missing"), "--out",
                                                 str(tmp_path / "x")])
    assert "scarlet-s1 supernet, not fairnas" in error_line(capsys, [*base, "--space", "fairnas"])
    assert "constraints impossible" in error_line(capsys, [*base, "--madds-max", "1k", "--population", "3",
                                                           "--max-draws", "20"])
    assert "population" in error_line(capsys, [*base, "--population", "many"])
    assert "population" in error_line(capsys, [*base, "--population", "0"])
    assert "2 weights for 3 objectives" in error_line(capsys, [*base, "--weights", "1,2"])
    assert "unknown objective 'latency'" in error_line(capsys, [*base, "--objectives", "acc:max,latency:min",
                                                                "--weights", "1,1"])
    assert "amount" in error_line(capsys, [*base, "--madds-max", "lots"])
    assert "--supernet" in error_line(capsys, ["--out", str(tmp_path / "y")])
    assert "no search state" in error_line(capsys, ["--resume", "--out", str(tmp_path / "nothing")])

    out = tmp_path / "done"
    assert search(supernet, out, "--population", "3", "--generations", "0") == 0
    assert "already holds a search" in error_line(capsys, ["--supernet", str(supernet), "--out", str(out)])
    assert "conflicts" in error_line(capsys, ["--resume", "--out", str(out), "--population", "4"])
    other = train_tiny(tmp_path / "fairnas", "fairnas")
    assert "now a fairnas supernet" in error_line(capsys, ["--resume", "--out", str(out), "--supernet", str(other)])


def test_error_from_a_subprocess_has_no_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "scarlet.search", "--supernet", str(tmp_path / "none"), "--out",
                        str(tmp_path / "o")], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr and "no checkpoint" in r.stderr


def test_paper_config_file(tmp_path):
    from scarlet.search.cli import _objectives, _search_config, _settings

    args = build_parser().parse_args(["--config", str(PAPER_YAML), "--supernet", "somewhere", "--out",
                                      str(tmp_path / "out")])
    cfg, saved = _settings(args)
    by_name = build_parser().parse_args(["--config", "paper", "--supernet", "somewhere", "--out",
                                         str(tmp_path / "out")])
    assert _settings(by_name)[0] == cfg
    assert saved is None
    assert (cfg["population"], cfg["generations"], cfg["madds_max"], cfg["acc_min"]) == (70, 120, 500e6, 0.4)
    assert cfg["weights"] == "0.4,0.4,0.2" and cfg["cost_model"] == "paper"
    config = _search_config(cfg, _objectives(cfg))
    assert config.pick_by == "madds"
    assert (config.mutation_ratio, config.p_random, config.p_roulette, config.p_policy, config.p_single,
            config.p_multi) == (0.8, 0.2, 0.65, 0.15, 0.7, 0.3)
