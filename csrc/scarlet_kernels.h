// The CUDA kernels of scarlet_kernels as a plain C++ interface: raw pointers, element strides, a stream.
// Nothing here knows torch; csrc/bindings.cpp turns tensors into these arguments.
//
// Activations are 5-d (P paths, N images, C channels, H, W) with any element strides; `channels_last` only picks
// the order in which threads walk the elements, so that neighbouring threads touch neighbouring addresses.
// Accumulation is in float (double for double data); "acc" buffers below hold that type.
#pragma once

#include <cstdint>

#include <cuda_runtime.h>

namespace scarlet {

enum class DType : int { Float32 = 0, Float16 = 1, BFloat16 = 2, Float64 = 3 };

struct Strides5 {
  int64_t p, n, c, h, w;
};

// Masked depthwise convolution: weight (P, C, 7, 7) contiguous with path p's k x k kernel centred in it;
// kernel_sizes and channels are int32 device arrays of length P (k in {3, 5, 7}, active channels in [0, C]).
struct DepthwiseShape {
  DType dtype;
  int P, N, C, H, W, Ho, Wo, stride;
  bool channels_last;
  const int* kernel_sizes;
  const int* channels;
};

cudaError_t depthwise_forward(const DepthwiseShape& s, const void* x, Strides5 sx, const void* weight, void* y,
                              Strides5 sy, cudaStream_t stream);

cudaError_t depthwise_backward_input(const DepthwiseShape& s, const void* dy, Strides5 sdy, const void* weight,
                                     void* dx, Strides5 sdx, cudaStream_t stream);

// First stage of the weight gradient: part (splits, P, C, 49) of acc type, zero-filled by the caller, receives
// each split's sum over its share of the (n, ho, wo) positions. Summing over splits (in a fixed order) gives dw.
cudaError_t depthwise_backward_weight_partial(const DepthwiseShape& s, const void* dy, Strides5 sdy,
                                              const void* x, Strides5 sx, void* part, int splits,
                                              cudaStream_t stream);

// Activations seen as `rows` rows of C planes of HW pixels (rows = P * N), with element strides.
struct Planes {
  int64_t rows;
  int C;
  int64_t HW;
  int64_t row, c, hw;
};

// out[row, c] (acc type, contiguous) = sum over pixels of a (times b when b is not null; b has a's dtype).
cudaError_t channel_sum(DType dtype, const void* a, Planes pa, const void* b, Planes pb, void* out,
                        bool channels_last, cudaStream_t stream);

// out = a * s[row, c] (+ add[row, c] when add is not null); s and add contiguous (rows, C) of acc type.
cudaError_t channel_scale(DType dtype, const void* a, Planes pa, const void* s, const void* add, void* out,
                          Planes po, bool channels_last, cudaStream_t stream);

// y[p, n] = w[p] diag(gate[p, n]) x[p, n]: a 1x1 convolution per path, x (P, N, C, HW), w (P, Cout, C),
// y (P, N, Cout, HW) with element strides; gate (P, N, C) contiguous of acc type, or null for none.
struct PointwiseShape {
  DType dtype;
  int P, N, C, Cout;
  int64_t HW;
  int64_t x_p, x_n, x_c, x_hw;
  int64_t w_p, w_o, w_c;
  int64_t y_p, y_n, y_o, y_hw;
};

cudaError_t pointwise(const PointwiseShape& s, const void* x, const void* w, const void* gate, void* y,
                      cudaStream_t stream);

}  // namespace scarlet
