// The only file that knows torch: registers the CUDA kernels as operators torch.ops.scarlet_kernels.*.
//
// Every operator writes into output tensors allocated by the caller (scarlet_kernels/cuda_kernels.py), which also
// validates the arguments; the checks here are a last guard against a crash, not the user-facing messages.
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>
#include <torch/extension.h>
#include <torch/library.h>

#include "scarlet_kernels.h"

namespace {

using at::Tensor;
using scarlet::DType;

DType dtype_of(const Tensor& t) {
  switch (t.scalar_type()) {
    case at::kFloat:
      return DType::Float32;
    case at::kHalf:
      return DType::Float16;
    case at::kBFloat16:
      return DType::BFloat16;
    case at::kDouble:
      return DType::Float64;
    default:
      TORCH_CHECK(false, "scarlet_kernels: unsupported dtype ", t.scalar_type());
  }
  return DType::Float32;  // unreachable
}

at::ScalarType accumulator(const Tensor& t) { return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat; }

void check(const Tensor& t, const char* name, int64_t dim, const Tensor& like) {
  TORCH_CHECK(t.is_cuda(), "scarlet_kernels: ", name, " must be a CUDA tensor");
  TORCH_CHECK(t.dim() == dim, "scarlet_kernels: ", name, " must have ", dim, " dimensions, got ", t.dim());
  TORCH_CHECK(t.device() == like.device(), "scarlet_kernels: ", name, " is on another device");
}

void check_same_type(const Tensor& t, const char* name, at::ScalarType type) {
  TORCH_CHECK(t.scalar_type() == type, "scarlet_kernels: ", name, " must be ", type, ", got ", t.scalar_type());
}

scarlet::Strides5 strides5(const Tensor& t) {
  return {t.stride(0), t.stride(1), t.stride(2), t.stride(3), t.stride(4)};
}

// (rows, C, HW) view of a (..., C, H, W) tensor whose leading dimensions and pixels flatten to one stride each.
scarlet::Planes planes(const Tensor& t) {
  const int64_t d = t.dim();
  TORCH_CHECK(d >= 4, "scarlet_kernels: expected a (..., C, H, W) tensor with a batch dimension");
  TORCH_CHECK(t.size(d - 2) == 1 || t.stride(d - 2) == t.size(d - 1) * t.stride(d - 1),
              "scarlet_kernels: H and W must flatten");
  const int64_t hw = t.size(d - 2) * t.size(d - 1);
  const int64_t rows = hw * t.size(d - 3) == 0 ? 0 : t.numel() / (hw * t.size(d - 3));
  return {rows, static_cast<int>(t.size(d - 3)), hw, t.stride(d - 4), t.stride(d - 3), t.stride(d - 1)};
}

void raise_on_error(cudaError_t error, const char* what) {
  TORCH_CHECK(error == cudaSuccess, "scarlet_kernels: ", what, " failed: ", cudaGetErrorString(error));
}

void check_weight(const Tensor& weight, const Tensor& x) {
  check(weight, "weight", 4, x);
  check_same_type(weight, "weight", x.scalar_type());
  TORCH_CHECK(weight.is_contiguous() && weight.size(0) == x.size(0) && weight.size(1) == x.size(2) &&
                  weight.size(2) == 7 && weight.size(3) == 7,
              "scarlet_kernels: weight must be contiguous (P, C, 7, 7)");
}

// x is the (P, N, C, H, W) input (or its gradient), out_or_dy the (P, N, C, H_out, W_out) output (or gradient).
scarlet::DepthwiseShape depthwise_shape(const Tensor& x, const Tensor& out_or_dy, const Tensor& kernel_sizes,
                                        const Tensor& channels, int64_t stride, bool channels_last) {
  check(x, "x", 5, x);
  check(out_or_dy, "y", 5, x);
  check_same_type(out_or_dy, "y", x.scalar_type());
  for (const Tensor* t : {&kernel_sizes, &channels}) {
    check(*t, "kernel_sizes/channels", 1, x);
    check_same_type(*t, "kernel_sizes/channels", at::kInt);
    TORCH_CHECK(t->is_contiguous() && t->size(0) == x.size(0), "scarlet_kernels: need one int32 per path");
  }
  TORCH_CHECK(stride == 1 || stride == 2, "scarlet_kernels: stride must be 1 or 2");
  const int64_t ho = (x.size(3) - 1) / stride + 1, wo = (x.size(4) - 1) / stride + 1;
  TORCH_CHECK(out_or_dy.sizes() == at::IntArrayRef({x.size(0), x.size(1), x.size(2), ho, wo}),
              "scarlet_kernels: the output must be (P, N, C, H_out, W_out)");
  return {dtype_of(x),
          static_cast<int>(x.size(0)),
          static_cast<int>(x.size(1)),
          static_cast<int>(x.size(2)),
          static_cast<int>(x.size(3)),
          static_cast<int>(x.size(4)),
          static_cast<int>(ho),
          static_cast<int>(wo),
          static_cast<int>(stride),
          channels_last,
          kernel_sizes.data_ptr<int>(),
          channels.data_ptr<int>()};
}

void depthwise_forward(const Tensor& x, const Tensor& weight, const Tensor& kernel_sizes, const Tensor& channels,
                       int64_t stride, bool channels_last, const Tensor& y) {
  const c10::cuda::CUDAGuard guard(x.device());
  check_weight(weight, x);
  const auto s = depthwise_shape(x, y, kernel_sizes, channels, stride, channels_last);
  raise_on_error(scarlet::depthwise_forward(s, x.const_data_ptr(), strides5(x), weight.const_data_ptr(),
                                            y.mutable_data_ptr(), strides5(y), at::cuda::getCurrentCUDAStream()),
                 "depthwise_forward");
}

void depthwise_backward_input(const Tensor& dy, const Tensor& weight, const Tensor& kernel_sizes,
                              const Tensor& channels, int64_t stride, bool channels_last, const Tensor& dx) {
  const c10::cuda::CUDAGuard guard(dx.device());
  check_weight(weight, dx);
  const auto s = depthwise_shape(dx, dy, kernel_sizes, channels, stride, channels_last);
  raise_on_error(scarlet::depthwise_backward_input(s, dy.const_data_ptr(), strides5(dy), weight.const_data_ptr(),
                                                   dx.mutable_data_ptr(), strides5(dx),
                                                   at::cuda::getCurrentCUDAStream()),
                 "depthwise_backward_input");
}

void depthwise_backward_weight_partial(const Tensor& dy, const Tensor& x, const Tensor& kernel_sizes,
                                       const Tensor& channels, int64_t stride, bool channels_last,
                                       const Tensor& part) {
  const c10::cuda::CUDAGuard guard(x.device());
  check(part, "part", 4, x);
  check_same_type(part, "part", accumulator(x));
  TORCH_CHECK(part.is_contiguous() && part.size(1) == x.size(0) && part.size(2) == x.size(2) && part.size(3) == 49,
              "scarlet_kernels: part must be contiguous (splits, P, C, 49)");
  const auto s = depthwise_shape(x, dy, kernel_sizes, channels, stride, channels_last);
  raise_on_error(scarlet::depthwise_backward_weight_partial(s, dy.const_data_ptr(), strides5(dy),
                                                            x.const_data_ptr(), strides5(x), part.mutable_data_ptr(),
                                                            static_cast<int>(part.size(0)),
                                                            at::cuda::getCurrentCUDAStream()),
                 "depthwise_backward_weight_partial");
}

void check_per_channel(const Tensor& t, const char* name, const Tensor& a) {
  check(t, name, a.dim() - 2, a);
  check_same_type(t, name, accumulator(a));
  TORCH_CHECK(t.is_contiguous() && t.numel() * a.size(-1) * a.size(-2) == a.numel(),
              "scarlet_kernels: ", name, " must be contiguous with one value per channel plane");
}

void channel_sum(const Tensor& a, const std::optional<Tensor>& b, bool channels_last, const Tensor& out) {
  const c10::cuda::CUDAGuard guard(a.device());
  check(a, "a", a.dim(), a);
  check_per_channel(out, "out", a);
  if (b) {
    check(*b, "b", a.dim(), a);
    check_same_type(*b, "b", a.scalar_type());
    TORCH_CHECK(b->sizes() == a.sizes(), "scarlet_kernels: b must have a's shape");
  }
  const auto pa = planes(a);
  raise_on_error(scarlet::channel_sum(dtype_of(a), a.const_data_ptr(), pa, b ? b->const_data_ptr() : nullptr,
                                      b ? planes(*b) : pa, out.mutable_data_ptr(), channels_last,
                                      at::cuda::getCurrentCUDAStream()),
                 "channel_sum");
}

void channel_scale(const Tensor& a, const Tensor& s, const std::optional<Tensor>& add, bool channels_last,
                   const Tensor& out) {
  const c10::cuda::CUDAGuard guard(a.device());
  check(a, "a", a.dim(), a);
  check(out, "out", a.dim(), a);
  check_same_type(out, "out", a.scalar_type());
  TORCH_CHECK(out.sizes() == a.sizes(), "scarlet_kernels: out must have a's shape");
  check_per_channel(s, "s", a);
  if (add) check_per_channel(*add, "add", a);
  raise_on_error(scarlet::channel_scale(dtype_of(a), a.const_data_ptr(), planes(a), s.const_data_ptr(),
                                        add ? add->const_data_ptr() : nullptr, out.mutable_data_ptr(), planes(out),
                                        channels_last, at::cuda::getCurrentCUDAStream()),
                 "channel_scale");
}

void pointwise(const Tensor& x, const Tensor& w, const std::optional<Tensor>& gate, const Tensor& y) {
  const c10::cuda::CUDAGuard guard(x.device());
  check(x, "x", 5, x);
  check(w, "w", 3, x);
  check(y, "y", 5, x);
  check_same_type(w, "w", x.scalar_type());
  check_same_type(y, "y", x.scalar_type());
  const int64_t P = x.size(0), N = x.size(1), C = x.size(2), Cout = w.size(1);
  TORCH_CHECK(w.size(0) == P && w.size(2) == C, "scarlet_kernels: w must be (P, Cout, C)");
  TORCH_CHECK(y.sizes() == at::IntArrayRef({P, N, Cout, x.size(3), x.size(4)}),
              "scarlet_kernels: y must be (P, N, Cout, H, W)");
  TORCH_CHECK(P * N <= 65535, "scarlet_kernels: pointwise supports at most 65535 path-images");
  if (gate) {
    check(*gate, "gate", 3, x);
    check_same_type(*gate, "gate", accumulator(x));
    TORCH_CHECK(gate->is_contiguous() && gate->size(0) == P && gate->size(1) == N && gate->size(2) == C,
                "scarlet_kernels: gate must be contiguous (P, N, C)");
  }
  const auto px = planes(x), py = planes(y);
  const scarlet::PointwiseShape s{dtype_of(x), static_cast<int>(P), static_cast<int>(N), static_cast<int>(C),
                                  static_cast<int>(Cout), px.HW, x.stride(0), x.stride(1), px.c, px.hw,
                                  w.stride(0), w.stride(1), w.stride(2), y.stride(0), y.stride(1), py.c, py.hw};
  raise_on_error(scarlet::pointwise(s, x.const_data_ptr(), w.const_data_ptr(),
                                    gate ? gate->const_data_ptr() : nullptr, y.mutable_data_ptr(),
                                    at::cuda::getCurrentCUDAStream()),
                 "pointwise");
}

}  // namespace

