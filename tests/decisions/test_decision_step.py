import copy

import pytest
import torch
import torch.nn.functional as F
from decision_cases import narrow_space

from scarlet.decisions.arch import random_decision_arch
from scarlet.decisions.step import sequential_k_path_step
from scarlet.decisions.supernet import DecisionSupernet
from scarlet.errors import ScarletError


def _setup(k=3):
    space = narrow_space("proxylessnas")
    torch.manual_seed(0)
    model = DecisionSupernet(space, num_classes=4).double()
    g = torch.Generator().manual_seed(1)
    archs = [random_decision_arch(space, g) for _ in range(k)]
    images = torch.randn(2 * k, 3, 32, 32, generator=g, dtype=torch.float64)
    labels = torch.randint(4, (2 * k,), generator=g)
    return model, archs, images, labels


def _grads(model):
    return {n: (p.grad if p.grad is not None else torch.zeros_like(p)) for n, p in model.named_parameters()}


def test_k_paths_accumulate_the_mean_of_their_micro_batch_gradients_and_update_once():
    model, archs, images, labels = _setup()
    start = copy.deepcopy(model)
    # reference: each path's gradient on its own micro-batch, from the same starting weights
    per_path = []
    for arch, x, y in zip(archs, images.chunk(3), labels.chunk(3)):
        m = copy.deepcopy(start).train()
        F.cross_entropy(m(x, arch), y).backward()
        per_path.append(_grads(m))
    expected = {n: sum(g[n] for g in per_path) / 3 for n in per_path[0]}

    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = sequential_k_path_step(model, images, labels, archs, opt)
    assert losses.shape == (3,)
    for n, p in model.named_parameters():
        torch.testing.assert_close(p.grad if p.grad is not None else torch.zeros_like(p), expected[n], msg=n)
        torch.testing.assert_close(p.detach(), dict(start.named_parameters())[n].detach() - 0.1 * expected[n], msg=n)
    # every path updated the running statistics of the BN channels it used, in path order
    with torch.no_grad():
        start.train()
        for arch, x in zip(archs, images.chunk(3)):
            start(x, arch)
    for (n, b), (_, ref) in zip(model.named_buffers(), start.named_buffers()):
        torch.testing.assert_close(b, ref, msg=n)


def test_sum_over_the_whole_batch_is_the_fairnas_form():
    model, archs, images, labels = _setup(k=2)
    start = copy.deepcopy(model)
    sequential_k_path_step(model, images, labels, archs, None, micro_batches=False, reduction="sum")
    total = sum(F.cross_entropy(start(images, a), labels) for a in archs)
    total.backward()
    for (n, p), (_, q) in zip(model.named_parameters(), start.named_parameters()):
        torch.testing.assert_close(p.grad if p.grad is not None else torch.zeros_like(p),
                                   q.grad if q.grad is not None else torch.zeros_like(q), msg=n)


def test_bad_step_arguments_are_one_line_errors():
    model, archs, images, labels = _setup(k=4)
    with pytest.raises(ScarletError, match="batch of 8 images does not split into 3 equal micro-batches"):
        sequential_k_path_step(model, images, labels, archs[:3], None)
    with pytest.raises(ScarletError, match="reduction must be 'mean' or 'sum'"):
        sequential_k_path_step(model, images, labels, archs, None, reduction="max")
