// Runs csrc/fftconv's CUDA kernels, unchanged, on a CPU: one std::thread per CUDA thread, a barrier
// for __syncthreads(), blocks one after another. Built and driven by tests/ops/test_fftconv_emulated.py.
//
//   emulator forward|backward f32|bf16 ROWS CHANNELS LENGTH LOG_N CHUNKS DIR
//
// DIR holds float32 little-endian inputs u.bin, kf.bin (interleaved complex), dy.bin (backward); the
// outputs y.bin, or du.bin and partial.bin, are written there as float32.
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "fftconv_kernel.cu"

thread_local uint3 threadIdx;
thread_local uint3 blockIdx;
std::barrier<>* emulated_block_barrier = nullptr;

namespace bertforge_fftconv {
namespace {
// The kernels' `extern __shared__` arrays; blocks run one at a time, so one copy of each suffices.
float2 buf[padded_size(1 << kMaxLogN)];
float2 smem[padded_size(1 << kMaxLogN) + (1 << (kMaxLogN - 1)) + 1];
}  // namespace
}  // namespace bertforge_fftconv

namespace {

template <typename Fn>
void run_grid(unsigned grid_x, unsigned grid_y, int threads, Fn fn) {
  for (unsigned by = 0; by < grid_y; ++by) {
    for (unsigned bx = 0; bx < grid_x; ++bx) {
      std::barrier<> barrier(threads);
      emulated_block_barrier = &barrier;
      std::vector<std::thread> pool;
      for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&, t] {
          threadIdx = {static_cast<unsigned>(t), 0, 0};
          blockIdx = {bx, by, 0};
          fn();
        });
      }
      for (auto& thread : pool) thread.join();
    }
  }
}

std::vector<float> read_floats(const std::string& path, size_t count) {
  std::vector<float> data(count);
  FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr || std::fread(data.data(), sizeof(float), count, f) != count) {
    std::fprintf(stderr, "cannot read %zu floats from %s\n", count, path.c_str());
    std::exit(2);
  }
  std::fclose(f);
  return data;
}

void write_floats(const std::string& path, const std::vector<float>& data) {
  FILE* f = std::fopen(path.c_str(), "wb");
  std::fwrite(data.data(), sizeof(float), data.size(), f);
  std::fclose(f);
}

// Element conversions are the kernel's own load_float / store_float.
template <typename T>
std::vector<T> to_type(const std::vector<float>& x) {
  std::vector<T> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) bertforge_fftconv::store_float(&out[i], x[i]);
  return out;
}

template <typename T>
std::vector<float> to_float(const std::vector<T>& x) {
  std::vector<float> out(x.size());
  for (size_t i = 0; i < x.size(); ++i) out[i] = bertforge_fftconv::load_float(&x[i]);
  return out;
}

template <typename T, int LOG_N>
void run(bool backward, int rows, int channels, int length, int chunks, const std::string& dir) {
  using namespace bertforge_fftconv;
  constexpr int N = 1 << LOG_N;
  constexpr int THREADS = threads_for(LOG_N);
  const size_t count = static_cast<size_t>(rows) * channels * length;
  const std::vector<T> u = to_type<T>(read_floats(dir + "/u.bin", count));
  const std::vector<float> kf_raw = read_floats(dir + "/kf.bin", static_cast<size_t>(channels) * (N / 2 + 1) * 2);
  const float2* kf = reinterpret_cast<const float2*>(kf_raw.data());
  if (!backward) {
    std::vector<T> y(count);
    run_grid((rows + 1) / 2, channels, THREADS, [&] {
      fftconv_forward_kernel<T, LOG_N>(u.data(), kf, y.data(), rows, channels, length);
    });
    write_floats(dir + "/y.bin", to_float(y));
    return;
  }
  const std::vector<T> dy = to_type<T>(read_floats(dir + "/dy.bin", count));
  std::vector<T> du(count);
  std::vector<float> partial(static_cast<size_t>(chunks) * channels * (N / 2 + 1) * 2);
  run_grid(channels, chunks, THREADS, [&] {
    fftconv_backward_kernel<T, LOG_N>(dy.data(), u.data(), kf, du.data(), reinterpret_cast<float2*>(partial.data()),
                                      rows, channels, length, chunks);
  });
  write_floats(dir + "/du.bin", to_float(du));
  write_floats(dir + "/partial.bin", partial);
}

template <typename T>
void dispatch(int log_n, bool backward, int rows, int channels, int length, int chunks, const std::string& dir) {
  switch (log_n) {
    case 6: return run<T, 6>(backward, rows, channels, length, chunks, dir);
    case 7: return run<T, 7>(backward, rows, channels, length, chunks, dir);
    case 8: return run<T, 8>(backward, rows, channels, length, chunks, dir);
    case 9: return run<T, 9>(backward, rows, channels, length, chunks, dir);
    case 10: return run<T, 10>(backward, rows, channels, length, chunks, dir);
    case 11: return run<T, 11>(backward, rows, channels, length, chunks, dir);
    case 12: return run<T, 12>(backward, rows, channels, length, chunks, dir);
    case 13: return run<T, 13>(backward, rows, channels, length, chunks, dir);
    case 14: return run<T, 14>(backward, rows, channels, length, chunks, dir);
    default: std::fprintf(stderr, "log_n %d out of range (6..14)\n", log_n); std::exit(2);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 9) {
    std::fprintf(stderr, "usage: emulator forward|backward f32|bf16 ROWS CHANNELS LENGTH LOG_N CHUNKS DIR\n");
    return 2;
  }
  const bool backward = std::string(argv[1]) == "backward";
  const bool bf16 = std::string(argv[2]) == "bf16";
  const int rows = std::atoi(argv[3]), channels = std::atoi(argv[4]), length = std::atoi(argv[5]);
  const int log_n = std::atoi(argv[6]), chunks = std::atoi(argv[7]);
  if (bf16) dispatch<__nv_bfloat16>(log_n, backward, rows, channels, length, chunks, argv[8]);
  else dispatch<float>(log_n, backward, rows, channels, length, chunks, argv[8]);
  return 0;
}
