"""StandaloneNet reads an architecture in its own space unless a config names another."""

import pytest
from torch import nn

from scarlet import SupernetConfig, parse_arch
from scarlet.standalone import StandaloneNet


def _activations(net):
    return {type(m) for m in net.blocks.modules() if isinstance(m, (nn.Hardswish, nn.ReLU6))}


@pytest.mark.parametrize("name", ["fairnas-a", " FairNAS-C "])
def test_named_fairnas_archs_are_built_in_the_fairnas_space(name):
    net = StandaloneNet(name, width=0.25)
    assert net.config.space == "fairnas" and net.arch.space == "fairnas"
    assert net.arch == parse_arch(name, "fairnas")
    assert _activations(net) == {nn.ReLU6}  # FairNAS blocks, not the h-swish blocks of scarlet-s2


def test_other_architectures_keep_their_space_or_scarlet_s2():
    assert StandaloneNet("scarlet-b", width=0.25).config.space == "scarlet-s2"
    assert StandaloneNet(",".join(["0"] * 19), width=0.25).config.space == "scarlet-s2"
    s1 = parse_arch(",".join(["1"] * 19), "scarlet-s1")
    assert StandaloneNet(s1, width=0.25).config.space == "scarlet-s1"


def test_an_explicit_config_names_the_space():
    net = StandaloneNet("fairnas-a", SupernetConfig(space="scarlet-s2", width=0.25))
    assert net.config.space == "scarlet-s2" and _activations(net) == {nn.Hardswish}
