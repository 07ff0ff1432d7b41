// A host emulation of the little of CUDA that csrc/*.cu uses, so that the kernels run on a CPU in the tests.
//
// Each block runs its threads as cooperative fibers on one OS thread: a thread runs until __syncthreads (or a
// warp shuffle, emulated with two block barriers through a shared buffer), then the next; a thread that returns
// drops out of later barriers. __shared__ variables become function statics, shared by the threads of the one
// block that runs at a time. Kernel launches `k<<<grid, block, shmem, stream>>>(args)` are rewritten by the test
// into `::emulator::launch(k, grid, block, shmem, stream)(args)`.
#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <utility>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

using std::max;
using std::min;

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

enum cudaError_t { cudaSuccess = 0, cudaErrorInvalidValue = 1 };
using cudaStream_t = void*;
inline cudaError_t cudaGetLastError() { return cudaSuccess; }
inline const char* cudaGetErrorString(cudaError_t e) { return e == cudaSuccess ? "no error" : "invalid value"; }

extern dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emulator {

// Runs body once per thread of the block, as fibers; see the comment at the top.
void run_block(dim3 block_index, void (*body)(void*), void* context);
void barrier();
void* exchange_buffer();  // room for one 8-byte value per thread of a block

template <typename... P>
struct Launch {
  void (*kernel)(P...);
  dim3 grid, block;

  template <typename... A>
  void operator()(A&&... args) const {
    std::tuple<P...> params(std::forward<A>(args)...);
    struct Context {
      void (*kernel)(P...);
      std::tuple<P...>* params;
    } context{kernel, &params};
    gridDim = grid;
    blockDim = block;
    for (unsigned int z = 0; z < grid.z; ++z)
      for (unsigned int y = 0; y < grid.y; ++y)
        for (unsigned int x = 0; x < grid.x; ++x)
          run_block(dim3(x, y, z), [](void* c) {
            auto* ctx = static_cast<Context*>(c);
            std::apply(ctx->kernel, *ctx->params);
          }, &context);
  }
};

template <typename... P>
Launch<P...> launch(void (*kernel)(P...), dim3 grid, dim3 block, std::size_t = 0, cudaStream_t = nullptr) {
  return {kernel, grid, block};
}

}  // namespace emulator

inline void __syncthreads() { emulator::barrier(); }

template <typename T>
T __shfl_down_sync(unsigned int, T value, int delta) {
  static_assert(sizeof(T) <= 8, "8-byte values at most");
  auto* slots = static_cast<T*>(emulator::exchange_buffer());
  const unsigned int t = (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  slots[t] = value;
  emulator::barrier();
  const T result = (t % 32) + delta < 32 ? slots[t + delta] : value;
  emulator::barrier();
  return result;
}
