"""``python -m scarlet.rank``: end to end at tiny size (and the cache on a rerun), and one-line errors (exit 2)."""

import json
import math
import subprocess
import sys

import pytest

from scarlet.rank.stats import kendall_tau

from scarlet.rank.cli import main as rank_main
from scarlet.train import main as train_main

TINY = ["--width", "0.125", "--resolution", "8", "--batch-size", "32", "--eval-archs", "0", "--recalib-batches", "1",
        "--no-progress", "--max-steps", "1"]
# A from-scratch recipe of 5 steps per network (digits: 1438 training images at batch 256).
FAST = ["--n", "3", "--seeds", "2", "--epochs", "1", "--batch-size", "256", "--warmup-steps", "1", "--bootstrap", "50",
        "--recalib-batches", "1", "--no-progress", "--no-published"]


@pytest.fixture(scope="module")
def supernets(tmp_path_factory):
    root = tmp_path_factory.mktemp("supernets")
    for name, flags in {"els": [], "fairnas": ["--space", "fairnas"]}.items():
        assert train_main(["--out", str(root / name), *TINY, *flags]) == 0
    return root


def test_study_end_to_end_then_cached_rerun(supernets, tmp_path, capsys):
    out, cache = tmp_path / "out", tmp_path / "cache"
    args = ["study", "--supernet", f"a={supernets / 'els'}", "--supernet", f"b={supernets / 'els'}", "--out", str(out),
            "--cache", str(cache), *FAST]
    assert rank_main(args) == 0
    result = json.loads((out / "ranking.json").read_text())
    n_archs = 3
    assert len(result["ground_truth"]) == n_archs and result["trained_now"] == 2 * n_archs
    assert [s["label"] for s in result["supernets"]] == ["a", "b"]
    a, b = result["supernets"]
    assert a["estimates"] == b["estimates"]  # one supernet, twice: same estimates, same statistics
    # An untrained supernet may tie every architecture: tau is then undefined, written as null.
    tau = a["top1"]["kendall_tau"]
    assert (tau is None or -1 <= tau <= 1) and len(a["top1"]["kendall_tau_ci"]) == 2
    assert result["ceiling"]["kendall_tau"] is None or -1 <= result["ceiling"]["kendall_tau"] <= 1
    # The size bias: the ground truth's and each estimate's ranking against MAdds.
    madds = [r["madds"] for r in result["ground_truth"]]
    truth = [r["acc_mean"] for r in result["ground_truth"]]
    estimates = [e["acc"] for e in a["estimates"]]
    for written, values in ((result["truth_vs_madds"], truth), (a["estimate_vs_madds"], estimates)):
        expected = kendall_tau(madds, values)  # nan (all tied) is written as null
        assert written["kendall_tau"] is None if math.isnan(expected) else written["kendall_tau"] == pytest.approx(expected)
    for name in ("ranking_scatter_a.png", "ranking_scatter_b.png"):
        assert (out / name).stat().st_size > 0
    assert "Kendall tau" in capsys.readouterr().out
    assert rank_main(args) == 0
    assert json.loads((out / "ranking.json").read_text())["trained_now"] == 0


def test_study_archs_adds_published_once():
    from scarlet.rank.study import study_archs
    from scarlet.supernet import SupernetConfig

    config = SupernetConfig(space="fairnas", width=0.125, resolution=16, in_channels=1, num_classes=10)
    entries = study_archs(config, 4, seed=0)
    assert [name for name, _ in entries] == ["sampled-0", "sampled-1", "sampled-2", "sampled-3",
                                             "fairnas-a", "fairnas-b", "fairnas-c"]
    assert len({a.genes for _, a in entries}) == 7
    assert len(study_archs(config, 4, seed=0, published=False)) == 4


def test_cosine_command(supernets, tmp_path):
    assert rank_main(["cosine", "--supernet", str(supernets / "fairnas"), "--out", str(tmp_path), "--batch", "8"]) == 0
    result = json.loads((tmp_path / "ranking_cosine_fairnas.json").read_text())
    assert len(result["matrices"]) == 19 and len(result["matrices"][0]) == 6


@pytest.mark.parametrize("args,message", [
    (["study", "--supernet", "a=/nonexistent/run", "--out", "X"], "does not exist"),
    (["study", "--supernet", "a=ELS", "--out", "X", "--n", "2"], "--n must be at least 3"),
    (["study", "--supernet", "a=ELS", "--out", "X", "--seeds", "1"], "--seeds must be at least 2"),
    (["study", "--supernet", "ELS", "--out", "X"], "expected LABEL=DIR"),
    (["study", "--supernet", "a=ELS", "--supernet", "a=ELS", "--out", "X"], "labels must be unique"),
    (["study", "--supernet", "a=ELS", "--supernet", "b=FAIRNAS", "--out", "X"], "has space fairnas"),
    (["study", "--supernet", "a=ELS", "--out", "X", "--resolution", "16"], "conflicts with supernet"),
    (["study", "--supernet", "a=ELS", "--out", "X", "--epochs", "0"], "--epochs must be positive"),
    (["cosine", "--supernet", "ELS", "--out", "X", "--path", "1,2,3"], "architecture has 3 layers"),
])
def test_bad_input_is_one_line_exit_2(supernets, tmp_path, capsys, args, message):
    args = [a.replace("ELS", str(supernets / "els")).replace("FAIRNAS", str(supernets / "fairnas"))
            .replace("X", str(tmp_path / "out")) for a in args]
    with pytest.raises(SystemExit) as e:
        rank_main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and "\n" not in err


def test_cli_process_exits_2_without_traceback(tmp_path):
    r = subprocess.run([sys.executable, "-m", "scarlet.rank", "study", "--supernet", f"a={tmp_path / 'none'}",
                        "--out", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr and r.stderr.count("\n") == 1
