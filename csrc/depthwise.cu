// Masked depthwise convolution over stacked paths: forward, input gradient and weight gradient.
//
// Path p uses the centred k_p x k_p window of its 7 x 7 weight envelope and its first channels[p] channels; tap
// loops run to k_p, so the taps outside the window are never visited. One thread computes one output element
// (forward) or one input-gradient element; the weight gradient is a split reduction that reads dy and x once.
#include "common.cuh"

namespace scarlet {
namespace {

constexpr int kEnvelope = 7;

struct Position {
  int p, n, c, h, w;
};

// The element with linear index i when (P, N, C, H, W) is walked in memory order of the standard layout
// (w fastest) or of the channels-last layout (c fastest).
__device__ __forceinline__ Position unravel(int64_t i, int N, int C, int H, int W, bool channels_last) {
  Position q;
  if (channels_last) {
    q.c = static_cast<int>(i % C);
    i /= C;
    q.w = static_cast<int>(i % W);
    i /= W;
    q.h = static_cast<int>(i % H);
    i /= H;
  } else {
    q.w = static_cast<int>(i % W);
    i /= W;
    q.h = static_cast<int>(i % H);
    i /= H;
    q.c = static_cast<int>(i % C);
    i /= C;
  }
  q.n = static_cast<int>(i % N);
  q.p = static_cast<int>(i / N);
  return q;
}

__device__ __forceinline__ int64_t offset(const Strides5& s, int p, int n, int c, int h, int w) {
  return p * s.p + n * s.n + c * s.c + h * s.h + w * s.w;
}

__device__ __forceinline__ int kernel_size(const int* kernel_sizes, int p) {
  return min(max(kernel_sizes[p], 0), kEnvelope);
}

// The weight of path p, channel c, shifted to the top-left tap of its k x k window.
template <typename T>
__device__ __forceinline__ const T* window(const T* weight, int C, int p, int c, int k) {
  const int corner = (kEnvelope - k) / 2;
  return weight + (static_cast<int64_t>(p) * C + c) * (kEnvelope * kEnvelope) + corner * (kEnvelope + 1);
}

template <typename T>
__global__ void forward_kernel(DepthwiseShape s, const T* __restrict__ x, Strides5 sx,
                               const T* __restrict__ weight, T* __restrict__ y, Strides5 sy) {
  using A = typename Acc<T>::type;
  const int64_t total = static_cast<int64_t>(s.P) * s.N * s.C * s.Ho * s.Wo;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Position o = unravel(i, s.N, s.C, s.Ho, s.Wo, s.channels_last);
    A acc = 0;
    if (o.c < s.channels[o.p]) {
      const int k = kernel_size(s.kernel_sizes, o.p);
      const T* xs = x + offset(sx, o.p, o.n, o.c, 0, 0);
      const T* ws = window(weight, s.C, o.p, o.c, k);
      const int h0 = o.h * s.stride - k / 2, w0 = o.w * s.stride - k / 2;
      for (int ky = 0; ky < k; ++ky) {
        const int hi = h0 + ky;
        if (hi < 0 || hi >= s.H) continue;
        for (int kx = 0; kx < k; ++kx) {
          const int wi = w0 + kx;
          if (wi < 0 || wi >= s.W) continue;
          acc += widen(xs[hi * sx.h + wi * sx.w]) * widen(ws[ky * kEnvelope + kx]);
        }
      }
    }
    y[offset(sy, o.p, o.n, o.c, o.h, o.w)] = narrow<T>(acc);
  }
}

// dx[hi, wi] = sum of dy[ho, wo] * w[ky, kx] over the taps with ho * stride + ky = hi + pad (and likewise for
// the columns): only taps ky congruent to hi + pad modulo the stride can contribute, so the loop steps by it.
template <typename T>
__global__ void backward_input_kernel(DepthwiseShape s, const T* __restrict__ dy, Strides5 sdy,
                                      const T* __restrict__ weight, T* __restrict__ dx, Strides5 sdx) {
  using A = typename Acc<T>::type;
  const int64_t total = static_cast<int64_t>(s.P) * s.N * s.C * s.H * s.W;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const Position q = unravel(i, s.N, s.C, s.H, s.W, s.channels_last);
    A acc = 0;
    if (q.c < s.channels[q.p]) {
      const int k = kernel_size(s.kernel_sizes, q.p), pad = k / 2;
      const T* gs = dy + offset(sdy, q.p, q.n, q.c, 0, 0);
      const T* ws = window(weight, s.C, q.p, q.c, k);
      for (int ky = (q.h + pad) % s.stride; ky < k; ky += s.stride) {
        const int th = q.h + pad - ky;
        if (th < 0) break;
        const int ho = th / s.stride;
        if (ho >= s.Ho) continue;
        for (int kx = (q.w + pad) % s.stride; kx < k; kx += s.stride) {
          const int tw = q.w + pad - kx;
          if (tw < 0) break;
          const int wo = tw / s.stride;
          if (wo >= s.Wo) continue;
          acc += widen(gs[ho * sdy.h + wo * sdy.w]) * widen(ws[ky * kEnvelope + kx]);
        }
      }
    }
    dx[offset(sdx, q.p, q.n, q.c, q.h, q.w)] = narrow<T>(acc);
  }
}