TORCH_LIBRARY(scarlet_kernels, m) {
  m.def("depthwise_forward(Tensor x, Tensor weight, Tensor kernel_sizes, Tensor channels, int stride, "
        "bool channels_last, Tensor(a!) y) -> ()");
  m.def("depthwise_backward_input(Tensor dy, Tensor weight, Tensor kernel_sizes, Tensor channels, int stride, "
        "bool channels_last, Tensor(a!) dx) -> ()");
  m.def("depthwise_backward_weight_partial(Tensor dy, Tensor x, Tensor kernel_sizes, Tensor channels, "
        "int stride, bool channels_last, Tensor(a!) part) -> ()");
  m.def("channel_sum(Tensor a, Tensor? b, bool channels_last, Tensor(a!) out) -> ()");
  m.def("channel_scale(Tensor a, Tensor s, Tensor? add, bool channels_last, Tensor(a!) out) -> ()");
  m.def("pointwise(Tensor x, Tensor w, Tensor? gate, Tensor(a!) y) -> ()");
}

TORCH_LIBRARY_IMPL(scarlet_kernels, CUDA, m) {
  m.impl("depthwise_forward", &depthwise_forward);
  m.impl("depthwise_backward_input", &depthwise_backward_input);
  m.impl("depthwise_backward_weight_partial", &depthwise_backward_weight_partial);
  m.impl("channel_sum", &channel_sum);
  m.impl("channel_scale", &channel_scale);
  m.impl("pointwise", &pointwise);
}

// Importing the module registers the operators above; it holds nothing else.
PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) { m.doc() = "CUDA kernels of scarlet_kernels (see torch.ops.scarlet_kernels)"; }
