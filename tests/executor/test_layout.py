"""The CPU defaults: channels-last layout and the executors' shortcuts give the NCHW sequential step's results."""

import copy

import pytest
import torch
import torch.nn.functional as F

from executor_cases import (assert_models_match, batch, fair_perms, global_relative_difference, pair, sgd,
                            tiny_model)
from scarlet.errors import ScarletError
from scarlet.evaluate import evaluate_one_by_one, recalibrate_bn
from scarlet.executor import batched_logits, make_step
from scarlet.executor.layout import memory_format, to_layout
from scarlet.executor.stacked import dead_border_taps

CL = torch.channels_last


def test_auto_layout_is_channels_last_on_cpu_only():
    assert memory_format("auto", "cpu") == CL
    assert memory_format("auto", "cuda") == torch.contiguous_format
    assert memory_format("contiguous", "cpu") == torch.contiguous_format
    with pytest.raises(ScarletError, match="memory format 'nhwc'"):
        memory_format("nhwc", "cpu")


@pytest.mark.parametrize("size", range(1, 6))
@pytest.mark.parametrize("kernel,stride", [(3, 1), (5, 2), (7, 1), (7, 2)])
def test_dead_border_taps_are_exactly_the_taps_that_only_meet_padding(size, kernel, stride):
    g = torch.Generator().manual_seed(size * 10 + kernel)
    x = torch.randn(2, 3, size, size, dtype=torch.float64, generator=g)
    w = torch.randn(3, 1, kernel, kernel, dtype=torch.float64, generator=g)
    ref = F.conv2d(x, w, None, stride, kernel // 2, 1, 3)
    d = dead_border_taps(size, kernel, stride)
    assert torch.allclose(F.conv2d(x, w[:, :, d:kernel - d, d:kernel - d], None, stride, kernel // 2 - d, 1, 3), ref)
    if d < kernel // 2:  # one ring more and the result changes: the crop is the largest exact one
        e = d + 1
        out = F.conv2d(x, w[:, :, e:kernel - e, e:kernel - e], None, stride, kernel // 2 - e, 1, 3)
        assert out.shape != ref.shape or not torch.allclose(out, ref)
    if size == 1:
        assert d == kernel // 2  # a 1x1 map meets the centre tap only


@pytest.mark.parametrize("executor", ["sequential", "batched"])
def test_channels_last_steps_match_the_nchw_sequential_reference(executor):
    """Two SGD steps in float64 on a model ending at 1x1 maps (stem stride 2: most depthwise taps dead):
    weights, gradients, BN statistics and momentum equal the NCHW sequential step's. Within 1e-7 in float64:
    two steps of a tiny net with 1x1 maps amplify the rounding of another summation order to ~1e-8, while
    a wrong layout or a wrong crop gives differences of order 1."""
    ref, got = pair("scarlet-s2", "els", stem_stride=2)
    to_layout(got, CL)
    assert got.layers[0][0].conv_dw.weight.is_contiguous(memory_format=CL)
    opt_ref, opt_got = sgd(ref), sgd(got)
    seq, fast = make_step("sequential", ref, opt_ref), make_step(executor, got, opt_got)
    for i in range(2):
        images, labels = batch(ref, n=16, seed=i)  # 16 values per channel at 1x1 maps: BN well conditioned
        perms = fair_perms("scarlet-s2", seed=30 + i)
        seq(images, labels, perms)
        fast(to_layout(images, CL), labels, perms)
    assert_models_match(ref, got, 1e-7)
    moms = [[opt.state[p]["momentum_buffer"] for p in m.parameters()] for opt, m in ((opt_ref, ref), (opt_got, got))]
    assert global_relative_difference(*moms) < 1e-7


def test_channels_last_evaluation_matches_nchw():
    """BN recalibration and evaluation in channels-last give the NCHW logits, one by one and batched; the
    evaluated model keeps its own layout."""
    model = tiny_model(stem_stride=2)
    archs = [tuple(fair_perms("scarlet-s2", seed=s)[:, k].tolist()) for s, k in ((1, 0), (2, 5), (3, 12))]
    calib = [batch(model, n=6, seed=s) for s in (1, 2)]
    images, labels = batch(model, n=8, seed=3)
    cl_calib = [(to_layout(x, CL), y) for x, y in calib]
    nchw, cl = copy.deepcopy(model), to_layout(copy.deepcopy(model), CL)
    for genes in archs:
        recalibrate_bn(nchw, genes, calib)
        recalibrate_bn(cl, genes, cl_calib)
        with torch.no_grad():
            ref, got = nchw(images, genes), cl(to_layout(images, CL), genes)
        assert torch.allclose(ref, got, rtol=1e-9, atol=1e-9)
    ref = batched_logits(model, archs, calib, images)
    assert torch.allclose(batched_logits(model, archs, cl_calib, to_layout(images, CL)), ref, rtol=1e-9, atol=1e-9)
    accs = {fmt: evaluate_one_by_one(model, archs, calib, [(images, labels)], memory_format=fmt)
            for fmt in ("contiguous", "channels_last")}
    assert accs["contiguous"] == accs["channels_last"]
    assert model.layers[0][0].conv_dw.weight.is_contiguous()  # the caller's model is not converted


def test_train_cli_default_layout_matches_nchw_sequential_run(tmp_path):
    """The trainer's defaults on a CPU (channels-last, ``auto`` executor) end two fp32 steps on the digits with
    the parameters of today's configuration (NCHW, sequential) within 1e-4 and the BN running statistics within
    1e-3 (relative, over the model). An untrained net whose deep BN layers see 16 values per channel amplifies
    fp32 rounding of another summation order step after step (1e-6 after one step, 5e-5 after two, 2.5e-4 after
    three); the float64 test above shows the computation itself agrees to 1e-7, a layout error differs at O(1)."""
    from scarlet.train import main

    common = ["--max-steps", "2", "--width", "0.125", "--resolution", "16", "--stem-stride", "1",
              "--batch-size", "16", "--eval-archs", "0", "--recalib-batches", "0", "--no-progress"]
    main([*common, "--memory-format", "contiguous", "--executor", "sequential", "--out", str(tmp_path / "nchw")])
    main([*common, "--out", str(tmp_path / "default")])
    ref, got = (torch.load(tmp_path / d / "checkpoint.pt", weights_only=True)["model"] for d in ("nchw", "default"))
    assert got["stem.conv.weight"].is_contiguous(memory_format=CL)
    stats = [k for k in ref if "running" in k]
    params = [k for k in ref if ref[k].is_floating_point() and k not in stats]
    assert global_relative_difference([ref[k] for k in params], [got[k] for k in params]) < 1e-4
    assert global_relative_difference([ref[k] for k in stats], [got[k] for k in stats]) < 1e-3
    assert all(torch.equal(ref[k], got[k]) for k in ref if not ref[k].is_floating_point())


def test_auto_executor_follows_the_measured_rule():
    """The measured rule (benchmarks/results/fair_step_cpu.json): batched for strict-fair steps on CUDA, and on a
    CPU up to 32 pixels; other samplers repeat or drop choices, where the batched step has nothing to group."""
    from scarlet.executor import choose_executor

    for device in ("cpu", "cuda"):
        assert choose_executor("auto", device, "fair", width=1.0, resolution=32) == "batched"
        assert choose_executor("auto", device, "uniform", width=0.25, resolution=32) == "sequential"
        assert choose_executor("sequential", device, "fair", width=0.25, resolution=32) == "sequential"
    assert choose_executor("auto", "cpu", "fair", width=0.25, resolution=16) == "batched"
    assert choose_executor("auto", "cpu", "fair", width=1.0, resolution=64) == "sequential"
    assert choose_executor("auto", "cuda", "fair", width=1.0, resolution=64) == "batched"
