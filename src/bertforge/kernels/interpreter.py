"""Shims that let liger-kernel's Triton kernels run under Triton's CPU interpreter (``TRITON_INTERPRET=1``).

Used only for the CPU checks of the fused kernels; without the interpreter nothing is patched.
Triton 3.3's interpreter lacks three things compiled Triton has: an active driver (liger's autotuned kernels
ask for its benchmarker when they are defined, at import), fp32 scalar arguments (it passes Python floats,
so ``eps.to(tl.float32)`` fails) and the CUDA libdevice math functions (its ``rsqrt`` returns None).
"""

from __future__ import annotations

import os

import torch


def interpreting() -> bool:
    """Whether Triton kernels run in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def patch_interpreter() -> None:
    """Make liger-kernel importable and runnable under the interpreter; idempotent, a no-op otherwise."""
    if not interpreting():
        return
    import numpy as np
    import triton.language as tl
    from triton.backends import backends
    from triton.backends.driver import DriverBase
    from triton.language.extra import libdevice
    from triton.runtime import interpreter
    from triton.runtime.driver import driver

    # driver.active is not read: in Triton 3.6 (torch 2.11) that builds the default driver, which raises without one
    no_driver = not any(b.driver.is_active() for b in backends.values())
    if no_driver and not getattr(driver, "_bertforge_interpreter", False):

        class InterpreterDriver(DriverBase):
            """Enough of a driver for autotuner definitions; the interpreter never launches through it."""

            @classmethod
            def is_active(cls) -> bool:
                return True

            def get_current_target(self):
                raise RuntimeError("Triton's CPU interpreter has no compile target")

            def map_python_to_cpp_type(self, ty: str) -> str:  # abstract in Triton 3.6 (not 3.3); only compiling asks
                raise RuntimeError("Triton's CPU interpreter has no C++ launcher")

            def get_active_torch_device(self) -> torch.device:
                return torch.device("cpu")

            def get_benchmarker(self):
                from triton.testing import do_bench

                return do_bench

        driver.set_active(InterpreterDriver())
        driver._bertforge_interpreter = True
    convert = interpreter._implicit_cvt
    if not getattr(convert, "_bertforge_fp32", False):

        def fp32_scalars(arg):
            if isinstance(arg, float):
                return tl.tensor(interpreter.TensorHandle(np.array([arg], dtype=np.float32), tl.float32), tl.float32)
            return convert(arg)

        fp32_scalars._bertforge_fp32 = True
        interpreter._implicit_cvt = fp32_scalars
    if not getattr(libdevice.rsqrt, "_bertforge_fp32", False):

        def rsqrt(x):  # liger imports libdevice's; the interpreter implements tl.math's (looked up at call time)
            return tl.math.rsqrt(x)

        rsqrt._bertforge_fp32 = True
        libdevice.rsqrt = rsqrt
