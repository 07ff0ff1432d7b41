"""Batched evaluation of P architectures equals evaluating them one by one (scarlet.evaluate)."""

import copy

import pytest
import torch

from executor_cases import assert_close, batch, tiny_model
from scarlet.arch import random_arch
from scarlet.evaluate import recalibrate_bn
from scarlet.executor import batched_logits, evaluate_batched, evaluate_one_by_one


def archs_with_duplicates(space, n, seed=0):
    g = torch.Generator().manual_seed(seed)
    archs = [random_arch(space, g).genes for _ in range(n)]
    return archs + [archs[1], archs[0], archs[1]]


def data(model, n_batches, seed):
    return [batch(model, n=4, seed=seed + i) for i in range(n_batches)]


@pytest.mark.parametrize("space,skip", [("scarlet-s2", "els"), ("scarlet-s1", "skip"), ("fairnas", "els")])
def test_logits_equal_one_by_one_after_recalibration(space, skip):
    model = tiny_model(space, skip)
    archs = archs_with_duplicates(space, 5, seed=1)
    calib = data(model, 2, seed=10)
    images, _ = batch(model, n=4, seed=20)
    got = batched_logits(model, archs, calib, images)
    work = copy.deepcopy(model)
    for p, arch in enumerate(archs):
        recalibrate_bn(work, arch, calib)
        with torch.no_grad():
            expected = work(images, arch)
        assert_close(expected, got[p], 1e-10, what=f"path {p}")
    assert_close(got[1], got[5], 1e-12, what="duplicate")
    assert_close(got[0], got[6], 1e-12, what="duplicate")


def test_logits_without_recalibration_use_the_model_statistics():
    model = tiny_model("scarlet-s2", "els-relu")
    archs = archs_with_duplicates("scarlet-s2", 3, seed=2)
    images, _ = batch(model, n=4, seed=21)
    got = batched_logits(model, archs, None, images)
    model.eval()
    with torch.no_grad():
        for p, arch in enumerate(archs):
            assert_close(model(images, arch), got[p], 1e-10, what=f"path {p}")


@pytest.mark.parametrize("chunk", [None, 3])
def test_accuracies_equal_one_by_one(chunk):
    model = tiny_model("scarlet-s2", "els", num_classes=3)
    archs = archs_with_duplicates("scarlet-s2", 6, seed=3)
    calib, val = data(model, 2, seed=30), data(model, 3, seed=40)
    expected = evaluate_one_by_one(model, archs, calib, val)
    got = evaluate_batched(model, archs, calib, val, chunk=chunk)
    assert got == expected
    assert got[1] == got[6] == got[8] and got[0] == got[7]
    assert len(set(expected)) > 1  # the comparison is not trivially satisfied


def test_model_is_left_untouched():
    model = tiny_model("scarlet-s1", "els", dropout=0.2)
    model.train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    archs = archs_with_duplicates("scarlet-s1", 3, seed=4)
    calib, val = data(model, 2, seed=50), data(model, 1, seed=60)
    first = evaluate_batched(model, archs, calib, val)
    assert model.training
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert evaluate_batched(model, archs, iter(calib), iter(val)) == first  # iterables, no dropout in eval
    assert evaluate_batched(model, [], calib, val) == []
