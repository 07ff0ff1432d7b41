// What the kernels share: the accumulator type of each element type, conversions, dtype dispatch, launch sizes.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>

#include "scarlet_kernels.h"

namespace scarlet {

template <typename T>
struct Acc {
  using type = float;
};
template <>
struct Acc<double> {
  using type = double;
};

__device__ __forceinline__ float widen(float v) { return v; }
__device__ __forceinline__ double widen(double v) { return v; }
__device__ __forceinline__ float widen(__half v) { return __half2float(v); }
__device__ __forceinline__ float widen(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__device__ __forceinline__ T narrow(typename Acc<T>::type v) {
  return static_cast<T>(v);
}
template <>
__device__ __forceinline__ __half narrow<__half>(float v) {
  return __float2half_rn(v);
}
template <>
__device__ __forceinline__ __nv_bfloat16 narrow<__nv_bfloat16>(float v) {
  return __float2bfloat16_rn(v);
}

// Calls f(T{}) with T the element type named by dtype; f launches and returns cudaGetLastError().
template <typename F>
cudaError_t dispatch(DType dtype, F&& f) {
  switch (dtype) {
    case DType::Float32:
      return f(float{});
    case DType::Float16:
      return f(__half{});
    case DType::BFloat16:
      return f(__nv_bfloat16{});
    case DType::Float64:
      return f(double{});
  }
  return cudaErrorInvalidValue;
}

constexpr int kThreads = 256;

// Blocks for a grid-stride loop over `total` items: enough to cover them, capped (the loop does the rest).
inline unsigned int blocks_for(int64_t total) {
  return static_cast<unsigned int>(std::max<int64_t>(1, std::min<int64_t>((total + kThreads - 1) / kThreads, 1 << 20)));
}

}  // namespace scarlet
