"""The Triton backend. Importing it compiles nothing; under ``TRITON_INTERPRET=1`` (set before this import) the
kernels run on the CPU through Triton's interpreter."""

from scarlet_kernels.triton_kernels.channel import channel_scale, channel_sum
from scarlet_kernels.triton_kernels.depthwise import (depthwise_backward_input, depthwise_backward_weight,
                                                      depthwise_forward)
from scarlet_kernels.triton_kernels.pointwise_conv import pointwise

__all__ = ["channel_scale", "channel_sum", "depthwise_backward_input", "depthwise_backward_weight",
           "depthwise_forward", "pointwise"]
