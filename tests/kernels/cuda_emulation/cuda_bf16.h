// Host stand-in for bfloat16: the upper half of a float's bits, rounded to nearest even (finite values).
#pragma once

#include <cstdint>
#include <cstring>

#include "cuda_runtime.h"

struct __nv_bfloat16 {
  uint16_t bits;
};

inline float __bfloat162float(__nv_bfloat16 h) {
  const uint32_t wide = static_cast<uint32_t>(h.bits) << 16;
  float v;
  std::memcpy(&v, &wide, sizeof v);
  return v;
}

inline __nv_bfloat16 __float2bfloat16_rn(float v) {
  uint32_t wide;
  std::memcpy(&wide, &v, sizeof wide);
  wide += 0x7FFFu + ((wide >> 16) & 1u);
  return {static_cast<uint16_t>(wide >> 16)};
}
