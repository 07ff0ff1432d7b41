"""The single-process parts of scarlet.distributed: shards, work splits, the environment, SyncBatchNorm swaps."""

import pytest
import torch
from torch import nn

from scarlet import distributed
from scarlet.distributed import Distributed
from scarlet.errors import ScarletError
from scarlet.supernet import Supernet


def test_shards_of_a_global_batch_are_contiguous_disjoint_and_cover_it():
    ranks = [Distributed(rank=r, world_size=4) for r in range(4)]
    idx = torch.arange(16)
    assert torch.equal(torch.cat([idx[d.shard(16)] for d in ranks]), idx)
    with pytest.raises(ScarletError, match="global batch of 18 does not split into 4"):
        ranks[0].shard(18)


@pytest.mark.parametrize("n", [0, 1, 5, 7, 12])
def test_work_parts_differ_by_at_most_one_and_keep_the_order(n):
    parts = [list(range(n))[Distributed(rank=r, world_size=3).part(n)] for r in range(3)]
    assert sum(parts, []) == list(range(n))
    assert max(map(len, parts)) - min(map(len, parts)) <= 1


def test_single_process_map_and_step_are_local():
    single = Distributed()
    assert single.map(lambda xs: [x * 2 for x in xs], [1, 2, 3]) == [2, 4, 6]
    losses = torch.tensor([1.0, 2.0])
    assert distributed.average_step(nn.Linear(2, 2), losses, single) is losses


@pytest.mark.parametrize("env,message", [
    ({"WORLD_SIZE": "two"}, "WORLD_SIZE='two' is not an integer"),
    ({"WORLD_SIZE": "2"}, "RANK is not"),
    ({"WORLD_SIZE": "2", "RANK": "2"}, "RANK=2 is outside 0..1"),
])
def test_a_bad_torchrun_environment_is_one_line(monkeypatch, env, message):
    for key in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ScarletError, match=message):
        distributed.setup("cpu")


def test_without_torchrun_it_is_one_process(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    d = distributed.setup("cpu")
    assert (d.rank, d.world_size, d.is_main, d.parallel, d.device.type) == (0, 1, True, False, "cpu")
    with pytest.raises(ScarletError, match="--dist-timeout must be positive"):
        distributed.setup("cpu", timeout_s=0)


def test_sync_batchnorm_round_trip_keeps_parameters_buffers_and_outputs():
    torch.manual_seed(0)
    model = Supernet(space="fairnas", width=0.125, resolution=16, num_classes=5)
    params = {n: p for n, p in model.named_parameters()}
    x, arch = torch.randn(2, 3, 16, 16), [0] * 19
    before = model.eval()(x, arch)
    nn.SyncBatchNorm.convert_sync_batchnorm(model)
    assert any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    distributed.drop_sync_batchnorm(model)
    assert not any(isinstance(m, nn.SyncBatchNorm) for m in model.modules())
    assert all(p is params[n] for n, p in model.named_parameters())  # the optimizer's parameters, untouched
    torch.testing.assert_close(model.eval()(x, arch), before, rtol=0, atol=0)
