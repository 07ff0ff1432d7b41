"""The batched fair step reproduces the sequential step: gradients, BN running statistics, updated weights."""

import pytest
import torch

from executor_cases import (SPACE_SKIPS, assert_close, assert_models_match, assert_optimizers_match, batch,
                            fair_perms, global_relative_difference, grad_floor, pair, sgd, tiny_model)
from scarlet.errors import ScarletError
from scarlet.executor import BatchedStep, SequentialStep, make_step
from scarlet.samplers import EFSampler, UniformSampler

FP64 = 1e-8


def run_both(ref, got, perms_list, *, optimizer=True, seeds=None, **options):
    """Run the sequential step on ``ref`` and the batched step on ``got`` for each perms; compare every step."""
    opt_ref = sgd(ref) if optimizer else None
    opt_got = sgd(got) if optimizer else None
    seq = make_step("sequential", ref, opt_ref)
    bat = make_step("batched", got, opt_got, **options)
    for i, perms in enumerate(perms_list):
        images, labels = batch(ref, seed=i)
        if seeds is not None:
            torch.manual_seed(seeds[i])
        loss_ref = seq(images, labels, perms)
        if seeds is not None:
            torch.manual_seed(seeds[i])
        loss_got = bat(images, labels, perms)
        yield i, loss_ref, loss_got, opt_ref, opt_got


@pytest.mark.parametrize("space,skip", SPACE_SKIPS)
def test_two_sgd_steps_match_sequential(space, skip):
    """SGD with momentum and weight decay, two steps: grads, BN stats, weights and momentum buffers agree."""
    ref, got = pair(space, skip)
    perms = [fair_perms(space, seed=1), fair_perms(space, seed=2)]
    for _, loss_ref, loss_got, opt_ref, opt_got in run_both(ref, got, perms):
        assert loss_got.shape == (ref.space.num_choices,)
        assert_close(loss_ref, loss_got, FP64, what="losses")
        assert_models_match(ref, got, FP64)
        assert_optimizers_match(opt_ref, opt_got, FP64, grad_floor(ref))


def test_gradients_only_without_optimizer():
    ref, got = pair("scarlet-s2", "els")
    perms = [fair_perms("scarlet-s2", seed=3)]
    before = [p.detach().clone() for p in got.parameters()]
    for _ in run_both(ref, got, perms, optimizer=False):
        assert_models_match(ref, got, FP64)
    assert all(torch.equal(a, p) for a, p in zip(before, got.parameters()))


def test_fp32_gradients_within_1e4_of_each_tensor():
    """fp32, one step: every gradient within 1e-4 of its norm (gradients that are zero up to rounding, below 1%
    of the model's typical gradient, against that 1%); and the batched step's error against an fp64 run is
    at most twice the sequential step's own fp32 error."""
    ref, got = pair("scarlet-s2", "els", dtype=torch.float32)
    truth = tiny_model("scarlet-s2", "els")
    perms = fair_perms("scarlet-s2", seed=4)
    images, labels = batch(ref)
    loss_ref = make_step("sequential", ref, None)(images, labels, perms)
    loss_got = make_step("batched", got, None)(images, labels, perms)
    make_step("sequential", truth, None)(images.double(), labels, perms)
    assert_close(loss_ref, loss_got, 1e-5, what="losses")
    assert_models_match(ref, got, 1e-4, floor_fraction=1e-2)
    grads = lambda model: [p.grad for p in model.parameters()]  # noqa: E731
    err_seq = global_relative_difference(grads(truth), grads(ref))
    err_bat = global_relative_difference(grads(truth), grads(got))
    assert err_bat <= 2 * err_seq + 1e-7, (err_bat, err_seq)


