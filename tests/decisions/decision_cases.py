"""Shared test data: narrow variants of the six spaces (every choice kept distinct), small in float64."""

from scarlet.decisions.space import get_space

NARROW = {"proxylessnas": (0.25, 2), "proxylessnas-enlarged": (0.25, 2), "mobilenetv3-like": (0.25, 2),
          "fbnetv2-f": (0.25, 1), "fbnetv2-f-fine": (0.25, 1), "fbnetv2-f++": (0.25, 1)}


def narrow_space(name):
    return get_space(name, *NARROW[name])
