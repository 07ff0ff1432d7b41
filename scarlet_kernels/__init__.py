"""Scarlet's fused ops for stacked supernet paths, each with one API and three backends.

Backends: a PyTorch reference (``torch``, always available, the definition the others are tested against),
Triton kernels (``triton``) and CUDA C++ kernels compiled into the optional extension ``scarlet_kernels._C``
(``cuda``). See :mod:`scarlet_kernels.backend` for how one is chosen.
"""

from scarlet_kernels.backend import BackendUnavailableError, available
from scarlet_kernels.depthwise import masked_depthwise_conv2d
from scarlet_kernels.els import els_pointwise, fold_els
from scarlet_kernels.se import fused_se, scaled_pointwise, se_gate

__all__ = ["BackendUnavailableError", "available", "els_pointwise", "fold_els", "fused_se",
           "masked_depthwise_conv2d", "scaled_pointwise", "se_gate"]
