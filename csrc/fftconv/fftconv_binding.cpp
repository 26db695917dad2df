// torch binding of the fused FFT long-convolution kernels: module bertforge_fftconv_cuda.
//
// forward(u, kf, log_n) -> y and backward(dy, u, kf, log_n, chunks) -> (du, kf_grad_partial), where
// u, dy: (rows, channels, length) float32 / bfloat16 / float16 CUDA tensors and kf: the complex64 half
// spectrum (channels, 2^log_n / 2 + 1) of the two-sided filter. The autograd wrapper lives in
// bertforge/ops/fftconv_cuda.py.
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include <tuple>

#include "fftconv.h"

namespace {

using bertforge_fftconv::DType;

DType kernel_dtype(const torch::Tensor& t) {
  switch (t.scalar_type()) {
    case torch::kFloat32: return DType::kFloat32;
    case torch::kBFloat16: return DType::kBFloat16;
    case torch::kFloat16: return DType::kFloat16;
    default: TORCH_CHECK(false, "fftconv: inputs must be float32, bfloat16 or float16, got ", t.scalar_type());
  }
}

void check_inputs(const torch::Tensor& u, const torch::Tensor& kf, int64_t log_n) {
  TORCH_CHECK(u.is_cuda() && kf.is_cuda(), "fftconv: tensors must be on a CUDA device");
  TORCH_CHECK(u.dim() == 3 && u.is_contiguous(), "fftconv: u must be a contiguous (rows, channels, length) tensor");
  TORCH_CHECK(log_n >= bertforge_fftconv::kMinLogN && log_n <= bertforge_fftconv::kMaxLogN,
              "fftconv: log_n must be in [", bertforge_fftconv::kMinLogN, ", ", bertforge_fftconv::kMaxLogN, "]");
  TORCH_CHECK((int64_t{1} << log_n) >= 2 * u.size(2) - 1, "fftconv: 2^log_n must be >= 2 * length - 1");
  TORCH_CHECK(kf.scalar_type() == torch::kComplexFloat && kf.is_contiguous() && kf.dim() == 2 &&
                  kf.size(0) == u.size(1) && kf.size(1) == (int64_t{1} << (log_n - 1)) + 1,
              "fftconv: kf must be a contiguous complex64 (channels, n / 2 + 1) tensor");
  TORCH_CHECK(u.size(0) < INT32_MAX && u.size(1) <= 65535 && u.size(2) < INT32_MAX, "fftconv: tensor too large");
}

torch::Tensor forward(torch::Tensor u, torch::Tensor kf, int64_t log_n) {
  check_inputs(u, kf, log_n);
  const c10::cuda::CUDAGuard guard(u.device());
  auto y = torch::empty_like(u);
  const char* err = bertforge_fftconv::launch_forward(
      kernel_dtype(u), u.data_ptr(), kf.data_ptr(), y.data_ptr(), static_cast<int>(u.size(0)),
      static_cast<int>(u.size(1)), static_cast<int>(u.size(2)), static_cast<int>(log_n),
      c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == nullptr, "fftconv forward: ", err ? err : "");
  return y;
}

std::tuple<torch::Tensor, torch::Tensor> backward(torch::Tensor dy, torch::Tensor u, torch::Tensor kf, int64_t log_n,
                                                  int64_t chunks) {
  check_inputs(u, kf, log_n);
  TORCH_CHECK(dy.sizes() == u.sizes() && dy.scalar_type() == u.scalar_type() && dy.is_contiguous(),
              "fftconv backward: dy must be contiguous with u's shape and dtype");
  TORCH_CHECK(chunks >= 1 && chunks <= 65535, "fftconv backward: chunks must be in [1, 65535]");
  const c10::cuda::CUDAGuard guard(u.device());
  auto du = torch::empty_like(u);
  auto partial = torch::empty({chunks, kf.size(0), kf.size(1)}, kf.options());
  const char* err = bertforge_fftconv::launch_backward(
      kernel_dtype(u), dy.data_ptr(), u.data_ptr(), kf.data_ptr(), du.data_ptr(), partial.data_ptr(),
      static_cast<int>(u.size(0)), static_cast<int>(u.size(1)), static_cast<int>(u.size(2)), static_cast<int>(log_n),
      static_cast<int>(chunks), c10::cuda::getCurrentCUDAStream().stream());
  TORCH_CHECK(err == nullptr, "fftconv backward: ", err ? err : "");
  return {du, partial};
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "bertforge fused FFT long convolution (forward and backward)";
  m.def("forward", &forward, "y = linear convolution of u with the filter whose half spectrum is kf");
  m.def("backward", &backward, "(du, per-chunk filter-spectrum gradient) for dy");
  m.attr("min_log_n") = bertforge_fftconv::kMinLogN;
  m.attr("max_log_n") = bertforge_fftconv::kMaxLogN;
}
