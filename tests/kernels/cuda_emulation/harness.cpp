// The fiber scheduler behind cuda_runtime.h, and a C interface to the csrc/ entry points for ctypes.
#include <ucontext.h>

#include <memory>
#include <vector>

#include "scarlet_kernels.h"

dim3 threadIdx, blockIdx, blockDim, gridDim;

namespace emulator {
namespace {

constexpr std::size_t kStackBytes = 128 * 1024;

struct Fiber {
  ucontext_t context;
  std::unique_ptr<char[]> stack;
  dim3 index;
  bool done;
};

ucontext_t scheduler;
std::vector<Fiber> fibers;
std::size_t current;
void (*block_body)(void*);
void* block_context;
alignas(16) unsigned char exchange[1024 * 8];

void trampoline() {
  block_body(block_context);
  fibers[current].done = true;  // returning switches to uc_link, the scheduler
}

}  // namespace

void run_block(dim3 block_index, void (*body)(void*), void* context) {
  blockIdx = block_index;
  block_body = body;
  block_context = context;
  const unsigned int n = blockDim.x * blockDim.y * blockDim.z;
  if (fibers.size() < n) fibers.resize(n);
  for (unsigned int i = 0; i < n; ++i) {
    Fiber& f = fibers[i];
    if (!f.stack) f.stack.reset(new char[kStackBytes]);
    f.index = dim3(i % blockDim.x, (i / blockDim.x) % blockDim.y, i / (blockDim.x * blockDim.y));
    f.done = false;
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = f.stack.get();
    f.context.uc_stack.ss_size = kStackBytes;
    f.context.uc_link = &scheduler;
    makecontext(&f.context, trampoline, 0);
  }
  // Each pass runs every live thread up to its next barrier or its end, in thread order.
  for (bool live = true; live;) {
    live = false;
    for (unsigned int i = 0; i < n; ++i) {
      if (fibers[i].done) continue;
      current = i;
      threadIdx = fibers[i].index;
      swapcontext(&scheduler, &fibers[i].context);
      live = live || !fibers[i].done;
    }
  }
}

void barrier() { swapcontext(&fibers[current].context, &scheduler); }

void* exchange_buffer() { return exchange; }

}  // namespace emulator

namespace {

scarlet::Strides5 strides5(const int64_t* s) { return {s[0], s[1], s[2], s[3], s[4]}; }

scarlet::Planes planes(const int64_t* p) { return {p[0], static_cast<int>(p[1]), p[2], p[3], p[4], p[5]}; }

// dims: P, N, C, H, W, Ho, Wo, stride, channels_last
scarlet::DepthwiseShape depthwise_shape(int dtype, const int64_t* d, const int* kernel_sizes, const int* channels) {
  return {static_cast<scarlet::DType>(dtype),
          static_cast<int>(d[0]),
          static_cast<int>(d[1]),
          static_cast<int>(d[2]),
          static_cast<int>(d[3]),
          static_cast<int>(d[4]),
          static_cast<int>(d[5]),
          static_cast<int>(d[6]),
          static_cast<int>(d[7]),
          d[8] != 0,
          kernel_sizes,
          channels};
}

}  // namespace

extern "C" {

int emu_depthwise_forward(int dtype, const int64_t* dims, const int* ks, const int* ch, const void* x,
                          const int64_t* sx, const void* w, void* y, const int64_t* sy) {
  return scarlet::depthwise_forward(depthwise_shape(dtype, dims, ks, ch), x, strides5(sx), w, y, strides5(sy),
                                    nullptr);
}

int emu_depthwise_backward_input(int dtype, const int64_t* dims, const int* ks, const int* ch, const void* dy,
                                 const int64_t* sdy, const void* w, void* dx, const int64_t* sdx) {
  return scarlet::depthwise_backward_input(depthwise_shape(dtype, dims, ks, ch), dy, strides5(sdy), w, dx,
                                           strides5(sdx), nullptr);
}

int emu_depthwise_backward_weight_partial(int dtype, const int64_t* dims, const int* ks, const int* ch,
                                          const void* dy, const int64_t* sdy, const void* x, const int64_t* sx,
                                          void* part, int splits) {
  return scarlet::depthwise_backward_weight_partial(depthwise_shape(dtype, dims, ks, ch), dy, strides5(sdy), x,
                                                    strides5(sx), part, splits, nullptr);
}

int emu_channel_sum(int dtype, const void* a, const int64_t* pa, const void* b, const int64_t* pb, void* out,
                    int channels_last) {
  return scarlet::channel_sum(static_cast<scarlet::DType>(dtype), a, planes(pa), b, planes(pb), out,
                              channels_last != 0, nullptr);
}

int emu_channel_scale(int dtype, const void* a, const int64_t* pa, const void* s, const void* add, void* out,
                      const int64_t* po, int channels_last) {
  return scarlet::channel_scale(static_cast<scarlet::DType>(dtype), a, planes(pa), s, add, out, planes(po),
                                channels_last != 0, nullptr);
}

// d: P, N, C, Cout, HW, x strides (p, n, c, hw), w strides (p, o, c), y strides (p, n, o, hw)
int emu_pointwise(int dtype, const int64_t* d, const void* x, const void* w, const void* gate, void* y) {
  const scarlet::PointwiseShape s{static_cast<scarlet::DType>(dtype), static_cast<int>(d[0]), static_cast<int>(d[1]),
                                  static_cast<int>(d[2]), static_cast<int>(d[3]), d[4], d[5], d[6], d[7], d[8],
                                  d[9], d[10], d[11], d[12], d[13], d[14], d[15]};
  return scarlet::pointwise(s, x, w, gate, y, nullptr);
}

}  // extern "C"
