"""TF-style RMSProp against its update equations, and which parameters weight decay falls on."""

import copy
import math

import pytest
import torch
from torch import nn

from scarlet.optim import RMSpropTF, decay_groups

GRADS = [[0.5, -2.0, 0.0], [1.5, 0.25, -0.75], [-1.0, 3.0, 0.1], [0.2, -0.4, 2.5]]
LRS = [0.1, 0.05, 0.2, 0.01]  # changing between steps: TF keeps lr inside the momentum buffer


def tf_rmsprop_by_hand(w0, grads, lrs, decay, momentum, eps, weight_decay):
    """TF1 ApplyRMSProp written out per element with Python floats: ms starts at 1, mom at 0."""
    w, ms, mom = list(w0), [1.0] * len(w0), [0.0] * len(w0)
    history = []
    for grad, lr in zip(grads, lrs, strict=True):
        for i in range(len(w)):
            g = grad[i] + weight_decay * w[i]
            ms[i] = decay * ms[i] + (1 - decay) * g * g
            mom[i] = momentum * mom[i] + lr * g / math.sqrt(ms[i] + eps)
            w[i] = w[i] - mom[i]
        history.append(list(w))
    return history


@pytest.mark.parametrize("momentum,weight_decay", [(0.9, 0.0), (0.9, 0.1), (0.0, 0.0)])
def test_rmsprop_tf_follows_the_tf_update_equations_step_by_step(momentum, weight_decay):
    w0 = [1.0, -0.5, 2.0]
    w = nn.Parameter(torch.tensor(w0, dtype=torch.float64))
    opt = RMSpropTF([w], lr=LRS[0], momentum=momentum, weight_decay=weight_decay)  # decay 0.9, eps 1e-3
    want = tf_rmsprop_by_hand(w0, GRADS, LRS, 0.9, momentum, 1e-3, weight_decay)
    for grad, lr, expected in zip(GRADS, LRS, want, strict=True):
        opt.param_groups[0]["lr"] = lr
        w.grad = torch.tensor(grad, dtype=torch.float64)
        opt.step()
        torch.testing.assert_close(w.detach(), torch.tensor(expected, dtype=torch.float64), rtol=1e-12, atol=1e-12)


def test_rmsprop_tf_resumes_exactly_from_its_state_dict():
    torch.manual_seed(0)
    a, b = nn.Linear(3, 2), nn.Linear(3, 2)
    b.load_state_dict(a.state_dict())
    opt_a = RMSpropTF(a.parameters(), lr=0.01, weight_decay=1e-5)
    grads = [[torch.randn_like(p) for p in a.parameters()] for _ in range(4)]

    def step(model, opt, gs):
        for p, g in zip(model.parameters(), gs, strict=True):
            p.grad = g.clone()
        opt.step()

    for gs in grads[:2]:
        step(a, opt_a, gs)
    b.load_state_dict(a.state_dict())
    opt_b = RMSpropTF(b.parameters(), lr=0.5)
    opt_b.load_state_dict(copy.deepcopy(opt_a.state_dict()))  # as from a checkpoint: no shared buffers
    for gs in grads[2:]:
        step(a, opt_a, gs)
        step(b, opt_b, gs)
    for p, q in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(p, q)


@pytest.mark.parametrize("kwargs", [dict(lr=-1.0), dict(lr=0.1, decay=1.0), dict(lr=0.1, momentum=1.5),
                                    dict(lr=0.1, eps=0.0), dict(lr=0.1, weight_decay=float("nan"))])
def test_rmsprop_tf_rejects_meaningless_settings(kwargs):
    with pytest.raises(ValueError, match="RMSpropTF: invalid"):
        RMSpropTF([nn.Parameter(torch.zeros(1))], **kwargs)


class _Tiny(nn.Module):
    """Every kind of parameter the networks have: conv kernels, BN scale and shift, SE conv biases, a classifier."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, bias=False)
        self.bn = nn.BatchNorm2d(4)
        self.se = nn.Conv2d(4, 4, 1, bias=True)
        self.classifier = nn.Linear(4, 3)


@pytest.mark.parametrize("on,decayed", [
    ("all", {"conv.weight", "bn.weight", "bn.bias", "se.weight", "se.bias", "classifier.weight", "classifier.bias"}),
    ("weights", {"conv.weight", "se.weight", "classifier.weight"}),
    ("conv", {"conv.weight", "se.weight"}),
])
def test_decay_groups_select_the_parameters(on, decayed):
    model = _Tiny()
    groups = decay_groups(model, 4e-5, on)
    names = {id(p): n for n, p in model.named_parameters()}
    got = {g["weight_decay"]: {names[id(p)] for p in g["params"]} for g in groups}
    assert got[4e-5] == decayed
    assert got.get(0.0, set()) == set(names.values()) - decayed
    with pytest.raises(ValueError, match="weight decay must apply to one of all, weights, conv"):
        decay_groups(model, 4e-5, "bn")


def test_decay_groups_reach_the_update():
    model = _Tiny()
    opt = torch.optim.SGD(decay_groups(model, 0.5, "weights"), lr=1.0)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()  # zero gradients: only decay moves a parameter, w <- w - lr * 0.5 * w
    for n, p in model.named_parameters():
        factor = 0.5 if n in ("conv.weight", "se.weight", "classifier.weight") else 1.0
        torch.testing.assert_close(p.detach(), before[n] * factor, msg=n)


def _run(*flags):
    from scarlet.train import Run, _resolve_config, build_parser

    parser = build_parser()
    cfg = _resolve_config(parser.parse_args(["--width", "0.125", "--resolution", "16", *flags]))
    return Run(cfg, torch.device("cpu")), cfg


def _decay_of(run, module_type, attr):
    """The weight decay the optimizer applies to ``attr`` of the first module of ``module_type``."""
    param = getattr(next(m for m in run.model.modules() if isinstance(m, module_type)), attr)
    return next(g["weight_decay"] for g in run.optimizer.param_groups if any(p is param for p in g["params"]))


def test_training_runs_use_the_configured_decay_and_tf_rmsprop_for_standalone():
    supernet, _ = _run()
    assert type(supernet.optimizer) is torch.optim.SGD
    assert _decay_of(supernet, nn.BatchNorm2d, "weight") == 0.0 and _decay_of(supernet, nn.Conv2d, "weight") == 4e-5
    standalone, _ = _run("--arch", "scarlet-c", "--weight-decay-on", "conv")
    assert type(standalone.optimizer) is RMSpropTF
    assert _decay_of(standalone, nn.Linear, "weight") == 0.0 and _decay_of(standalone, nn.Conv2d, "weight") == 1e-5
    old, cfg = _run("--space", "fairnas")
    del cfg["weight_decay_on"]  # a run saved before the option existed resumes with decay on every parameter
    from scarlet.train import Run

    assert _decay_of(Run(cfg, torch.device("cpu")), nn.BatchNorm2d, "bias") == 4e-5
