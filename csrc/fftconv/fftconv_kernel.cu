// Fused FFT long convolution for M2-BERT: forward and backward in one kernel each.
//
// Every thread block keeps one transform of n = 2^LOG_N complex values in shared memory and runs a
// Stockham (self-sorting) FFT on it: radix-16 passes computed in registers, one round trip through
// shared memory per pass. Inputs are read once from global memory and outputs written once; the
// zero padding, the pointwise product with the filter spectrum and the final slice never touch
// global memory (torch.fft needs a padded copy, two spectra and a slice).
//
// Forward: two real rows a, b of the same channel travel as one complex signal a + i*b. Because the
// filter is real, ifft(fft(a + i*b) * H) = (a * h) + i * (b * h): one complex transform pair serves two rows.
// Backward: one row; z = dy + i*u gives both spectra DY and U from one transform. du = ifft(DY * conj(H));
// the filter gradient's spectrum sum_rows DY * conj(U) is accumulated in shared memory per (chunk, channel).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include "fftconv.h"

namespace bertforge_fftconv {
namespace {

__device__ __forceinline__ float2 cmul(float2 a, float2 b) {
  return make_float2(a.x * b.x - a.y * b.y, a.x * b.y + a.y * b.x);
}
__device__ __forceinline__ float2 cconj(float2 a) { return make_float2(a.x, -a.y); }
__device__ __forceinline__ float2 cadd(float2 a, float2 b) { return make_float2(a.x + b.x, a.y + b.y); }
__device__ __forceinline__ float2 csub(float2 a, float2 b) { return make_float2(a.x - b.x, a.y - b.y); }

// Shared-memory slot of transform element i: one spare slot after every 16 elements, so the first
// Stockham pass (stride-16 stores) and every other access pattern hit distinct banks.
__host__ __device__ constexpr int slot(int i) { return i + (i >> 4); }
__host__ __device__ constexpr int padded_size(int n) { return n + (n >> 4); }

__device__ __forceinline__ float load_float(const float* p) { return *p; }
__device__ __forceinline__ float load_float(const __nv_bfloat16* p) { return __bfloat162float(*p); }
__device__ __forceinline__ float load_float(const __half* p) { return __half2float(*p); }
__device__ __forceinline__ void store_float(float* p, float x) { *p = x; }
__device__ __forceinline__ void store_float(__nv_bfloat16* p, float x) { *p = __float2bfloat16(x); }
__device__ __forceinline__ void store_float(__half* p, float x) { *p = __float2half(x); }

__host__ __device__ constexpr int bit_reverse(int x, int bits) {
  int r = 0;
  for (int i = 0; i < bits; ++i) r = (r << 1) | ((x >> i) & 1);
  return r;
}

__host__ __device__ constexpr int log2_of(int r) { return r <= 1 ? 0 : 1 + log2_of(r / 2); }

// Threads per block for a transform of size 2^log_n: 16 values per thread, at least a warp, at most 1024.
__host__ __device__ constexpr int threads_for(int log_n) {
  return (1 << log_n) / 16 < 32 ? 32 : ((1 << log_n) / 16 > 1024 ? 1024 : (1 << log_n) / 16);
}

// exp(-+2 pi i m / 16) for m in [0, 8): the twiddles of an in-register radix-16 (or smaller) DFT.
// m is a compile-time constant after unrolling, so the switch folds away.
template <bool INVERSE>
__device__ __forceinline__ float2 root_of_unity16(int m) {
  constexpr float kC1 = 0.92387953251128674f, kC2 = 0.70710678118654752f, kC3 = 0.38268343236508977f;
  float c = 1.0f, s = 0.0f;
  switch (m) {
    case 1: c = kC1; s = kC3; break;
    case 2: c = kC2; s = kC2; break;
    case 3: c = kC3; s = kC1; break;
    case 4: c = 0.0f; s = 1.0f; break;
    case 5: c = -kC3; s = kC1; break;
    case 6: c = -kC2; s = kC2; break;
    case 7: c = -kC1; s = kC3; break;
    default: break;
  }
  return make_float2(c, INVERSE ? s : -s);
}

// In-place DFT of R values held in registers (natural order in, natural order out), radix-2 steps.
template <int R, bool INVERSE>
__device__ __forceinline__ void register_dft(float2 (&v)[R]) {
  constexpr int kLogR = log2_of(R);
#pragma unroll
  for (int i = 0; i < R; ++i) {
    const int j = bit_reverse(i, kLogR);
    if (i < j) {
      const float2 t = v[i];
      v[i] = v[j];
      v[j] = t;
    }
  }
#pragma unroll
  for (int half = 1; half < R; half *= 2) {
#pragma unroll
    for (int start = 0; start < R; start += 2 * half) {
#pragma unroll
      for (int m = 0; m < half; ++m) {
        const float2 a = v[start + m];
        const float2 b = cmul(v[start + m + half], root_of_unity16<INVERSE>(m * (8 / half)));
        v[start + m] = cadd(a, b);
        v[start + m + half] = csub(a, b);
      }
    }
  }
}

// One radix-R Stockham pass over buf (N values) for sub-transforms of size ns -> ns * R.
// Every thread loads all its values before any thread stores, so the pass works in place.
template <int R, int N, int THREADS, bool INVERSE>
__device__ __forceinline__ void stockham_pass(float2* buf, int ns) {
  constexpr int kButterflies = N / R;
  constexpr int kPerThread = (kButterflies + THREADS - 1) / THREADS;
  float2 v[kPerThread][R];
#pragma unroll
  for (int b = 0; b < kPerThread; ++b) {
    const int j = threadIdx.x + b * THREADS;
    if (j < kButterflies) {
#pragma unroll
      for (int r = 0; r < R; ++r) v[b][r] = buf[slot(j + r * kButterflies)];
    }
  }
  __syncthreads();
#pragma unroll
  for (int b = 0; b < kPerThread; ++b) {
    const int j = threadIdx.x + b * THREADS;
    if (j < kButterflies) {
      const int k = j & (ns - 1);
      float2 w;
      sincospif((INVERSE ? 2.0f : -2.0f) * static_cast<float>(k) / static_cast<float>(ns * R), &w.y, &w.x);
      // w^r from w, w^2, w^4, w^8 (at most three products each: a few roundings, no long chain).
      const float2 w2 = cmul(w, w), w4 = cmul(w2, w2), w8 = cmul(w4, w4);
#pragma unroll
      for (int r = 1; r < R; ++r) {
        float2 p = (r & 1) ? w : make_float2(1.0f, 0.0f);
        if (r & 2) p = cmul(p, w2);
        if (r & 4) p = cmul(p, w4);
        if (r & 8) p = cmul(p, w8);
        v[b][r] = cmul(v[b][r], p);
      }
      register_dft<R, INVERSE>(v[b]);
      const int dst = (j - k) * R + k;
#pragma unroll
      for (int r = 0; r < R; ++r) buf[slot(dst + r * ns)] = v[b][r];
    }
  }
  __syncthreads();
}

// Full FFT of 2^LOG_N values in shared memory: radix-16 passes, then one smaller pass for the rest.
template <int LOG_N, int THREADS, bool INVERSE, int DONE = 0>
__device__ __forceinline__ void shared_fft(float2* buf, int ns = 1) {
  constexpr int kRemaining = LOG_N - DONE;
  if constexpr (kRemaining >= 4) {
    stockham_pass<16, (1 << LOG_N), THREADS, INVERSE>(buf, ns);
    shared_fft<LOG_N, THREADS, INVERSE, DONE + 4>(buf, ns * 16);
  } else if constexpr (kRemaining > 0) {
    stockham_pass<(1 << kRemaining), (1 << LOG_N), THREADS, INVERSE>(buf, ns);
  }
}

// Filter spectrum value t of the full (Hermitian) spectrum from its stored half.
template <int N>
__device__ __forceinline__ float2 full_spectrum(const float2* half, int t) {
  return t <= N / 2 ? half[t] : cconj(half[N - t]);
}

template <typename T, int LOG_N>
__global__ void __launch_bounds__(threads_for(LOG_N))
    fftconv_forward_kernel(const T* __restrict__ u, const float2* __restrict__ kf, T* __restrict__ y, int rows,
                           int channels, int length) {
  constexpr int N = 1 << LOG_N;
  constexpr int THREADS = threads_for(LOG_N);
  extern __shared__ float2 buf[];
  const int channel = blockIdx.y;
  const int row_a = 2 * blockIdx.x;
  const bool has_b = row_a + 1 < rows;
  const size_t offset_a = (static_cast<size_t>(row_a) * channels + channel) * length;
  const size_t offset_b = offset_a + static_cast<size_t>(channels) * length;
  for (int t = threadIdx.x; t < N; t += THREADS) {
    const float re = t < length ? load_float(u + offset_a + t) : 0.0f;
    const float im = (has_b && t < length) ? load_float(u + offset_b + t) : 0.0f;
    buf[slot(t)] = make_float2(re, im);
  }
  __syncthreads();
  shared_fft<LOG_N, THREADS, false>(buf);
  const float2* filter = kf + static_cast<size_t>(channel) * (N / 2 + 1);
  for (int t = threadIdx.x; t < N; t += THREADS) {
    buf[slot(t)] = cmul(buf[slot(t)], full_spectrum<N>(filter, t));
  }
  __syncthreads();
  shared_fft<LOG_N, THREADS, true>(buf);
  const float scale = 1.0f / N;
  for (int t = threadIdx.x; t < length; t += THREADS) {
    store_float(y + offset_a + t, buf[slot(t)].x * scale);
    if (has_b) store_float(y + offset_b + t, buf[slot(t)].y * scale);
  }
}

template <typename T, int LOG_N>
__global__ void __launch_bounds__(threads_for(LOG_N))
    fftconv_backward_kernel(const T* __restrict__ dy, const T* __restrict__ u, const float2* __restrict__ kf,
                            T* __restrict__ du, float2* __restrict__ kf_grad_partial, int rows, int channels,
                            int length, int chunks) {
  constexpr int N = 1 << LOG_N;
  constexpr int THREADS = threads_for(LOG_N);
  extern __shared__ float2 smem[];
  float2* buf = smem;
  float2* grad = smem + padded_size(N);  // N / 2 + 1 accumulators, each owned by one thread throughout
  const int channel = blockIdx.x;
  const int chunk = blockIdx.y;
  const float2* filter = kf + static_cast<size_t>(channel) * (N / 2 + 1);
  for (int t = threadIdx.x; t <= N / 2; t += THREADS) grad[t] = make_float2(0.0f, 0.0f);
  const float scale = 1.0f / N;
  for (int row = chunk; row < rows; row += chunks) {
    const size_t offset = (static_cast<size_t>(row) * channels + channel) * length;
    for (int t = threadIdx.x; t < N; t += THREADS) {
      buf[slot(t)] = t < length ? make_float2(load_float(dy + offset + t), load_float(u + offset + t))
                          : make_float2(0.0f, 0.0f);
    }
    __syncthreads();
    shared_fft<LOG_N, THREADS, false>(buf);
    // Split Z = DY + i U using the symmetry of real signals; t and N - t are handled by the same thread.
    for (int t = threadIdx.x; t <= N / 2; t += THREADS) {
      const int s = (N - t) & (N - 1);
      const float2 zt = buf[slot(t)], zs = buf[slot(s)];
      const float2 dy_hat = make_float2(0.5f * (zt.x + zs.x), 0.5f * (zt.y - zs.y));
      const float2 u_hat = make_float2(0.5f * (zt.y + zs.y), -0.5f * (zt.x - zs.x));
      const float2 du_hat = cmul(dy_hat, cconj(filter[t]));
      grad[t] = cadd(grad[t], cmul(dy_hat, cconj(u_hat)));
      buf[slot(t)] = du_hat;
      buf[slot(s)] = cconj(du_hat);
    }
    __syncthreads();
    shared_fft<LOG_N, THREADS, true>(buf);
    for (int t = threadIdx.x; t < length; t += THREADS) store_float(du + offset + t, buf[slot(t)].x * scale);
    __syncthreads();
  }
  float2* out = kf_grad_partial + (static_cast<size_t>(chunk) * channels + channel) * (N / 2 + 1);
  for (int t = threadIdx.x; t <= N / 2; t += THREADS) out[t] = grad[t];
}

// Host side: one launcher per (dtype, size), picked from tables at run time. A CPU emulation of the
// kernels (tests/ops/cuda_emulation) compiles this file with BERTFORGE_CUDA_EMULATION and its own launcher.
#ifndef BERTFORGE_CUDA_EMULATION
template <typename T, int LOG_N>
struct Forward {
  static const char* run(const void* u, const void* kf, void* y, int rows, int channels, int length,
                         cudaStream_t stream) {
    const int shared = static_cast<int>(sizeof(float2) * padded_size(1 << LOG_N));
    auto kernel = fftconv_forward_kernel<T, LOG_N>;
    cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, shared);
    if (err != cudaSuccess) return cudaGetErrorString(err);
    const dim3 grid((rows + 1) / 2, channels);
    kernel<<<grid, threads_for(LOG_N), shared, stream>>>(static_cast<const T*>(u), static_cast<const float2*>(kf),
                                                         static_cast<T*>(y), rows, channels, length);
    err = cudaGetLastError();
    return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
  }
};

template <typename T, int LOG_N>
struct Backward {
  static const char* run(const void* dy, const void* u, const void* kf, void* du, void* kf_grad_partial, int rows,
                         int channels, int length, int chunks, cudaStream_t stream) {
    const int shared = static_cast<int>(sizeof(float2) * (padded_size(1 << LOG_N) + (1 << (LOG_N - 1)) + 1));
    auto kernel = fftconv_backward_kernel<T, LOG_N>;
    cudaError_t err = cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, shared);
    if (err != cudaSuccess) return cudaGetErrorString(err);
    const dim3 grid(channels, chunks);
    kernel<<<grid, threads_for(LOG_N), shared, stream>>>(
        static_cast<const T*>(dy), static_cast<const T*>(u), static_cast<const float2*>(kf), static_cast<T*>(du),
        static_cast<float2*>(kf_grad_partial), rows, channels, length, chunks);
    err = cudaGetLastError();
    return err == cudaSuccess ? nullptr : cudaGetErrorString(err);
  }
};

