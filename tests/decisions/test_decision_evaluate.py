import copy

import torch
import torch.nn.functional as F
from decision_cases import narrow_space

from scarlet.decisions.arch import random_decision_arch
from scarlet.decisions.evaluate import evaluate_archs, recalibrate_bn
from scarlet.decisions.supernet import DecisionSupernet


def _data(g, n_batches, classes=4):
    return [(torch.randn(4, 3, 32, 32, generator=g, dtype=torch.float64), torch.randint(classes, (4,), generator=g))
            for _ in range(n_batches)]


def test_recalibration_is_the_average_of_the_calibration_batch_statistics():
    space = narrow_space("mobilenetv3-like")
    g = torch.Generator().manual_seed(0)
    net = DecisionSupernet(space, 4).double().build_standalone(random_decision_arch(space, g))
    calib = _data(g, 3)
    recalibrate_bn(net, calib)
    stem = net.layers[0]
    outs = [F.conv2d(x, stem.conv.weight, None, 2, stem.conv.kernel_size[0] // 2) for x, _ in calib]
    mean = torch.stack([o.mean((0, 2, 3)) for o in outs]).mean(0)
    var = torch.stack([o.var((0, 2, 3), unbiased=True) for o in outs]).mean(0)
    torch.testing.assert_close(stem.bn.running_mean, mean)
    torch.testing.assert_close(stem.bn.running_var, var)
    assert not net.training


def test_evaluate_archs_leaves_the_supernet_untouched_and_scores_with_batch_statistics():
    space = narrow_space("fbnetv2-f")
    g = torch.Generator().manual_seed(1)
    supernet = DecisionSupernet(space, 4).double()
    before = copy.deepcopy(supernet.state_dict())
    archs = [random_decision_arch(space, g) for _ in range(2)]
    calib, val = _data(g, 2), _data(g, 2)
    recal = evaluate_archs(supernet, archs, calib, val)
    assert all(0.0 <= a <= 1.0 for a in recal)
    for k, v in supernet.state_dict().items():
        assert torch.equal(v, before[k]), k
    # batch statistics: the supernet path in train mode scores the same predictions
    stateless = evaluate_archs(supernet, archs, [], val, batch_statistics=True)
    work = copy.deepcopy(supernet).train()
    with torch.no_grad():
        expected = [sum((work(x, a).argmax(1) == y).sum().item() for x, y in val) / 8 for a in archs]
    assert stateless == expected
