"""Tiny enumerable decision spaces for the FP-NAS tests."""

import itertools

import torch

from scarlet.decisions.space import Decision, LayerSpec, Space


def tiny_space(sizes_by_key: dict) -> Space:
    """A space whose only content is its decisions (one layer per decision): enough for distributions."""
    layers = tuple(LayerSpec(key, "conv", 1, (("filters", Decision(key, tuple(range(n)))),))
                   for key, n in sizes_by_key.items())
    return Space("tiny", "fbnet", layers)


# Two units: g1 (decisions of 2 and 3 choices) and g2 (2 and 2, one per block as in fbnetv2-f-fine): 24 archs.
TWO_UNITS = {"g1.a": 2, "g1.b": 3, "g2.c": 2, "g2.1.d": 2}


def all_indices(space: Space) -> torch.Tensor:
    """Every architecture of ``space`` as rows of choice indices."""
    return torch.tensor(list(itertools.product(*(range(len(d.choices)) for d in space.decisions))))
