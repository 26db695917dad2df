// CPU stand-in for cuda_bf16.h: bfloat16 storage with round-to-nearest-even conversion. Test-only.
#pragma once

#include <cstdint>
#include <cstring>

struct __nv_bfloat16 {
  uint16_t bits;
};

inline float __bfloat162float(__nv_bfloat16 h) {
  const uint32_t w = static_cast<uint32_t>(h.bits) << 16;
  float f;
  std::memcpy(&f, &w, sizeof f);
  return f;
}

inline __nv_bfloat16 __float2bfloat16(float f) {
  uint32_t w;
  std::memcpy(&w, &f, sizeof w);
  w += 0x7FFFu + ((w >> 16) & 1u);  // round to nearest even (inputs here are finite)
  return {static_cast<uint16_t>(w >> 16)};
}
