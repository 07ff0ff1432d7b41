"""The exact fold (SCARLET Lemma 4.1 plus projection shortcuts) computes the supernet path's function."""

import pytest
import torch
import torch.nn.functional as F
from fold_cases import (CHANNEL_CHANGING_LAYERS, FORCED_IDENTITIES, KINDS, SPACES, STRIDE2_LAYERS,
                        arch_with_identities, random_archs, tiny_config)
from torch import nn

from scarlet import ScarletError, Supernet
from scarlet.fold import ExportedNet, FoldedMBConv, check_fold, compose, fold_path, plan_fold, random_inputs
from scarlet.supernet import layer_shapes

RANDOM_ARCHS_PER_KIND = 100  # 200 random architectures per space, half with ELS and half with plain skips


def _forced(space):
    g = torch.Generator().manual_seed(7)
    return [arch_with_identities(space, ids, g) for ids in FORCED_IDENTITIES]


def _assert_exact(sn, archs, fold_bn=False):
    x = random_inputs(sn.config, 2, torch.float64, seed=3)
    for genes in archs:
        d = check_fold(sn, genes, fold_path(sn, genes, fold_bn=fold_bn), x)
        assert d.ok and d.max_rel < 1e-10, (genes, d)


def test_compose_is_lemma_4_1():
    torch.manual_seed(0)
    w_els = torch.randn(5, 3, 1, 1, dtype=torch.float64)
    w_next = torch.randn(4, 5, 3, 3, dtype=torch.float64)
    x = torch.randn(2, 3, 6, 6, dtype=torch.float64)
    folded = F.conv2d(x, compose(w_els, w_next), padding=1)
    torch.testing.assert_close(folded, F.conv2d(F.conv2d(x, w_els), w_next, padding=1), rtol=1e-12, atol=1e-12)


def test_forced_cases_cover_the_hard_layers():
    ids = {layer for run in FORCED_IDENTITIES for layer in run}
    assert set(STRIDE2_LAYERS) | set(CHANNEL_CHANGING_LAYERS) | {19} <= ids
    assert any(len(run) >= 3 for run in FORCED_IDENTITIES)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("space", SPACES)
def test_fold_is_exact_on_forced_and_random_archs(space, kind, supernet):
    sn = supernet(space, kind)
    archs = _forced(space) + random_archs(space, RANDOM_ARCHS_PER_KIND, seed=11 + KINDS.index(kind))
    _assert_exact(sn, archs)
    # the sweep met the cases that need care
    plans = [plan_fold(a, sn.config) for a in archs]
    shortcuts = {f.shortcut for p in plans for f in p.folds}
    assert {"none", "projection" if kind == "els" else "pad", "identity" if kind == "skip" else "none"} <= shortcuts
    assert any(f.into == "head.conv" for p in plans for f in p.folds)
    assert any(f.stride > 1 for p in plans for f in p.folds)


@pytest.mark.parametrize("kind", KINDS)
def test_fold_is_exact_where_every_channel_changing_layer_changes_width(kind, supernet):
    """Width 0.5 keeps layers 1 and 11 channel-changing (at 0.25 they round to in == out)."""
    sn = supernet("scarlet-s2", kind, 0.5)
    shapes = layer_shapes(sn.config)
    assert all(shapes[l - 1].in_channels != shapes[l - 1].out_channels for l in CHANNEL_CHANGING_LAYERS)
    g = torch.Generator().manual_seed(5)
    forced = [arch_with_identities("scarlet-s2", ids, g)
              for ids in [(1,), (1, 2), (11,), (11, 12), (10, 11, 12), (19,), (3, 4), (15, 16)]]
    _assert_exact(sn, forced + random_archs("scarlet-s2", 12, seed=5), fold_bn=kind == "els")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("space", SPACES)
