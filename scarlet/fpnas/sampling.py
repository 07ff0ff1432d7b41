"""How many architectures a step samples: FP-NAS adaptive sampling (Eq. 4) or a fixed K (PARSEC, the baseline).

K = max(1, floor(lambda * H)), H the entropy in nats of the whole architecture distribution, recomputed every
step. The floor, the minimum of one and nats are not stated in the paper; they are the reading that reproduces
its figures (sheet B2, B5.5): at lambda = 1/4 a uniform FBNetV2-F (6e25 architectures, H = ln 6e25 = 59.4)
gives 14 samples, and a converged distribution one.
"""

from __future__ import annotations

import math

from scarlet.errors import ScarletError


def adaptive_k(entropy: float, lam: float) -> int:
    """max(1, floor(lam * entropy)); ``entropy`` in nats."""
    if not (math.isfinite(entropy) and entropy >= 0):
        raise ScarletError(f"the entropy must be finite and non-negative, got {entropy!r}")
    if not (math.isfinite(lam) and lam > 0):
        raise ScarletError(f"lambda must be positive, got {lam!r}")
    # A tiny tolerance: lam * H computed as 3.9999999 for an exact 4 must not drop a sample.
    return max(1, math.floor(lam * entropy + 1e-9))


def num_samples(entropy: float, lam: float, fixed_k: int | None = None) -> int:
    """The step's K: ``fixed_k`` when given (the fixed-sampling baseline), else :func:`adaptive_k`."""
    if fixed_k is not None:
        if isinstance(fixed_k, bool) or not isinstance(fixed_k, int) or fixed_k < 1:
            raise ScarletError(f"a fixed K must be a positive integer, got {fixed_k!r}")
        return fixed_k
    return adaptive_k(entropy, lam)
