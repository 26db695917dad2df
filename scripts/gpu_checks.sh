#!/usr/bin/env bash
# Every GPU check in one go, for a machine with an NVIDIA GPU and torch + nvcc installed (no other
# package needed: the kernel tests import only torch and bertforge). JIT-builds the fused FFT-conv
# kernel, runs the tests marked `gpu`, and takes the kernel-vs-torch.fft benchmark and the fused Triton kernels'
# benchmark (needs liger-kernel: `pip install -e .[gpu]`), and the sampler benchmark with key/value caches (needs
# transformers).
#   bash scripts/gpu_checks.sh [output folder, default bench/gpu]
set -o pipefail
out=${1:-${OUT:-bench/gpu}}
mkdir -p "$out"
export PYTHONPATH=$PWD/src:$PWD PYTHONUNBUFFERED=1 BERTFORGE_JIT_KERNELS=1
py=${PYTHON:-python3}
{ nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  $py -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda)"; } 2>&1 | tee "$out/gpu.txt"
$py -c "
import time
from bertforge.ops import fftconv_cuda
start = time.time()
module, how = fftconv_cuda.load_extension(True)
print('fused fft_conv kernel:', how, f'({time.time() - start:.0f} s)')
" 2>&1 | tee "$out/kernel_build.txt"
# Includes Composer's FSDP (v1) two-process run (tests/test_parallel.py, fsdp1-gpu): it needs 2 GPUs and is skipped,
# with that reason, on a one-GPU machine (FSDP2 runs the same test on CPU in the ordinary suite).
$py -m pytest -q -m gpu -p no:cacheprovider --continue-on-collection-errors tests 2>&1 | tee "$out/gpu_tests.txt"
$py benchmarks/fftconv_gpu.py --seq-lens 512,1024,2048,4096,8192 --batch 16 --channels 768 \
    --dtypes fp32,bf16 --out "$out" 2>&1 | tee "$out/fftconv_bench.txt"
$py -c "from bertforge.kernels import fused_available; print('fused kernels:', *fused_available())" 2>&1 \
    | tee "$out/fused_kernels.txt"
$py benchmarks/kernels_gpu.py --tokens 16384 --batch 16 --seq-len 1024 --dtype bf16 --out "$out" 2>&1 \
    | tee "$out/kernels_bench.txt"
# the masked-diffusion sampler on a random ModernBERT-base-shaped model: full passes vs Fast-dLLM's prefix and dual
# key/value caches (tokens/s; a random model's agreement says little, the README's trained-model rows say more)
$py benchmarks/sampler_speed.py --base --base-folder /tmp/random-modernbert-base --device gpu --dtype bfloat16 \
    --prompts 4 --max-new-tokens 256 --steps 256 --block-length 32 --thresholds 0.9 --cache none,prefix,dual \
    --repeats 2 --out "$out/sampler_speed.csv" 2>&1 | tee "$out/sampler_speed.txt"
$py benchmarks/kv_cache_pass.py --base --base-folder /tmp/random-modernbert-base --device gpu --dtype bfloat16 \
    --lengths 512,2048,8192 --out "$out/kv_cache_pass.csv" 2>&1 | tee "$out/kv_cache_pass.txt"
