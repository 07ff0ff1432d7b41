"""A 2-rank training step is the one-process step over the same global batch with BN statistics per half.

Each rank trains the step's paths on its half of the global batch and the gradients are averaged once, so the
reference is: for each path, the mean of the two halves' losses, each half forwarded on its own (its own BN batch
statistics), backward, accumulate; one update. Checked in float64 for the gradients, the losses and the weights
after two SGD-with-momentum steps; the BN running statistics are the average of what each half alone gives.

The first step's gradients agree to rounding (1e-16 relative for the sequential executor, 1e-12 for the
batched one, which orders its sums differently). The weights after the second step agree to about
1e-10: the two computations add the same terms in different orders, and BatchNorm over 4-image shards at 1x1
spatial size in the deep layers amplifies that rounding in the second step's gradients; a real error (a missing
or doubled all-reduce, a wrong shard) is of the size of the update itself, 1e-3 and more.
"""

from collections import Counter

import torch
import torch.distributed as tdist
import torch.nn.functional as F
from ranks import launch

from scarlet.distributed import DataParallelStep
from scarlet.executor import make_step
from scarlet.fair_step import sequential_step
from scarlet.samplers import make_sampler
from scarlet.supernet import Supernet, SupernetConfig

CONFIG = SupernetConfig(space="fairnas", width=0.125, resolution=16, in_channels=3, num_classes=5)
BATCH, STEPS = 8, 2
# (executor, sampler): strict fairness with both executors; SPOS trains one path (unused choices have no gradient)
CASES = [("sequential", "fair"), ("batched", "fair"), ("sequential", "uniform")]
COLLECTIVES = ("all_reduce", "all_gather", "all_gather_object", "all_gather_into_tensor", "broadcast",
               "broadcast_object_list", "reduce_scatter", "reduce_scatter_tensor", "barrier", "reduce", "scatter")


def make_case(sampler_name):
    torch.manual_seed(0)
    model = Supernet(CONFIG).double()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.002, momentum=0.9, weight_decay=1e-3)
    sampler = make_sampler(sampler_name, CONFIG.space, seed=3)
    gen = torch.Generator().manual_seed(1)
    data = [(torch.randn(BATCH, 3, 16, 16, generator=gen, dtype=torch.float64),
             torch.randint(CONFIG.num_classes, (BATCH,), generator=gen)) for _ in range(STEPS)]
    return model, optimizer, data, [sampler.permutations() for _ in range(STEPS)]


def bn_stats(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k}


def _worker(dist, out_dir):
    counts = Counter()
    for name in COLLECTIVES:  # count every collective the step makes
        real = getattr(tdist, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            counts[_name] += 1
            return _real(*args, **kwargs)

        setattr(tdist, name, counted)
    results = {}
    for executor, sampler in CASES:
        model, optimizer, data, perms = make_case(sampler)
        step = DataParallelStep(make_step(executor, model, None), model, optimizer, dist)
        counts.clear()
        for s, (x, y) in enumerate(data):
            part = dist.shard(BATCH)
            losses = step(x[part], y[part], perms[s])
            if s == 0:
                first = {"losses": losses.clone(), "bn": bn_stats(model),
                         "grads": {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}}
        results[(executor, sampler)] = {**first, "counts": dict(counts),
                                        "weights": {n: p.detach().clone() for n, p in model.named_parameters()}}
    torch.save(results, out_dir / f"rank{dist.rank}.pt")


def reference(sampler):
    """One process, the global batch in two halves with their own BN statistics, one update per step."""
    model, optimizer, data, perms = make_case(sampler)
    halves = (slice(0, BATCH // 2), slice(BATCH // 2, BATCH))
    for s, (x, y) in enumerate(data):
        model.train()
        optimizer.zero_grad(set_to_none=True)
        losses = []
        for k in range(perms[s].shape[1]):
            arch = perms[s][:, k].tolist()
            loss = sum(F.cross_entropy(model(x[h], arch), y[h]) for h in halves) / 2
            loss.backward()
            losses.append(loss.detach())
        if s == 0:
            grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
            first_losses = torch.stack(losses)
        optimizer.step()
    weights = {n: p.detach().clone() for n, p in model.named_parameters()}
    # BN running statistics: each half on its own copy of the initial model, then averaged.
    per_half = []
    for h in halves:
        copy, _, data, perms = make_case(sampler)
        sequential_step(copy, data[0][0][h], data[0][1][h], perms[0], None)
        per_half.append(bn_stats(copy))
    bn = {k: (per_half[0][k] + per_half[1][k]) / 2 for k in per_half[0]}
    return {"grads": grads, "losses": first_losses, "weights": weights, "bn": bn}


def relative_error(a, b):
    """Largest difference relative to the tensor's scale (absolute below 1: some gradients are exactly zero in
    exact arithmetic, BN biases followed by another BN, and rounding noise in float64)."""
    return ((a - b).abs().max() / b.abs().max().clamp_min(1.0)).item()


def test_two_rank_step_equals_one_process_step_over_the_global_batch(tmp_path):
    launch(_worker, 2, tmp_path)
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]
    for case in CASES:
        got, other = ranks[0][case], ranks[1][case]
        # one all-reduce per step, after all the paths' backward passes; no other collective
        assert got["counts"] == {"all_reduce": STEPS}, (case, got["counts"])
        for key in ("grads", "weights", "bn"):  # every rank holds exactly the same state
            for name in got[key]:
                assert torch.equal(got[key][name], other[key][name]), (case, key, name)
        ref = reference(case[1])
        assert got["grads"].keys() == ref["grads"].keys(), case
        if case[1] == "uniform":
            assert len(ref["grads"]) < len(dict(Supernet(CONFIG).named_parameters())), "SPOS leaves choices unused"
        for name in ref["grads"]:
            assert relative_error(got["grads"][name], ref["grads"][name]) < 1e-10, (case, "grad", name)
        for name in ref["weights"]:
            assert relative_error(got["weights"][name], ref["weights"][name]) < 1e-8, (case, "weight", name)
        torch.testing.assert_close(got["losses"], ref["losses"].float(), rtol=1e-6, atol=0)
        for name in ref["bn"]:
            assert relative_error(got["bn"][name], ref["bn"][name]) < 1e-10, (case, "BN", name)
