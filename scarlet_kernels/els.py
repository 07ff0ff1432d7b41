"""ELS fusion: the equivariant stabilizer (a bias-free 1x1 conv) and the 1x1 conv after it as one GEMM.

Training runs y = W_next (W_els x) as (W_next W_els) x: one small GEMM builds the composed weight each step and
autograd carries its gradient to both factors. Deployment folds the ELS away exactly (SCARLET Lemma 4.1):
W3[u, c, i, j] = sum_p W_next[u, p, i, j] W_els[p, c], the contraction running over the ELS output channels,
which are the next conv's input channels; it holds for any k x k next conv with zero padding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from scarlet_kernels import backend as backends
from scarlet_kernels import checks
from scarlet_kernels.pointwise import pointwise


def _matrix(name: str, w: torch.Tensor) -> torch.Tensor:
    """A 1x1 conv weight (out, in) or (out, in, 1, 1) as the matrix (out, in)."""
    checks.tensor(name, w, (2, 4))
    if w.dim() == 4:
        if w.shape[2:] != (1, 1):
            raise ValueError(f"{name} must be a 1x1 conv weight (out, in[, 1, 1]), got shape {tuple(w.shape)}")
        w = w.flatten(1)
    return w


def reference(x: torch.Tensor, composed: torch.Tensor) -> torch.Tensor:
    return F.conv2d(x, composed[:, :, None, None])


def els_pointwise(x: torch.Tensor, w_els: torch.Tensor, w_next: torch.Tensor,
                  backend: str | None = None) -> torch.Tensor:
    """ELS then the next 1x1 conv, as one 1x1 conv with W_next @ W_els.

    x (N, Cin, H, W) in either layout, N at most 65535; w_els (Cmid, Cin[, 1, 1]); w_next (Cout, Cmid[, 1, 1]);
    no biases. Returns (N, Cout, H, W) in x's layout; gradients reach x, w_els and w_next.
    """
    checks.tensor("x", x, 4)
    els, nxt = _matrix("w_els", w_els), _matrix("w_next", w_next)
    if els.shape[1] != x.shape[1]:
        raise ValueError(f"w_els has {els.shape[1]} input channels but x has {x.shape[1]}")
    if nxt.shape[1] != els.shape[0]:
        raise ValueError(f"w_next has {nxt.shape[1]} input channels but w_els has {els.shape[0]} outputs")
    checks.same_device_and_dtype("x", x, w_els=w_els, w_next=w_next)
    checks.channels_last("x", x)
    checks.path_images(1, x.shape[0])
    composed = nxt @ els
    name = backends.select(backend, x)
    if name == "torch":
        return reference(x, composed)
    return pointwise(x.unsqueeze(0), composed.unsqueeze(0), None, name).squeeze(0)


def fold_els(w_els: torch.Tensor, w_next: torch.Tensor) -> torch.Tensor:
    """The exact float64 weight of ELS followed by the next conv: (Cout, Cin, k, k) for w_next (Cout, Cmid, k, k)
    or (Cout, Cmid) (then k = 1). Stride and padding stay those of the next conv."""
    els = _matrix("w_els", w_els)
    checks.tensor("w_next", w_next, (2, 4))
    nxt = w_next[:, :, None, None] if w_next.dim() == 2 else w_next
    if nxt.shape[1] != els.shape[0]:
        raise ValueError(f"w_next has {nxt.shape[1]} input channels but w_els has {els.shape[0]} outputs")
    if w_next.device != w_els.device:
        raise ValueError(f"w_next is on {w_next.device} but w_els is on {w_els.device}")
    return torch.einsum("upij,pc->ucij", nxt.double(), els.double())