@pytest.mark.parametrize("in_flight", [1, 5])
def test_paths_in_flight_stays_exact(in_flight):
    ref, got = pair("scarlet-s2", "els")
    perms = [fair_perms("scarlet-s2", seed=6), fair_perms("scarlet-s2", seed=7)]
    for _, loss_ref, loss_got, _, _ in run_both(ref, got, perms, paths_in_flight=in_flight):
        assert_close(loss_ref, loss_got, FP64, what="losses")
        assert_models_match(ref, got, FP64)


def test_stem_and_head_running_statistics():
    """Stem BN: m EMA updates of the same batch statistics; head BN: one update per path, in path order."""
    ref, got = pair("scarlet-s1", "els")
    m = ref.space.num_choices
    stem_before = got.stem.bn.running_mean.clone()
    perms = [fair_perms("scarlet-s1", seed=8)]
    for _ in run_both(ref, got, perms, optimizer=False):
        pass
    for name in ("stem.bn", "first.bn1", "first.bn2", "head.bn"):
        bn_ref, bn_got = ref.get_submodule(name), got.get_submodule(name)
        assert_close(bn_ref.running_mean, bn_got.running_mean, FP64, what=name)
        assert_close(bn_ref.running_var, bn_got.running_var, FP64, what=name)
        assert int(bn_got.num_batches_tracked) == 3 + m
    # closed form of the stem's m updates with its batch mean
    images, _ = batch(ref, seed=0)
    with torch.no_grad():
        z = got.stem.conv(images)
    mom = got.stem.bn.momentum
    expected = (1 - mom) ** m * stem_before + (1 - (1 - mom) ** m) * z.mean((0, 2, 3))
    assert_close(expected, got.stem.bn.running_mean, 1e-10, what="closed form")


def test_head_bn_is_segmented_per_path():
    """Normalising the m * B stacked batch together would change the losses; per-path statistics do not."""
    ref, got = pair("fairnas", "els")
    perms = [fair_perms("fairnas", seed=9)]
    for _, loss_ref, loss_got, _, _ in run_both(ref, got, perms, optimizer=False):
        assert_close(loss_ref, loss_got, FP64, what="losses")
        assert loss_ref.std() > 1e-3  # the paths really differ


@pytest.mark.parametrize("sampler", [UniformSampler, EFSampler])
def test_non_fair_samplers_are_exact(sampler):
    """One uniform path, and the EF sampler's m identical columns (duplicates handled exactly, no fallback)."""
    ref, got = pair("scarlet-s1", "els")
    s = sampler("scarlet-s1", seed=10)
    perms = [s.permutations(), s.permutations()]
    for _, loss_ref, loss_got, opt_ref, opt_got in run_both(ref, got, perms):
        assert_close(loss_ref, loss_got, FP64, what="losses")
        assert_models_match(ref, got, FP64)


def test_duplicate_paths_with_chunks():
    ref, got = pair("scarlet-s1", "skip")
    base = fair_perms("scarlet-s1", seed=11)
    perms = torch.cat([base[:, :3], base[:, :2], base[:, 5:]], 1)  # paths 0,1 repeated, 9 paths
    for _ in run_both(ref, got, [perms], paths_in_flight=4):
        assert_models_match(ref, got, FP64)


def test_head_dropout_draws_masks_as_sequential():
    ref, got = pair("scarlet-s1", "els", dropout=0.2)
    perms = [fair_perms("scarlet-s1", seed=12), fair_perms("scarlet-s1", seed=13)]
    for _, loss_ref, loss_got, _, _ in run_both(ref, got, perms, seeds=[5, 6], paths_in_flight=3):
        assert_close(loss_ref, loss_got, FP64, what="losses")
        assert_models_match(ref, got, FP64)


def test_bn_momentum_none():
    ref, got = pair("scarlet-s1", "els")
    for model in (ref, got):
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.momentum = None
    perms = [fair_perms("scarlet-s1", seed=14), fair_perms("scarlet-s1", seed=15)]
    for _ in run_both(ref, got, perms):
        assert_models_match(ref, got, FP64)


