// Host stand-ins for the 16-bit float types: storage types converting through float with round-to-nearest-even.
#pragma once

#include <cstdint>
#include <cstring>

#include "cuda_runtime.h"

struct __half {
  _Float16 value;
  __half() = default;
  explicit __half(float v) : value(static_cast<_Float16>(v)) {}
};

inline float __half2float(__half h) { return static_cast<float>(h.value); }
inline __half __float2half_rn(float v) { return __half(v); }
