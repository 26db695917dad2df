"""Package build; metadata lives in pyproject.toml.

The fused FFT-convolution CUDA kernel (csrc/fftconv) is built ahead of time only when asked, because it
needs torch and an nvcc matching torch's CUDA at build time:

    BERTFORGE_BUILD_CUDA=1 pip install --no-build-isolation -e .      # what `make kernel` runs

Without it the kernel can still be compiled just in time on first use (see bertforge/ops/fftconv_cuda.py).
"""

import os

from setuptools import setup


def cuda_extensions() -> dict:
    """setup() keywords adding the ``bertforge_fftconv_cuda`` extension when BERTFORGE_BUILD_CUDA=1."""
    if os.environ.get("BERTFORGE_BUILD_CUDA", "0") != "1":
        return {}
    from torch.utils.cpp_extension import BuildExtension, CUDAExtension

    extension = CUDAExtension(
        name="bertforge_fftconv_cuda",
        sources=["csrc/fftconv/fftconv_binding.cpp", "csrc/fftconv/fftconv_kernel.cu"],
        extra_compile_args={"cxx": ["-O3"], "nvcc": ["-O3", "-std=c++17"]},
    )
    return {"ext_modules": [extension], "cmdclass": {"build_ext": BuildExtension}}


setup(**cuda_extensions())
