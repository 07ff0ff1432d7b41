"""Stratified architecture draw and the on-disk cache of from-scratch results."""

import json

import pytest
import torch

from scarlet.arch import random_arch
from scarlet.cost import CostModel
from scarlet.data import Dataset, Split, load_dataset
from scarlet.rank.ground_truth import (GroundTruth, Recipe, cache_key, cache_path, candidate_pool, madds_bins,
                                       published_archs, stratified_archs)
from scarlet.supernet import SupernetConfig

CONFIG = SupernetConfig(space="scarlet-s2", width=0.125, resolution=16, in_channels=1, num_classes=10)


def test_stratified_draw_covers_every_madds_bin():
    n = 8
    archs = stratified_archs(CONFIG, n, seed=0, pool_size=2000)
    pool = candidate_pool(CONFIG, 2000, seed=0)
    cost = CostModel(CONFIG)
    madds = [cost.madds(a) for a in archs]
    bins = madds_bins(madds, min(pool.values()), max(pool.values()), n)
    assert sorted(bins.tolist()) == list(range(n))  # one architecture in each bin
    assert len({a.genes for a in archs}) == n and madds == sorted(madds)
    assert [a.genes for a in stratified_archs(CONFIG, n, seed=0, pool_size=2000)] == [a.genes for a in archs]
    # Uniform sampling of as many architectures spans a far narrower MAdds range.
    gen = torch.Generator().manual_seed(0)
    uniform = [cost.madds(random_arch("scarlet-s2", gen)) for _ in range(n)]
    assert max(madds) - min(madds) > 2 * (max(uniform) - min(uniform))


def test_published_archs_that_fit():
    assert [name for name, _ in published_archs("fairnas")] == ["fairnas-a", "fairnas-b", "fairnas-c"]
    assert len(published_archs("scarlet-s2")) == 6  # FairNAS's choices all exist in S2


def test_cache_key_ignores_supernet_only_options():
    arch = stratified_archs(CONFIG, 3)[0]
    recipe = Recipe()
    plain = SupernetConfig(**{**CONFIG.to_dict(), "skip": "skip", "dropout": 0.1})
    assert cache_key(arch, 0, recipe, "digits", plain) == cache_key(arch, 0, recipe, "digits", CONFIG)
    assert cache_key(arch, 1, recipe, "digits", CONFIG) != cache_key(arch, 0, recipe, "digits", CONFIG)


@pytest.fixture(scope="module")
def small_digits():
    data = load_dataset("digits", 16)
    train = Split(data.train.labels[:128], data.train.images[:128])
    val = Split(data.val.labels[:64], data.val.images[:64])
    return Dataset("digits", train, val, data.num_classes, data.in_channels, 16)


def test_second_call_reuses_the_cache(tmp_path, small_digits):
    recipe = Recipe(epochs=1, batch_size=64, warmup_steps=1)
    archs = stratified_archs(CONFIG, 2)
    first = GroundTruth(tmp_path, recipe, small_digits, "digits", CONFIG)
    table = first.table(archs, [0, 1], progress=False)
    assert first.trained == 4 and len(list(tmp_path.glob("gt-*.json"))) == 4
    assert all(0 <= r["val_acc"] <= 1 and r["steps"] == 2 for row in table for r in row)
    again = GroundTruth(tmp_path, recipe, small_digits, "digits", CONFIG)
    assert again.table(archs, [0, 1], progress=False) == table and again.trained == 0
    # A larger study trains only what is new; another recipe is another key.
    again.table(archs, [0, 1, 2], progress=False)
    assert again.trained == 2
    other = GroundTruth(tmp_path, Recipe(epochs=1, batch_size=64, warmup_steps=1, lr=0.01), small_digits, "digits",
                        CONFIG)
    other.result(archs[0], 0)
    assert other.trained == 1
    # A damaged entry is retrained, not trusted.
    path = cache_path(tmp_path, cache_key(archs[1], 2, recipe, "digits", CONFIG))
    path.write_text("{not json")
    fresh = GroundTruth(tmp_path, recipe, small_digits, "digits", CONFIG)
    fresh.table(archs, [0, 1, 2], progress=False)
    assert fresh.trained == 1 and json.loads(path.read_text())["result"]["steps"] >= 2
