"""Checkpoints and search states that were tampered with or come from elsewhere: one-line errors from --resume,
load_supernet, search and export, never a traceback (and never an exponential blow-up in a message)."""

import json
import shutil

import pytest
import torch
from hardening_cases import STANDALONE, error_line

from scarlet import ScarletError, load_supernet
from scarlet.checkpoint import save_checkpoint
from scarlet.export import main as export_main
from scarlet.search.cli import main as search_main
from scarlet.train import main as train_main


def memo_bomb(depth=40):
    """A list whose pickle is tiny (shared references) but whose repr or JSON would have 2**depth leaves."""
    x = [0]
    for _ in range(depth):
        x = [x, x]
    return x


def first_weight(state):
    return next(k for k, v in state["model"].items() if v.dim() == 4)


# What a tampered supernet checkpoint does to load_supernet (used by search and export alike).
SUPERNET_TAMPERINGS = {
    "wrong shape": (lambda s: s["model"].__setitem__(first_weight(s), torch.zeros(1, 1, 1, 1)), "size mismatch"),
    "missing model": (lambda s: s.pop("model"), "is missing 'model'"),
    "model not tensors": (lambda s: s.__setitem__("model", {"a": 1}), "model is not a mapping of names to tensors"),
    "config width string": (lambda s: s["config"].__setitem__("width", "wide"), "config: width must be a number"),
    "config extra key": (lambda s: s["config"].__setitem__("depth", 3), "config: unknown option(s) depth"),
    "config bomb": (lambda s: s["config"].__setitem__("space", memo_bomb()), "config: space = a list; choose"),
    "kind": (lambda s: s.__setitem__("kind", "evil"), "kind must be"),
}


@pytest.fixture(scope="module")
def supernet_state(supernet_run):
    return torch.load(supernet_run / "checkpoint.pt", weights_only=True)


@pytest.mark.parametrize("name", SUPERNET_TAMPERINGS)
def test_tampered_supernet_checkpoint(name, supernet_state, tmp_path):
    tamper, message = SUPERNET_TAMPERINGS[name]
    state = {**supernet_state, "model": dict(supernet_state["model"]), "config": dict(supernet_state["config"])}
    tamper(state)
    save_checkpoint(tmp_path / "checkpoint.pt", state)
    with pytest.raises(ScarletError, match=message.replace("(", r"\(").replace(")", r"\)")) as e:
        load_supernet(tmp_path)
    assert "\n" not in str(e.value) and len(str(e.value)) < 600


def test_tampered_supernet_through_export_and_search(supernet_state, tmp_path, capsys):
    state = {**supernet_state, "model": dict(supernet_state["model"])}
    SUPERNET_TAMPERINGS["wrong shape"][0](state)
    save_checkpoint(tmp_path / "run" / "checkpoint.pt", state)
    for main, extra in ((export_main, ["--arch", "fairnas-a"]), (search_main, ["--dataset", "digits"])):
        line = error_line(capsys, main, ["--supernet", str(tmp_path / "run"), "--out", str(tmp_path / "x"), *extra])
        assert "size mismatch" in line
        assert not (tmp_path / "x").exists()


# What a tampered training checkpoint does to --resume (a standalone run: small and quick to rebuild).
RESUME_TAMPERINGS = {
    "wrong shape": (lambda s: s["model"].__setitem__(first_weight(s), torch.zeros(1, 1, 1, 1)), "size mismatch"),
    "missing optimizer": (lambda s: s.pop("optimizer"), "damaged or belongs to another run"),
    "run config epochs string": (lambda s: s["run_config"].__setitem__("epochs", "5"),
                                 "run configuration: epochs must be an integer, got '5'"),
    "run config lr nan": (lambda s: s["run_config"].__setitem__("lr", float("nan")),
                          "run configuration: lr must be finite"),
    "run config missing key": (lambda s: s["run_config"].pop("seed"), "missing option(s) seed"),
    "run config not a dict": (lambda s: s.__setitem__("run_config", [1, 2]), "is not a mapping"),
    "run config memo bomb": (lambda s: s["run_config"].__setitem__("arch", memo_bomb()),
                             "run configuration: arch must be a string, got a list"),
    "step negative": (lambda s: s.__setitem__("step", -1), "step must be a non-negative integer"),
    "step bomb": (lambda s: s.__setitem__("step", memo_bomb()), "step must be a non-negative integer, got a list"),
    "choice counts shape": (lambda s: s.__setitem__("choice_counts", torch.zeros(2, 2, dtype=torch.int64)),
                            "choice_counts is not a (19, 6) int64 tensor"),
    "data order": (lambda s: s["stream"].__setitem__("order", torch.zeros(3, dtype=torch.int64)),
                   "saved data order is not a permutation"),
    "rng state": (lambda s: s.__setitem__("torch_rng", torch.zeros(3, dtype=torch.uint8)),
                  "damaged or belongs to another run"),
}


@pytest.fixture(scope="module")
def standalone_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("standalone") / "run"
    assert train_main([*STANDALONE, "--max-steps", "1", "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("name", RESUME_TAMPERINGS)
def test_tampered_checkpoint_on_resume(name, standalone_run, tmp_path, capsys):
    tamper, message = RESUME_TAMPERINGS[name]
    out = tmp_path / "run"
    shutil.copytree(standalone_run, out)
    state = torch.load(out / "checkpoint.pt", weights_only=True)
    tamper(state)
    save_checkpoint(out / "checkpoint.pt", state)
    line = error_line(capsys, train_main, ["--resume", "--out", str(out), "--max-steps", "2"])
    assert message in line and len(line) < 600, line


@pytest.fixture
def finished_search(run_copy, tmp_path):
    out = tmp_path / "search"
    assert search_main(["--supernet", str(run_copy), "--out", str(out), "--population", "2", "--generations", "0",
                        "--val-batches", "1", "--recalib-batches", "1", "--no-progress"]) == 0
    return run_copy, out


def test_search_states_tampered_or_from_another_supernet(finished_search, capsys):
    supernet, out = finished_search
    path = out / "search_state.json"
    good = json.loads(path.read_text())
    resume = ["--resume", "--out", str(out), "--generations", "1", "--no-progress"]

    def edited(change, message):
        state = json.loads(json.dumps(good))
        change(state)
        path.write_text(json.dumps(state))
        assert message in error_line(capsys, search_main, resume)

    edited(lambda s: s["settings"].__setitem__("population", "2"), "settings: population must be an integer")
    edited(lambda s: s["settings"].__setitem__("p_random", float("inf")), "settings: p_random must be finite")
    edited(lambda s: s["settings"].pop("seed"), "missing option(s) seed")
    edited(lambda s: s.__setitem__("elapsed", ["soon"]), "elapsed must be a list of finite numbers")
    edited(lambda s: s["search"]["archive"]["records"][0].__setitem__(0, [99] * 19),
           "architectures that are not in this search space")
    edited(lambda s: s["search"].pop("archive"), "damaged or belongs to another search")
    path.write_text("[" * 100000 + "]" * 100000)
    assert "is unreadable" in error_line(capsys, search_main, resume)

    # the same space and shapes, other weights: its cached accuracies would be wrong for this supernet
    path.write_text(json.dumps(good))
    ckpt = supernet / "checkpoint.pt"
    state = torch.load(ckpt, weights_only=True)
    state["model"][first_weight(state)] += 1
    save_checkpoint(ckpt, state)
    assert "is not the supernet the search" in error_line(capsys, search_main, resume)
