"""When the batched step may replay a CUDA graph, decided without a GPU (fakes stand in for CUDA tensors)."""

import types
import warnings

import torch

from executor_cases import tiny_model
from scarlet.executor.step import BatchedStep, optimizer_capturable

CUDA_BATCH = types.SimpleNamespace(is_cuda=True)  # all _graph_possible reads of the images


def test_only_capturable_optimizers_with_a_tensor_lr_go_into_the_graph():
    params = [torch.nn.Parameter(torch.zeros(2))]
    lr = torch.tensor(0.1)
    # SGD has no capturable flag and turns a tensor lr into a number (a host sync) inside step()
    assert not optimizer_capturable(torch.optim.SGD(params, lr=lr, momentum=0.9))
    assert not optimizer_capturable(torch.optim.Adam(params, lr=0.1, capturable=True))  # a float lr is frozen
    assert not optimizer_capturable(torch.optim.Adam(params, lr=lr, capturable=False))
    assert optimizer_capturable(torch.optim.Adam(params, lr=lr, capturable=True))


def test_dropout_disables_graph_replay_with_one_warning():
    plain = BatchedStep(tiny_model(), None)
    assert plain._graph_possible(CUDA_BATCH, 13, 13)
    step = BatchedStep(tiny_model(dropout=0.2), None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert not step._graph_possible(CUDA_BATCH, 13, 13)
        assert not step._graph_possible(CUDA_BATCH, 13, 13)
    assert len(caught) == 1 and "dropout" in str(caught[0].message)
    assert not BatchedStep(tiny_model(dropout=0.2), None, cuda_graph=False)._graph_possible(CUDA_BATCH, 13, 13)
