"""FP-NAS's loss terms and gradient estimators (Eqs. 3, 6, 7; sheet B2).

- Cost: the FLOPs hinge C(A) = max(0, FLOPs(A) / target - 1) (zero at or under the target). FLOPs are the
  project's MAdds (``scarlet.decisions.cost``; the paper's counting convention is not stated, sheet B5.13).
- Likelihood of an architecture on a batch: ``"sum"`` takes log P(y|X, w, A) as the sum of the per-image
  log-likelihoods (the literal product over the batch, nearly one-hot weights at large batches); ``"mean"``
  takes their mean (sheet B5.6 keeps this switch). Normalised likelihoods are their softmax over the K samples.
- Architecture gradient (Eq. 7): grad_alpha L ~ sum_k m_k grad_alpha(-log P(A_k|alpha)) with
  m_k = normalised likelihood_k - beta * C(A_k) / sum_j C(A_j); the cost term is zero when every sample is within
  the target (the sum is 0; sheet B5.13). No baseline, no backpropagation through the network.
  It estimates the gradient of -log E_A[P(y|A)] + beta * log E_A[C(A)] (A ~ P(A|alpha)); the self-normalised
  ratios make it consistent (exact as K grows), not unbiased at small K (one sample
  carries no likelihood signal: its m is 1, or 1 - beta over target).
- Weight gradient (Eq. 3): the gradient of log((1/K) sum_k P(y|X, w, A_k)) is sum_k w_k grad log P(y|X, w, A_k),
  w_k the normalised likelihoods (``"importance"``, PARSEC-style); ``"average"`` uses w_k = 1/K (sheet B5.7).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

LIKELIHOODS = ("sum", "mean")
WEIGHTINGS = ("importance", "average")


def hinge_cost(flops, target: float) -> Tensor:
    """C(A) = max(0, FLOPs(A) / target - 1), elementwise over a tensor (or list) of FLOPs."""
    flops = torch.as_tensor(flops, dtype=torch.float64)
    return (flops / target - 1).clamp_min(0)


def log_likelihood(logits: Tensor, labels: Tensor, reduction: str) -> Tensor:
    """log P(y|X, w, A) of one batch: the sum or the mean of the per-image log-likelihoods."""
    per_image = -F.cross_entropy(logits.double(), labels, reduction="none")
    return per_image.sum() if reduction == "sum" else per_image.mean()


def normalised_likelihoods(log_liks: Tensor) -> Tensor:
    """P(y|A_k) / sum_j P(y|A_j), computed from the log-likelihoods without overflow."""
    return torch.softmax(log_liks.detach().double(), 0)


def arch_coefficients(log_liks: Tensor, costs: Tensor, beta: float) -> Tensor:
    """The m_k of Eq. 7 for the K samples."""
    m = normalised_likelihoods(log_liks)
    costs = costs.detach().double()
    total = costs.sum()
    if total > 0:
        m = m - beta * costs / total
    return m


def arch_surrogate(log_probs: Tensor, m: Tensor) -> Tensor:
    """A scalar whose gradient in alpha is Eq. 7's sum_k m_k grad(-log P(A_k|alpha)); ``log_probs`` are the K
    samples' log P(A_k|alpha) (differentiable), ``m`` the coefficients (constants)."""
    return -(m.detach() * log_probs).sum()


def weight_coefficients(log_liks: Tensor, weighting: str) -> Tensor:
    """Each sample's weight in the network's loss: normalised likelihoods (Eq. 3) or 1/K."""
    if weighting == "importance":
        return normalised_likelihoods(log_liks)
    return torch.full((log_liks.numel(),), 1.0 / log_liks.numel(), dtype=torch.float64)