def test_bn_folding_is_exact(space, kind, supernet):
    sn = supernet(space, kind)
    archs = _forced(space) + random_archs(space, 10, seed=23)
    _assert_exact(sn, archs, fold_bn=True)
    net = fold_path(sn, archs[0], fold_bn=True)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    projections = {id(b.shortcut) for b in net.blocks if isinstance(b, FoldedMBConv)}
    assert all(m.bias is not None for m in net.modules() if isinstance(m, nn.Conv2d) and id(m) not in projections)


def test_identity_before_residual_keeps_the_map_on_the_shortcut(supernet):
    """ELS at layer 5 (40 -> 40) feeding the residual block of layer 6: the shortcut carries ELS(x)."""
    sn = supernet("scarlet-s2", "els")
    g = torch.Generator().manual_seed(1)
    genes = arch_with_identities("scarlet-s2", (5,), g)
    net = fold_path(sn, genes)
    (fold,) = net.plan.folds
    assert (fold.layers, fold.into_layer, fold.shortcut) == ((5,), 6, "projection")
    block = net.get_submodule(fold.into.rsplit(".", 1)[0])
    torch.testing.assert_close(block.shortcut.weight, sn.layers[4][12].conv.weight, rtol=0, atol=0)
    assert check_fold(sn, genes, net).ok
    # without the projection (the paper's plain fold, identity shortcut) the network is not the supernet's
    block.shortcut_kind = "identity"
    assert not check_fold(sn, genes, net).ok


def test_plain_skip_shortcuts_pad_or_stay_identity(supernet):
    sn = supernet("scarlet-s1", "skip")
    g = torch.Generator().manual_seed(2)
    # layer 3 grows 8 -> 16 channels (width 0.25) and subsamples; layer 4 is a residual block
    plan = plan_fold(arch_with_identities("scarlet-s1", (3,), g), sn.config)
    assert [(f.into_layer, f.shortcut, f.in_channels, f.out_channels) for f in plan.folds] == [(4, "pad", 8, 16)]
    assert plan.projections == []
    plan = plan_fold(arch_with_identities("scarlet-s1", (5,), g), sn.config)
    assert [(f.into_layer, f.shortcut) for f in plan.folds] == [(6, "identity")]


def test_structure_is_rebuilt_from_arch_and_config(supernet):
    sn = supernet("scarlet-s2", "els")
    genes = random_archs("scarlet-s2", 1, seed=4)[0]
    for fold_bn in (False, True):
        net = fold_path(sn, genes, fold_bn=fold_bn)
        rebuilt = ExportedNet(genes, sn.config, fold_bn=fold_bn).double()
        rebuilt.load_state_dict(net.state_dict())
        x = random_inputs(sn.config, 2, torch.float64)
        torch.testing.assert_close(rebuilt.eval()(x), net.eval()(x), rtol=0, atol=0)


def test_fold_keeps_supernet_dtype_and_leaves_it_untouched(supernet):
    sn = supernet("scarlet-s1", "els")
    before = {k: v.clone() for k, v in sn.state_dict().items()}
    net = fold_path(sn, random_archs("scarlet-s1", 1, seed=9)[0], fold_bn=True)
    assert next(net.parameters()).dtype == torch.float64
    assert all(torch.equal(v, before[k]) for k, v in sn.state_dict().items())


def test_float32_fold_meets_its_tolerance(supernet):
    sn = supernet("scarlet-s2", "els")
    sn32 = Supernet(sn.config)
    sn32.load_state_dict(sn.state_dict())
    sn32.eval()
    for genes in random_archs("scarlet-s2", 5, seed=8):
        d = check_fold(sn32, genes, fold_path(sn32, genes, fold_bn=True))
        assert d.dtype == "float32" and d.ok, d


def test_els_relu_is_refused_naming_the_layer():
    sn = Supernet(tiny_config("scarlet-s1", "els-relu")).eval()
    g = torch.Generator().manual_seed(0)
    with pytest.raises(ScarletError, match=r"layer 7 .*ELS-ReLU.*not linear"):
        fold_path(sn, arch_with_identities("scarlet-s1", (7, 9), g))
    fold_path(sn, arch_with_identities("scarlet-s1", (), g))  # nothing to fold: fine
