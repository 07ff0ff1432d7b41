"""The optimizers of the papers' recipes: TensorFlow-style RMSProp, and which parameters weight decay falls on.

The papers give weight decay values only (FairNAS supernet 4e-5, SCARLET standalone 1e-5); which parameters it
applies to is a choice of the implementation, made explicit here: ``all`` (PyTorch's default), ``weights`` (conv
and linear weights: not BatchNorm scales and shifts, not biases; Scarlet's default, close to the TF recipes of
MnasNet and EfficientNet that SCARLET's standalone recipe follows, which exclude BatchNorm), ``conv`` (conv kernels
only, the SE convs included: TuNAS, which decays neither BatchNorm nor the classifier).
"""

from __future__ import annotations

import torch
from torch import nn

DECAY_ON = ("all", "weights", "conv")


def decay_groups(model: nn.Module, weight_decay: float, on: str = "weights") -> list[dict]:
    """Parameter groups of ``model`` for an optimizer: ``weight_decay`` on the parameters ``on`` selects (see the
    module docstring), 0 on the others; empty groups are left out."""
    if on not in DECAY_ON:
        raise ValueError(f"weight decay must apply to one of {', '.join(DECAY_ON)}, got {on!r}")
    kinds = {"all": None, "weights": (nn.modules.conv._ConvNd, nn.Linear), "conv": (nn.modules.conv._ConvNd,)}[on]
    params = [p for p in model.parameters() if p.requires_grad]
    if kinds is None:
        decayed = {id(p) for p in params}
    else:
        decayed = {id(m.weight) for m in model.modules() if isinstance(m, kinds) and m.weight is not None}
    groups = [{"params": [p for p in params if id(p) in decayed], "weight_decay": weight_decay},
              {"params": [p for p in params if id(p) not in decayed], "weight_decay": 0.0}]
    return [g for g in groups if g["params"]]


class RMSpropTF(torch.optim.Optimizer):
    """RMSProp as TensorFlow 1's ``RMSPropOptimizer`` (``ApplyRMSProp``) computes it, not as ``torch.optim.RMSprop``.

    For each parameter w with gradient g (weight decay as an L2 term of the loss, as the TF recipes add it)::

        g   = g + weight_decay * w
        ms  = decay * ms + (1 - decay) * g^2              ms starts at 1 (TF's slot initialiser), not 0
        mom = momentum * mom + lr * g / sqrt(ms + eps)     eps inside the root, lr inside the momentum buffer
        w   = w - mom

    Defaults are the MnasNet/EfficientNet/SCARLET standalone settings: decay 0.9, momentum 0.9, eps 1e-3.
    """

    def __init__(self, params, lr: float, decay: float = 0.9, momentum: float = 0.9, eps: float = 1e-3,
                 weight_decay: float = 0.0):
        for name, value, ok in (("lr", lr, lr >= 0), ("decay", decay, 0 <= decay < 1),
                                ("momentum", momentum, 0 <= momentum < 1), ("eps", eps, eps > 0),
                                ("weight_decay", weight_decay, weight_decay >= 0)):
            if not ok:  # also false for NaN
                raise ValueError(f"RMSpropTF: invalid {name} {value!r}")
        super().__init__(params, dict(lr=lr, decay=decay, momentum=momentum, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for w in group["params"]:
                if w.grad is None:
                    continue
                if w.grad.is_sparse:
                    raise RuntimeError("RMSpropTF does not support sparse gradients")
                g = w.grad if group["weight_decay"] == 0 else w.grad.add(w, alpha=group["weight_decay"])
                state = self.state[w]
                if not state:
                    state["mean_square"] = torch.ones_like(w, memory_format=torch.preserve_format)
                    state["momentum"] = torch.zeros_like(w, memory_format=torch.preserve_format)
                ms, mom = state["mean_square"], state["momentum"]
                ms.mul_(group["decay"]).addcmul_(g, g, value=1 - group["decay"])
                mom.mul_(group["momentum"]).addcdiv_(g, ms.add(group["eps"]).sqrt_(), value=group["lr"])
                w.sub_(mom)
        return loss
