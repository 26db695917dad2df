// CPU stand-in for the parts of the CUDA runtime that csrc/fftconv's kernels use, so that the very
// same kernel source runs on a CPU: every CUDA thread of a block is a std::thread, __syncthreads()
// is a std::barrier, and blocks run one after another (see emulator.cpp). Test-only.
#pragma once

#include <barrier>
#include <cmath>
#include <cstddef>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __restrict__
#define __shared__
#define __launch_bounds__(threads)

struct float2 {
  float x, y;
};
inline float2 make_float2(float x, float y) { return {x, y}; }

struct uint3 {
  unsigned x, y, z;
};

extern thread_local uint3 threadIdx;
extern thread_local uint3 blockIdx;
extern std::barrier<>* emulated_block_barrier;

inline void __syncthreads() { emulated_block_barrier->arrive_and_wait(); }

// CUDA's sincospif is accurate to a few ulp: take the double result rounded to float.
inline void sincospif(float x, float* s, float* c) {
  const double a = M_PI * static_cast<double>(x);
  *s = static_cast<float>(std::sin(a));
  *c = static_cast<float>(std::cos(a));
}