// &Op<T, log_n>::run for a run-time log_n (nullptr when out of range).
template <template <typename, int> class Op, typename T>
auto pick_size(int log_n) -> decltype(&Op<T, kMinLogN>::run) {
  switch (log_n) {
    case 6: return &Op<T, 6>::run;
    case 7: return &Op<T, 7>::run;
    case 8: return &Op<T, 8>::run;
    case 9: return &Op<T, 9>::run;
    case 10: return &Op<T, 10>::run;
    case 11: return &Op<T, 11>::run;
    case 12: return &Op<T, 12>::run;
    case 13: return &Op<T, 13>::run;
    case 14: return &Op<T, 14>::run;
    default: return nullptr;
  }
}

template <template <typename, int> class Op>
auto pick(DType dtype, int log_n) -> decltype(&Op<float, kMinLogN>::run) {
  switch (dtype) {
    case DType::kFloat32: return pick_size<Op, float>(log_n);
    case DType::kBFloat16: return pick_size<Op, __nv_bfloat16>(log_n);
    case DType::kFloat16: return pick_size<Op, __half>(log_n);
  }
  return nullptr;
}

constexpr const char* kBadSize = "fftconv: unsupported dtype or transform size (log2 n must be in [6, 14])";

}  // namespace

const char* launch_forward(DType dtype, const void* u, const void* kf, void* y, int rows, int channels, int length,
                           int log_n, void* stream) {
  if (rows == 0 || channels == 0 || length == 0) return nullptr;
  auto run = pick<Forward>(dtype, log_n);
  if (run == nullptr) return kBadSize;
  return run(u, kf, y, rows, channels, length, static_cast<cudaStream_t>(stream));
}

const char* launch_backward(DType dtype, const void* dy, const void* u, const void* kf, void* du,
                            void* kf_grad_partial, int rows, int channels, int length, int log_n, int chunks,
                            void* stream) {
  if (rows == 0 || channels == 0 || length == 0) return nullptr;
  auto run = pick<Backward>(dtype, log_n);
  if (run == nullptr) return kBadSize;
  return run(dy, u, kf, du, kf_grad_partial, rows, channels, length, chunks, static_cast<cudaStream_t>(stream));
}

}  // namespace bertforge_fftconv
#else
}  // namespace
}  // namespace bertforge_fftconv
#endif  // BERTFORGE_CUDA_EMULATION
