// A 1x1 convolution per path with an optional per-image channel gate: y[p, n] = w[p] diag(gate[p, n]) x[p, n].
//
// A shared-memory tiled GEMM (64 output channels x 64 pixels per block, 16 input channels per step, 4 x 4
// outputs per thread). The gate multiplies the weight tile as it is staged, so x * gate is never written.
#include "common.cuh"

namespace scarlet {
namespace {

constexpr int kTileO = 64, kTileHW = 64, kTileK = 16, kSide = 16;  // kSide x kSide threads, 4 x 4 outputs each

template <typename T>
__global__ void pointwise_kernel(PointwiseShape s, const T* __restrict__ x, const T* __restrict__ w,
                                 const typename Acc<T>::type* __restrict__ gate, T* __restrict__ y) {
  using A = typename Acc<T>::type;
  __shared__ A w_tile[kTileK][kTileO];
  __shared__ A x_tile[kTileK][kTileHW];
  const int64_t hw0 = static_cast<int64_t>(blockIdx.x) * kTileHW;
  const int o0 = blockIdx.y * kTileO;
  const int pn = blockIdx.z, p = pn / s.N, n = pn % s.N;
  const int tid = threadIdx.x, tx = tid % kSide, ty = tid / kSide;
  const T* xs = x + p * s.x_p + n * s.x_n;
  const T* ws = w + p * s.w_p;
  const A* gs = gate == nullptr ? nullptr : gate + static_cast<int64_t>(pn) * s.C;
  A acc[4][4] = {};
  for (int k0 = 0; k0 < s.C; k0 += kTileK) {
    for (int e = tid; e < kTileK * kTileO; e += kSide * kSide) {
      const int o = e / kTileK, kk = e % kTileK, c = k0 + kk;
      A v = 0;
      if (o0 + o < s.Cout && c < s.C) {
        v = widen(ws[(o0 + o) * s.w_o + c * s.w_c]);
        if (gs != nullptr) v *= gs[c];
      }
      w_tile[kk][o] = v;
    }
    for (int e = tid; e < kTileK * kTileHW; e += kSide * kSide) {
      const int kk = e / kTileHW, j = e % kTileHW, c = k0 + kk;
      const int64_t hw = hw0 + j;
      x_tile[kk][j] = (c < s.C && hw < s.HW) ? widen(xs[c * s.x_c + hw * s.x_hw]) : A(0);
    }
    __syncthreads();
#pragma unroll
    for (int kk = 0; kk < kTileK; ++kk) {
      A a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = w_tile[kk][ty + kSide * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = x_tile[kk][tx + kSide * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
  T* ys = y + p * s.y_p + n * s.y_n;
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    const int o = o0 + ty + kSide * i;
    if (o >= s.Cout) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      const int64_t hw = hw0 + tx + kSide * j;
      if (hw < s.HW) ys[o * s.y_o + hw * s.y_hw] = narrow<T>(acc[i][j]);
    }
  }
}

}  // namespace

cudaError_t pointwise(const PointwiseShape& s, const void* x, const void* w, const void* gate, void* y,
                      cudaStream_t stream) {
  if (static_cast<int64_t>(s.P) * s.N * s.Cout * s.HW == 0) return cudaSuccess;
  const dim3 grid(static_cast<unsigned int>((s.HW + kTileHW - 1) / kTileHW), (s.Cout + kTileO - 1) / kTileO,
                  s.P * s.N);
  return dispatch(s.dtype, [&](auto tag) {
    using T = decltype(tag);
    using A = typename Acc<T>::type;
    pointwise_kernel<T><<<grid, kSide * kSide, 0, stream>>>(s, static_cast<const T*>(x), static_cast<const T*>(w),
                                                           static_cast<const A*>(gate), static_cast<T*>(y));
    return cudaGetLastError();
  });
}

}  // namespace scarlet
