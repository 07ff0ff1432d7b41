"""Shared pieces of the export tests: tiny float64 supernets with randomised BN and biases, and architectures."""

from __future__ import annotations

import torch
from torch import nn

from scarlet import Supernet, SupernetConfig
from scarlet.space import get_space

SPACES = ("scarlet-s1", "scarlet-s2")
KINDS = ("els", "skip")
STRIDE2_LAYERS = (1, 3, 7, 15)
CHANNEL_CHANGING_LAYERS = (1, 3, 7, 11, 15, 19)
RESIDUAL_LAYERS = (2, 4, 5, 6, 8, 9, 10, 12, 13, 14, 16, 17, 18)  # at full width; tiny widths add some

# Runs of identity layers (1-based) forced in every space and kind: stride-2 and channel-changing layers, the last
# layer (folds into the head), chains, and identities right before a residual block.
FORCED_IDENTITIES = [
    (), tuple(range(1, 20)),
    *[(l,) for l in STRIDE2_LAYERS], (11,), (19,),
    (2,), (5,), (9,), (13,), (17,),
    (4, 5, 6), (2, 3, 4), (8, 9, 10, 11), (12, 13), (16, 17, 18, 19), (14, 15, 16), (6, 7, 8),
    tuple(range(1, 20, 2)), tuple(range(2, 20, 2)),
]


def tiny_config(space: str, skip: str, width: float = 0.25, resolution: int = 24, in_channels: int = 2
                ) -> SupernetConfig:
    return SupernetConfig(space=space, skip=skip, width=width, resolution=resolution, in_channels=in_channels,
                          num_classes=10)


@torch.no_grad()
def randomized_supernet(config: SupernetConfig, seed: int = 0, dtype=torch.float64) -> Supernet:
    """A supernet whose BN running statistics, BN affine parameters and biases are random (so folds are tested)."""
    torch.manual_seed(seed)
    net = Supernet(config)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0, 0.5)
        elif isinstance(m, (nn.Conv2d, nn.Linear)) and m.bias is not None:
            m.bias.normal_(0, 0.5)
    return net.to(dtype).eval()


def arch_with_identities(space: str, identities, generator: torch.Generator) -> tuple[int, ...]:
    """Random MBConv choices, with the identity at the given 1-based layers."""
    s = get_space(space)
    mbconvs = [i for i, c in enumerate(s.choices) if not c.identity]
    genes = [mbconvs[j] for j in torch.randint(len(mbconvs), (s.num_layers,), generator=generator).tolist()]
    for layer in identities:
        genes[layer - 1] = s.identity_index
    return tuple(genes)


def random_archs(space: str, count: int, seed: int) -> list[tuple[int, ...]]:
    """Random architectures with many identities (probability 0.4 per layer), so chains are common."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(count):
        mask = (torch.rand(19, generator=g) < 0.4).tolist()
        out.append(arch_with_identities(space, [i + 1 for i, m in enumerate(mask) if m], g))
    return out
