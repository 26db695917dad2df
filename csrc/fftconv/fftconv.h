// Launchers of the fused FFT long-convolution kernels (forward and backward).
//
// Pure CUDA interface (no torch types) so that the kernel file compiles on its own with nvcc;
// csrc/fftconv/fftconv_binding.cpp adapts it to torch tensors.
//
// Layout: inputs and outputs are contiguous (rows, channels, length); the filter is given as the
// half spectrum (channels, n / 2 + 1) of complex64 values of the two-sided circular kernel of size
// n = 2^log_n >= 2 * length - 1 (see bertforge/ops/fftconv.py).
#pragma once

namespace bertforge_fftconv {

enum class DType : int { kFloat32 = 0, kBFloat16 = 1, kFloat16 = 2 };

// Smallest and largest supported transform sizes (log2). At 2^14 the forward kernel takes 136 KiB of shared
// memory per block and the backward 200 KiB (Hopper allows 227 KiB; A100 163 KiB, so 2^13 there).
constexpr int kMinLogN = 6;
constexpr int kMaxLogN = 14;

// y = irfft(rfft(u, n) * kf, n)[..., :length], two rows per thread block. Returns nullptr or an error message.
const char* launch_forward(DType dtype, const void* u, const void* kf, void* y, int rows, int channels, int length,
                           int log_n, void* stream);

// du = irfft(rfft(dy, n) * conj(kf), n)[..., :length]; kf_grad_partial[chunk, c, :] = sum over the chunk's rows of
// rfft(dy) * conj(rfft(u)) (complex64, (chunks, channels, n / 2 + 1)). Returns nullptr or an error message.
const char* launch_backward(DType dtype, const void* dy, const void* u, const void* kf, void* du,
                            void* kf_grad_partial, int rows, int channels, int length, int log_n, int chunks,
                            void* stream);

}  // namespace bertforge_fftconv
