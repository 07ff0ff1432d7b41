"""GPU only: CUDA graph replay and scarlet_kernels inside the batched step (skipped without CUDA)."""

import collections
import warnings

import pytest
import torch

from executor_cases import fair_perms, global_relative_difference, pair
from scarlet.executor import evaluate_batched, evaluate_one_by_one, make_step
from scarlet.executor.memory import default_paths_in_flight

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _batch(model, seed):
    g = torch.Generator().manual_seed(seed)
    cfg = model.config
    images = torch.randn(8, cfg.in_channels, cfg.resolution, cfg.resolution, generator=g)
    return images.cuda(), torch.randint(cfg.num_classes, (8,), generator=g).cuda()


@pytest.mark.parametrize("tensor_lr", [False, True])
def test_graph_replay_matches_sequential(tensor_lr):
    ref, got = pair("scarlet-s2", "els", dtype=torch.float32)
    ref, got = ref.cuda(), got.cuda()

    def opt(model):
        lr = torch.tensor(0.01, device="cuda") if tensor_lr else 0.01
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=4e-5)

    seq = make_step("sequential", ref, opt(ref))
    bat = make_step("batched", got, opt(got), cuda_graph=True, warmup_steps=2)
    with pytest.warns(UserWarning) if not tensor_lr else _nothing():
        for i in range(6):
            images, labels = _batch(ref, i)
            perms = fair_perms("scarlet-s2", seed=i, forced=())
            l_ref, l_got = seq(images, labels, perms), bat(images, labels, perms)
            assert global_relative_difference([l_ref], [l_got]) < 1e-4
    assert bat._graph is not None  # replayed, not silently eager
    assert global_relative_difference(list(ref.parameters()), list(got.parameters())) < 1e-4
    fb = lambda m: [b for b in m.buffers() if b.is_floating_point()]  # noqa: E731
    assert global_relative_difference(fb(ref), fb(got)) < 1e-4


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def count_kernel_launches(monkeypatch) -> collections.Counter:
    """Counts every fast-kernel call that returned, as (backend, function): scarlet_kernels looks its backend's
    kernel module up through ``backend.kernels`` at each launch, so a wrapper there sees them all."""
    from scarlet_kernels import backend

    launches = collections.Counter()
    real = backend.kernels

    class Counting:
        def __init__(self, name):
            self.name, self.module = name, real(name)

        def __getattr__(self, attr):
            fn = getattr(self.module, attr)

            def call(*args, **kwargs):
                out = fn(*args, **kwargs)
                launches[(self.name, attr)] += 1
                return out
            return call

    monkeypatch.setattr(backend, "kernels", Counting)
    return launches


@pytest.mark.parametrize("autocast", [None, torch.bfloat16])
def test_kernels_run_and_match_pytorch_ops(autocast, monkeypatch):
    launches = count_kernel_launches(monkeypatch)
    ref, got = pair("scarlet-s2", "els", dtype=torch.float32)
    ref, got = ref.cuda(), got.cuda()
    off = make_step("batched", ref, None, kernels="off", cuda_graph=False, autocast_dtype=autocast)
    on = make_step("batched", got, None, kernels="on", cuda_graph=False, autocast_dtype=autocast)
    tol = 1e-4 if autocast is None else 3e-2
    forward = [(name, "depthwise_forward") for name in ("cuda", "triton")]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for step in range(2):  # the second step passes the same cached kernel-size tensors again
            images, labels = _batch(ref, step)
            perms = fair_perms("scarlet-s2", seed=step)
            before = sum(launches[k] for k in forward)
            assert global_relative_difference([off(images, labels, perms)], [on(images, labels, perms)]) < tol
            assert sum(launches[k] for k in forward) > before, f"step {step}: the masked depthwise kernel did not run"
    assert not [w for w in caught if "scarlet_kernels" in str(w.message)], [str(w.message) for w in caught]
    assert sum(n for (_, fn), n in launches.items() if fn.startswith("depthwise_backward")) > 0
    grads = lambda m: [p.grad for p in m.parameters()]  # noqa: E731
    assert global_relative_difference(grads(ref), grads(got)) < (1e-3 if autocast is None else 5e-2)


def test_default_paths_in_flight_and_evaluation_on_gpu():
    model, _ = pair("scarlet-s2", "els", dtype=torch.float32)
    model = model.cuda()
    images, _ = _batch(model, 0)
    assert 1 <= default_paths_in_flight(model, images, 13) <= 13
    archs = [fair_perms("scarlet-s2", seed=1)[:, k].tolist() for k in range(4)]
    data = [_batch(model, i) for i in range(2)]
    assert evaluate_batched(model, archs, data[:1], data[1:]) == evaluate_one_by_one(model, archs, data[:1], data[1:])
