"""GPU only: CUDA graph replay and scarlet_kernels inside the batched step (skipped without CUDA)."""

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


@pytest.mark.parametrize("autocast", [None, torch.bfloat16])
def test_kernels_match_pytorch_ops(autocast):
    ref, got = pair("scarlet-s2", "els", dtype=torch.float32)
    ref, got = ref.cuda(), got.cuda()
    images, labels = _batch(ref, 0)
    perms = fair_perms("scarlet-s2", seed=0)
    a = make_step("batched", ref, None, kernels="off", cuda_graph=False, autocast_dtype=autocast)(images, labels, perms)
    b = make_step("batched", got, None, kernels="on", cuda_graph=False, autocast_dtype=autocast)(images, labels, perms)
    tol = 1e-4 if autocast is None else 3e-2
    assert global_relative_difference([a], [b]) < tol
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