// Block (blockDim.x channels, blockDim.y position lanes) of path blockIdx.z, channel block blockIdx.y and split
// blockIdx.x. Each thread walks its lane's share of the split's (n, ho, wo) positions, reading dy once and the
// K x K neighbourhood of x, with all K * K tap sums in registers; the lanes are then summed in a fixed tree order.
template <typename T, int K>
__device__ void weight_grad_split(const DepthwiseShape& s, const T* __restrict__ dy, const Strides5& sdy,
                                  const T* __restrict__ x, const Strides5& sx, typename Acc<T>::type* part,
                                  int splits) {
  using A = typename Acc<T>::type;
  __shared__ A lanes[kThreads];
  const int p = blockIdx.z, split = blockIdx.x;
  const int c = blockIdx.y * blockDim.x + threadIdx.x;
  const int pad = K / 2;
  const int64_t plane = static_cast<int64_t>(s.Ho) * s.Wo, total = s.N * plane;
  const int64_t chunk = (total + splits - 1) / splits;
  const int64_t start = split * chunk, stop = min(start + chunk, total);
  A acc[K * K];
#pragma unroll
  for (int t = 0; t < K * K; ++t) acc[t] = 0;
  if (c < s.C && c < s.channels[p]) {
    for (int64_t q = start + threadIdx.y; q < stop; q += blockDim.y) {
      const int n = static_cast<int>(q / plane);
      const int r = static_cast<int>(q - n * plane);
      const int ho = r / s.Wo, wo = r - ho * s.Wo;
      const A g = widen(dy[offset(sdy, p, n, c, ho, wo)]);
      const T* xs = x + offset(sx, p, n, c, 0, 0);
      const int h0 = ho * s.stride - pad, w0 = wo * s.stride - pad;
#pragma unroll
      for (int ky = 0; ky < K; ++ky) {
        const int hi = h0 + ky;
        const bool row_in = hi >= 0 && hi < s.H;
#pragma unroll
        for (int kx = 0; kx < K; ++kx) {
          const int wi = w0 + kx;
          if (row_in && wi >= 0 && wi < s.W) acc[ky * K + kx] += g * widen(xs[hi * sx.h + wi * sx.w]);
        }
      }
    }
  }
  const int lane = threadIdx.y * blockDim.x + threadIdx.x;
  A* out = part + ((static_cast<int64_t>(split) * s.P + p) * s.C + c) * (kEnvelope * kEnvelope);
  const int corner = (kEnvelope - K) / 2;
#pragma unroll
  for (int t = 0; t < K * K; ++t) {
    lanes[lane] = acc[t];
    __syncthreads();
    for (int half = blockDim.y / 2; half > 0; half /= 2) {
      if (threadIdx.y < half) lanes[lane] += lanes[lane + half * blockDim.x];
      __syncthreads();
    }
    if (threadIdx.y == 0 && c < s.C) out[(corner + t / K) * kEnvelope + corner + t % K] = lanes[threadIdx.x];
    __syncthreads();
  }
}

template <typename T>
__global__ void backward_weight_kernel(DepthwiseShape s, const T* __restrict__ dy, Strides5 sdy,
                                       const T* __restrict__ x, Strides5 sx, typename Acc<T>::type* part,
                                       int splits) {
  // The kernel size is uniform over the block (one path), so the branch does not diverge.
  switch (kernel_size(s.kernel_sizes, blockIdx.z)) {
    case 3:
      weight_grad_split<T, 3>(s, dy, sdy, x, sx, part, splits);
      break;
    case 5:
      weight_grad_split<T, 5>(s, dy, sdy, x, sx, part, splits);
      break;
    case 7:
      weight_grad_split<T, 7>(s, dy, sdy, x, sx, part, splits);
      break;
    default:
      break;
  }
}

}  // namespace

cudaError_t depthwise_forward(const DepthwiseShape& s, const void* x, Strides5 sx, const void* weight, void* y,
                              Strides5 sy, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(s.P) * s.N * s.C * s.Ho * s.Wo;
  if (total == 0) return cudaSuccess;
  return dispatch(s.dtype, [&](auto tag) {
    using T = decltype(tag);
    forward_kernel<T><<<blocks_for(total), kThreads, 0, stream>>>(
        s, static_cast<const T*>(x), sx, static_cast<const T*>(weight), static_cast<T*>(y), sy);
    return cudaGetLastError();
  });
}

cudaError_t depthwise_backward_input(const DepthwiseShape& s, const void* dy, Strides5 sdy, const void* weight,
                                     void* dx, Strides5 sdx, cudaStream_t stream) {
  const int64_t total = static_cast<int64_t>(s.P) * s.N * s.C * s.H * s.W;
  if (total == 0) return cudaSuccess;
  return dispatch(s.dtype, [&](auto tag) {
    using T = decltype(tag);
    backward_input_kernel<T><<<blocks_for(total), kThreads, 0, stream>>>(
        s, static_cast<const T*>(dy), sdy, static_cast<const T*>(weight), static_cast<T*>(dx), sdx);
    return cudaGetLastError();
  });
}

cudaError_t depthwise_backward_weight_partial(const DepthwiseShape& s, const void* dy, Strides5 sdy,
                                              const void* x, Strides5 sx, void* part, int splits,
                                              cudaStream_t stream) {
  if (static_cast<int64_t>(s.P) * s.C == 0 || splits <= 0) return cudaSuccess;
  // Channels-last: 32 neighbouring channels per block for coalesced reads; otherwise one channel, 256 lanes.
  const unsigned int width = s.channels_last ? 32 : 1;
  const dim3 block(width, kThreads / width);
  const dim3 grid(splits, (s.C + width - 1) / width, s.P);
  return dispatch(s.dtype, [&](auto tag) {
    using T = decltype(tag);
    backward_weight_kernel<T><<<grid, block, 0, stream>>>(s, static_cast<const T*>(dy), sdy,
                                                          static_cast<const T*>(x), sx,
                                                          static_cast<typename Acc<T>::type*>(part), splits);
    return cudaGetLastError();
  });
}

}  // namespace scarlet
