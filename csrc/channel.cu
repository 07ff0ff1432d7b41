// Per-channel sums and per-channel scaling of activations seen as rows of C planes (squeeze-and-excitation).
#include "common.cuh"

namespace scarlet {
namespace {

template <typename A>
__device__ __forceinline__ A warp_sum(A v) {
  for (int delta = 16; delta > 0; delta /= 2) v += __shfl_down_sync(0xffffffffu, v, delta);
  return v;
}

template <typename T>
__device__ __forceinline__ typename Acc<T>::type product(const T* a, int64_t ia, const T* b, int64_t ib) {
  return b == nullptr ? widen(a[ia]) : widen(a[ia]) * widen(b[ib]);
}

// Standard layout: one warp per plane; the lanes read consecutive pixels.
template <typename T>
__global__ void sum_planes_kernel(const T* __restrict__ a, Planes pa, const T* __restrict__ b, Planes pb,
                                  typename Acc<T>::type* __restrict__ out) {
  using A = typename Acc<T>::type;
  const int64_t plane = (blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x) / 32;
  const int lane = threadIdx.x % 32;
  if (plane >= pa.rows * pa.C) return;  // uniform over the warp
  const int64_t row = plane / pa.C, c = plane % pa.C;
  A acc = 0;
  for (int64_t hw = lane; hw < pa.HW; hw += 32)
    acc += product(a, row * pa.row + c * pa.c + hw * pa.hw, b, row * pb.row + c * pb.c + hw * pb.hw);
  acc = warp_sum(acc);
  if (lane == 0) out[plane] = acc;
}

// Channels-last: a block holds 32 neighbouring channels (x) of one row times 8 pixel lanes (y), summed in a fixed
// order at the end.
template <typename T>
__global__ void sum_channels_last_kernel(const T* __restrict__ a, Planes pa, const T* __restrict__ b, Planes pb,
                                         typename Acc<T>::type* __restrict__ out) {
  using A = typename Acc<T>::type;
  __shared__ A lanes[kThreads];
  const int64_t row = blockIdx.x;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  A acc = 0;
  if (c < pa.C) {
    for (int64_t hw = threadIdx.y; hw < pa.HW; hw += blockDim.y)
      acc += product(a, row * pa.row + c * pa.c + hw * pa.hw, b, row * pb.row + c * pb.c + hw * pb.hw);
  }
  const int lane = threadIdx.y * blockDim.x + threadIdx.x;
  lanes[lane] = acc;
  __syncthreads();
  for (int half = blockDim.y / 2; half > 0; half /= 2) {
    if (threadIdx.y < half) lanes[lane] += lanes[lane + half * blockDim.x];
    __syncthreads();
  }
  if (threadIdx.y == 0 && c < pa.C) out[row * pa.C + c] = lanes[threadIdx.x];
}

template <typename T>
__global__ void scale_kernel(const T* __restrict__ a, Planes pa, const typename Acc<T>::type* __restrict__ s,
                             const typename Acc<T>::type* __restrict__ add, T* __restrict__ out, Planes po,
                             bool channels_last) {
  const int64_t total = pa.rows * pa.C * pa.HW;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    int64_t hw, c;
    if (channels_last) {
      c = i % pa.C;
      hw = (i / pa.C) % pa.HW;
    } else {
      hw = i % pa.HW;
      c = (i / pa.HW) % pa.C;
    }
    const int64_t row = i / (pa.C * pa.HW);
    const int64_t rc = row * pa.C + c;
    auto v = widen(a[row * pa.row + c * pa.c + hw * pa.hw]) * s[rc];
    if (add != nullptr) v += add[rc];
    out[row * po.row + c * po.c + hw * po.hw] = narrow<T>(v);
  }
}

}  // namespace

cudaError_t channel_sum(DType dtype, const void* a, Planes pa, const void* b, Planes pb, void* out,
                        bool channels_last, cudaStream_t stream) {
  if (pa.rows * pa.C == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = typename Acc<T>::type;
    const T* ta = static_cast<const T*>(a);
    const T* tb = static_cast<const T*>(b);
    if (channels_last) {
      const dim3 block(32, kThreads / 32), grid(static_cast<unsigned int>(pa.rows), (pa.C + 31) / 32);
      sum_channels_last_kernel<T><<<grid, block, 0, stream>>>(ta, pa, tb, pb, static_cast<A*>(out));
    } else {
      const int64_t planes_per_block = kThreads / 32;
      const auto grid = static_cast<unsigned int>((pa.rows * pa.C + planes_per_block - 1) / planes_per_block);
      sum_planes_kernel<T><<<grid, kThreads, 0, stream>>>(ta, pa, tb, pb, static_cast<A*>(out));
    }
    return cudaGetLastError();
  });
}

cudaError_t channel_scale(DType dtype, const void* a, Planes pa, const void* s, const void* add, void* out,
                          Planes po, bool channels_last, cudaStream_t stream) {
  const int64_t total = pa.rows * pa.C * pa.HW;
  if (total == 0) return cudaSuccess;
  return dispatch(dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = typename Acc<T>::type;
    scale_kernel<T><<<blocks_for(total), kThreads, 0, stream>>>(static_cast<const T*>(a), pa,
                                                               static_cast<const A*>(s),
                                                               static_cast<const A*>(add), static_cast<T*>(out),
                                                               po, channels_last);
    return cudaGetLastError();
  });
}

}  // namespace scarlet
