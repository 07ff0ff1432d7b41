import functools

import pytest
import torch
from fold_cases import randomized_supernet, tiny_config


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny float64 convolutions are fastest on one thread, and the test machines are shared."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@functools.cache
def _supernet(space, skip, width):
    return randomized_supernet(tiny_config(space, skip, width))


@pytest.fixture(scope="module")
def supernet():
    """supernet(space, skip, width=0.25): a randomised float64 supernet, built once per session."""
    return lambda space, skip, width=0.25: _supernet(space, skip, width)
