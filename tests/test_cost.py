import json
import subprocess
import sys

import pytest
import torch

from scarlet import parse_arch
from scarlet.cost import CostModel
from scarlet.standalone import StandaloneNet
from scarlet.supernet import SupernetConfig

# Papers' tables: (MAdds, params) at 224x224, 1000 classes.
PUBLISHED = {"scarlet-a": (365e6, 6.7e6), "scarlet-b": (329e6, 6.5e6), "scarlet-c": (280e6, 6.0e6),
             "fairnas-a": (388e6, 4.6e6), "fairnas-b": (345e6, 4.5e6), "fairnas-c": (321e6, 4.4e6)}
SPACE = {"scarlet": "scarlet-s2", "fairnas": "fairnas"}


@pytest.mark.parametrize("name", list(PUBLISHED))
def test_published_figures(name):
    space = SPACE[name.split("-")[0]]
    madds, params = CostModel(SupernetConfig(space=space)).cost(parse_arch(name, space))
    pub_m, pub_p = PUBLISHED[name]
    assert abs(madds - pub_m) / pub_m < 0.01, madds
    assert abs(params - pub_p) / pub_p < 0.02, params


def fvcore_count(model, resolution, in_channels):
    from fvcore.nn import FlopCountAnalysis

    x = torch.zeros(1, in_channels, resolution, resolution)
    flops = FlopCountAnalysis(model.eval(), x)
    flops.unsupported_ops_warnings(False)
    flops.uncalled_modules_warnings(False)
    by_op = flops.by_operator()
    return by_op.get("conv", 0) + by_op.get("linear", 0) + by_op.get("addmm", 0)


def random_archs(space, n, seed):
    from scarlet.space import get_space

    s = get_space(space)
    g = torch.Generator().manual_seed(seed)
    archs = [torch.randint(s.num_choices, (19,), generator=g).tolist() for _ in range(n)]
    if s.identity_index is not None:  # identities on stride-2, channel-changing, last and consecutive layers
        i = s.identity_index
        archs.append([i if l in (0, 2, 6, 10, 14, 18) else 0 for l in range(19)])
        archs.append([i] * 19)
        archs.append([i if 3 <= l <= 12 else s.num_choices - 2 for l in range(19)])
    return archs


@pytest.mark.parametrize("space", ["fairnas", "scarlet-s1", "scarlet-s2"])
def test_cost_tables_agree_with_fvcore_and_parameter_count(space):
    config = SupernetConfig(space=space, width=0.5, resolution=64, num_classes=10, in_channels=3)
    cost = CostModel(config)
    for genes in random_archs(space, 4, seed=1):
        net = StandaloneNet(parse_arch(genes, space), config)
        madds, params = cost.cost(genes)
        assert madds == fvcore_count(net, 64, 3), genes
        assert params == sum(p.numel() for p in net.parameters()), genes


def test_published_architecture_matches_fvcore_at_full_size():
    config = SupernetConfig(space="scarlet-s2")
    net = StandaloneNet(parse_arch("scarlet-c", "scarlet-s2"), config)
    assert CostModel(config).madds(net.arch) == fvcore_count(net, 224, 3)


def test_identity_folds_into_next_conv_width():
    config = SupernetConfig(space="scarlet-s1")
    cost = CostModel(config)
    base = [0] * 19
    with_id = list(base)
    with_id[2] = 6  # layer 3 (32->40, stride 2) becomes identity: layer 4 now takes 32 channels at 28x28
    d_madds = cost.madds(base) - cost.madds(with_id)
    hidden3, hidden4 = 32 * 3, 40 * 3
    layer3 = 32 * hidden3 * 56 * 56 + hidden3 * 9 * 28 * 28 + hidden3 * 40 * 28 * 28
    layer4_saving = (40 - 32) * hidden4 * 28 * 28
    assert d_madds == layer3 + layer4_saving


def test_cost_cli_json_and_errors():
    out = subprocess.run([sys.executable, "-m", "scarlet.cost", "scarlet-a", "--json"], capture_output=True,
                         text=True, check=True)
    d = json.loads(out.stdout)
    assert isinstance(d["madds"], int) and isinstance(d["params"], int) and abs(d["madds"] - 365e6) < 3.65e6
    bad = subprocess.run([sys.executable, "-m", "scarlet.cost", "1,2,3", "--space", "scarlet-s1"],
                         capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "3 layers" in bad.stderr
    assert "Traceback" not in bad.stderr
