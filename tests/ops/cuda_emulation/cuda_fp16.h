// CPU stand-in for cuda_fp16.h on top of the compiler's _Float16. Test-only.
#pragma once

struct __half {
  _Float16 value;
};

inline float __half2float(__half h) { return static_cast<float>(h.value); }
inline __half __float2half(float f) { return {static_cast<_Float16>(f)}; }
