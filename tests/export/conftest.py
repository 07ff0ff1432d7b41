import functools

import pytest
from fold_cases import randomized_supernet, tiny_config


@functools.cache
def _supernet(space, skip, width):
    return randomized_supernet(tiny_config(space, skip, width))


@pytest.fixture(scope="module")
def supernet():
    """supernet(space, skip, width=0.25): a randomised float64 supernet, built once per session."""
    return lambda space, skip, width=0.25: _supernet(space, skip, width)
