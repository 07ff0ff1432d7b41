"""Scarlet: a supernet engine for one-shot neural architecture search (SCARLET-NAS, FairNAS)."""

from scarlet.arch import NAMED_ARCHS, Arch, parse_arch
from scarlet.errors import ScarletError
from scarlet.space import SPACES, SearchSpace, get_space
from scarlet.supernet import Supernet, SupernetConfig

__version__ = "0.1.0"


def load_supernet(path, map_location="cpu"):
    """A trained supernet from a run directory or checkpoint file, in eval mode.

    The result carries ``space`` (its :class:`SearchSpace`) and ``resolution``.
    """
    from scarlet.checkpoint import load_supernet as _load

    return _load(path, map_location=map_location)


__all__ = ["Arch", "NAMED_ARCHS", "SPACES", "ScarletError", "SearchSpace", "Supernet", "SupernetConfig",
           "get_space", "load_supernet", "parse_arch"]
