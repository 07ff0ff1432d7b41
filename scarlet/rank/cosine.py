"""SCARLET's cosine-similarity analysis (SCARLET section 3, Fig. 4; FairNAS Fig. 6).

For each searchable layer, every choice is run on the same input (that layer's input along one fixed path, on one
batch of images) and the outputs of each pair of choices are compared channel by channel: the cosine similarity
of channel c's activations over the batch and the positions, averaged over the channels. Identical choices give
1; SCARLET reports the plain skip far from the MBConv choices (below 0.6) and ELS bringing it closer.

BatchNorm uses the statistics of the batch itself (train mode, on a copy of the model): every choice is then
normalised for exactly the input it is given, which is what BN recalibration would converge to, and the result
does not depend on the running statistics a choice collected on other paths during training.
"""

from __future__ import annotations

import copy
from typing import Sequence

import torch
import torch.nn.functional as F


def channel_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine similarity of two (N, C, H, W) tensors per channel (over N, H, W), averaged over channels."""
    a = a.transpose(0, 1).reshape(a.shape[1], -1).double()
    b = b.transpose(0, 1).reshape(b.shape[1], -1).double()
    return float(F.cosine_similarity(a, b, dim=1, eps=1e-12).mean())


def similarity_matrix(outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Pairwise :func:`channel_cosine` of the outputs of the choices of one layer (symmetric, K x K)."""
    k = len(outputs)
    sim = torch.ones(k, k, dtype=torch.float64)
    for i in range(k):
        for j in range(i + 1, k):
            sim[i, j] = sim[j, i] = channel_cosine(outputs[i], outputs[j])
    return sim


@torch.no_grad()
def layer_similarities(model, images: torch.Tensor, path: Sequence[int]) -> list[torch.Tensor]:
    """One K x K similarity matrix per layer; layer l's choices all see the input that ``path`` gives layer l."""
    work = copy.deepcopy(model).train()  # batch statistics in every BN (see the module docstring)
    x = work.forward_stem(images)
    matrices = []
    for layer, gene in zip(work.layers, path):
        matrices.append(similarity_matrix([choice(x) for choice in layer]))
        x = layer[gene](x)
    return matrices


def summarise_layers(matrices: Sequence[torch.Tensor], identity: int | None) -> dict:
    """Per layer: the mean similarity between distinct MBConv choices, and (spaces with a skip choice) between
    the skip choice and the MBConv choices, the two numbers SCARLET's Fig. 4 contrasts."""
    blocks, skip = [], []
    for m in matrices:
        keep = [i for i in range(m.shape[0]) if i != identity]
        sub = m[keep][:, keep]
        k = len(keep)
        blocks.append(float((sub.sum() - sub.trace()) / max(k * (k - 1), 1)))
        if identity is not None:
            skip.append(float(m[identity, keep].mean()))
    return {"mbconv_pairs": blocks, "skip_vs_mbconv": skip if identity is not None else None}
