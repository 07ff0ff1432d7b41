"""Shared fixtures of the executor tests: tiny supernets, batches, permutations and norm-scaled comparisons."""

from __future__ import annotations

import copy

import torch

from scarlet.samplers import FairSampler
from scarlet.supernet import Supernet

# (path, 1-based layers) forced to the identity: stride-2 and channel-changing layers, and a chain of skips.
FORCED_IDENTITY = ((0, (1, 7, 11, 15, 19)), (1, (2, 3, 4, 5, 6)), (2, (3, 19)))

SPACE_SKIPS = [("fairnas", "els"), ("scarlet-s1", "els"), ("scarlet-s1", "skip"), ("scarlet-s1", "els-relu"),
               ("scarlet-s2", "els"), ("scarlet-s2", "skip"), ("scarlet-s2", "els-relu")]


def tiny_model(space="scarlet-s2", skip="els", dtype=torch.float64, seed=0, **overrides) -> Supernet:
    torch.manual_seed(seed)
    # 32x32 with stem stride 1 ends at 2x2: every BN sees at least 16 values per channel (well conditioned).
    cfg = dict(space=space, skip=skip, width=0.1, resolution=32, stem_stride=1, in_channels=2, num_classes=10)
    cfg.update(overrides)
    model = Supernet(**cfg)
    # Non-trivial BN affine parameters and running statistics, so that every term of the comparison matters.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.num_batches_tracked.fill_(3)
    return model.to(dtype)  # after drawing: the same model in every dtype


def pair(space="scarlet-s2", skip="els", dtype=torch.float64, **overrides) -> tuple[Supernet, Supernet]:
    model = tiny_model(space, skip, dtype, **overrides)
    return model, copy.deepcopy(model)


def batch(model: Supernet, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    dtype = next(model.parameters()).dtype
    images = torch.randn(n, cfg.in_channels, cfg.resolution, cfg.resolution, generator=g).to(dtype)
    labels = torch.randint(cfg.num_classes, (n,), generator=g)
    return images, labels


def fair_perms(space: str, seed: int = 0, forced=FORCED_IDENTITY) -> torch.Tensor:
    """Strict-fair permutations (layers, m) with some paths forced onto the skip choice."""
    sampler = FairSampler(space, seed)
    perms = sampler.permutations()
    identity = sampler.space.identity_index
    if identity is None:
        return perms
    for path, layers in forced:
        for layer in layers:
            row = perms[layer - 1]
            other = int((row == identity).nonzero()[0])
            row[path], row[other] = int(row[other]), int(row[path])
    return perms


def sgd(model, lr=0.05):
    return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=4e-5)


def assert_close(ref: torch.Tensor, got: torch.Tensor, rtol: float, floor: float = 0.0, what: str = ""):
    """|got - ref| <= rtol * max(|ref|, floor) in the Frobenius norm (never element-wise relative error)."""
    ref, got = ref.detach().double(), got.detach().double()
    assert ref.shape == got.shape, what
    err = (got - ref).norm().item()
    bound = rtol * max(ref.norm().item(), floor)
    assert err <= bound, f"{what}: |diff| {err:.3e} > {bound:.3e} (|ref| {ref.norm().item():.3e})"


def grad_floor(model: Supernet, fraction: float = 1e-3) -> float:
    """``fraction`` of the model's typical (RMS over tensors) gradient norm: gradients below it are zero up to
    rounding (a BN bias followed by BN)."""
    norms = [p.grad.double().norm().item() for p in model.parameters() if p.grad is not None]
    return fraction * (sum(n * n for n in norms) / max(len(norms), 1)) ** 0.5


def global_relative_difference(ref: list[torch.Tensor], got: list[torch.Tensor]) -> float:
    """|got - ref| / |ref| over all tensors together."""
    num = sum(((g.detach().double() - r.detach().double()) ** 2).sum() for r, g in zip(ref, got))
    den = sum((r.detach().double() ** 2).sum() for r in ref)
    return (num / den).sqrt().item()


def assert_models_match(ref: Supernet, got: Supernet, rtol: float, grads: bool = True, floor_fraction=1e-3):
    """Parameters, gradients (if ``grads``) and every buffer agree, each within rtol of its own norm.

    Gradients that are zero up to rounding (a BN bias followed by BN) are compared against a floor of 1e-3 times
    the typical gradient norm of the model.
    """
    ref_params, got_params = dict(ref.named_parameters()), dict(got.named_parameters())
    floor = grad_floor(ref, floor_fraction)
    for name, p in ref_params.items():
        q = got_params[name]
        assert_close(p, q, rtol, what=f"param {name}")
        if grads:
            assert (p.grad is None) == (q.grad is None), f"grad presence of {name}"
            if p.grad is not None:
                assert_close(p.grad, q.grad, rtol, floor, what=f"grad {name}")
    got_buffers = dict(got.named_buffers())
    for name, b in ref.named_buffers():
        if b.dtype == torch.int64:
            assert torch.equal(b, got_buffers[name]), f"buffer {name}: {b} vs {got_buffers[name]}"
        else:
            assert_close(b, got_buffers[name], rtol, what=f"buffer {name}")


def assert_optimizers_match(ref: torch.optim.Optimizer, got: torch.optim.Optimizer, rtol: float, floor: float):
    """Optimizer state tensors (momentum buffers) agree; ``floor`` as for gradients (:func:`grad_floor`)."""
    for (pr, sr), (pg, sg) in zip(ref.state.items(), got.state.items()):
        for key, value in sr.items():
            if isinstance(value, torch.Tensor):
                assert_close(value, sg[key], rtol, floor, what=f"optimizer state {key}")