def test_per_choice_grouping_matches_too():
    ref, got = pair("scarlet-s2", "els")
    for _ in run_both(ref, got, [fair_perms("scarlet-s2", seed=16)], grouping="choice"):
        assert_models_match(ref, got, FP64)


def test_bf16_autocast_close_to_sequential():
    ref, got = pair("scarlet-s1", "els", dtype=torch.float32)
    perms = fair_perms("scarlet-s1", seed=17)
    images, labels = batch(ref)
    loss_ref = make_step("sequential", ref, None, autocast_dtype=torch.bfloat16)(images, labels, perms)
    loss_got = make_step("batched", got, None, autocast_dtype=torch.bfloat16)(images, labels, perms)
    assert loss_got.dtype == torch.float32
    assert_close(loss_ref, loss_got, 2e-2, what="bf16 losses")
    g_ref = torch.cat([p.grad.flatten() for p in ref.parameters()])
    g_got = torch.cat([p.grad.flatten() for p in got.parameters()])
    assert_close(g_ref, g_got, 5e-2, what="bf16 gradients")


def test_same_seed_runs_end_with_matching_weights_fp32():
    """What the trainer checks: three fp32 steps from the same seed, one run per executor: the weights and BN
    statistics agree within 1e-4 (relative, over the model; single zero-initialised SE biases drift further in
    fp32 with either executor, as a float64 run shows)."""
    ref, got = pair("scarlet-s2", "els", dtype=torch.float32)
    opts = sgd(ref, lr=0.01), sgd(got, lr=0.01)
    steps = make_step("sequential", ref, opts[0]), make_step("batched", got, opts[1])
    for i in range(3):
        images, labels = batch(ref, seed=i)
        perms = fair_perms("scarlet-s2", seed=20 + i, forced=())
        for step in steps:
            step(images, labels, perms)
    assert global_relative_difference(list(ref.parameters()), list(got.parameters())) < 1e-4
    float_buffers = lambda model: [b for b in model.buffers() if b.is_floating_point()]  # noqa: E731
    assert global_relative_difference(float_buffers(ref), float_buffers(got)) < 1e-4
    assert all(torch.equal(a, b) for a, b in zip(ref.buffers(), got.buffers()) if not a.is_floating_point())


def test_make_step_api():
    ref, _ = pair("scarlet-s1", "els")
    opt = sgd(ref)
    assert isinstance(make_step("sequential", ref, opt), SequentialStep)
    step = make_step("batched", ref, opt, paths_in_flight=2, cuda_graph=False)
    assert isinstance(step, BatchedStep) and step.paths_in_flight == 2
    with pytest.raises(ScarletError, match="unknown executor"):
        make_step("parallel", ref, opt)
    images, labels = batch(ref)
    with pytest.raises(ScarletError, match="perms"):
        step(images, labels, torch.zeros(5, 7, dtype=torch.int64))
    with pytest.raises(ScarletError, match="0..6"):
        step(images, labels, torch.full((19, 7), 7))
    with pytest.raises(ScarletError):
        make_step("batched", ref, opt, paths_in_flight=0)


def test_masked_depthwise_kernel_path():
    """kernels="on" routes the depthwise stage through scarlet_kernels (its PyTorch reference on a CPU)."""
    pytest.importorskip("scarlet_kernels")
    ref, got = pair("scarlet-s2", "els")
    perms = fair_perms("scarlet-s2", seed=18)
    images, labels = batch(ref)
    step = make_step("batched", got, sgd(got), kernels="on")
    calls = []
    kernel = step.forward.kernels.fn
    step.forward.kernels.fn = lambda *a, **k: calls.append(1) or kernel(*a, **k)
    loss = step(images, labels, perms)
    assert len(calls) == 2 * 19  # one launch per hidden-width group and layer
    assert_close(make_step("sequential", ref, sgd(ref))(images, labels, perms), loss, FP64, what="losses")
    assert_models_match(ref, got, FP64)
