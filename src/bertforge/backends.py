"""Which GPU backends this install can use, one line each: ``python -m bertforge.backends``.

Rows: ``torch`` (a CUDA build), ``gpu`` (a visible device), ``flash-attn``, ``fftconv`` (the CUDA FFT-convolution
extension from csrc/) and ``fused`` (Triton kernels through liger-kernel). Each is ``active`` (used here),
``ready`` (installed or built, waiting for a GPU: what a ``docker build`` sees) or ``unavailable`` with the reason.

``--require flash-attn,fftconv`` exits with one ``bertforge: error:`` line naming what is missing; ``ready``
counts as present, so add ``gpu`` to also demand a visible device.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType

import torch

from bertforge.cli import run_cli
from bertforge.errors import UserError, did_you_mean

ACTIVE, READY, UNAVAILABLE = "active", "ready", "unavailable"
NAMES = ("torch", "gpu", "flash-attn", "fftconv", "fused")
GPU_EXTRA_HINT = "pip install --no-build-isolation -e .[gpu]"


@dataclass(frozen=True)
class Backend:
    """One row of the table: a backend, its status and a one-line detail (version, or why it is unavailable)."""

    name: str
    status: str
    detail: str

    @property
    def present(self) -> bool:
        """Installed or built: ``active``, or ``ready`` for a GPU."""
        return self.status in (ACTIVE, READY)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type when it has none."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def try_import(module: str) -> tuple[ModuleType | None, str]:
    """``(module, '')`` when it imports, else ``(None, why)``; a broken build (bad ABI, missing .so) is a reason."""
    try:
        return importlib.import_module(module), ""
    except ModuleNotFoundError as exc:
        if exc.name == module.split(".")[0]:
            return None, "not installed"
        return None, f"import failed ({first_line(exc)})"  # the package is there, one of its imports is not
    except Exception as exc:  # an installed but broken package: report it, never crash the table
        return None, f"import failed ({first_line(exc)})"


def version_of(distribution: str, module: ModuleType | None = None) -> str:
    """The installed version of ``distribution`` (its metadata, else ``module.__version__``, else '?')."""
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return str(getattr(module, "__version__", "?"))


def gpu_visible() -> bool:
    """True when torch sees a CUDA device."""
    return torch.cuda.is_available()


def torch_backend() -> Backend:
    """torch's version and the CUDA it was built with."""
    if torch.version.cuda is None:
        return Backend("torch", UNAVAILABLE, f"{torch.__version__} is a CPU-only build (no CUDA)")
    return Backend("torch", ACTIVE, f"{torch.__version__}, CUDA {torch.version.cuda}")


def gpu_backend() -> Backend:
    """The first visible device's name and compute capability, and how many there are."""
    if not gpu_visible():
        return Backend("gpu", UNAVAILABLE, "no CUDA GPU is visible (docker run --gpus all?)")
    major, minor = torch.cuda.get_device_capability(0)
    count = torch.cuda.device_count()
    return Backend("gpu", ACTIVE, f"{count} x {torch.cuda.get_device_name(0)} (sm_{major}{minor})")


def _on_gpu(name: str, detail: str) -> Backend:
    """``active`` with a GPU, else ``ready``: the backend is there but only runs on CUDA."""
    if gpu_visible():
        return Backend(name, ACTIVE, detail)
    return Backend(name, READY, f"{detail}; runs once a CUDA GPU is visible")


def flash_attn_backend() -> Backend:
    """flash-attn's varlen kernel (the gpu extra)."""
    module, why = try_import("flash_attn")
    if module is None:
        return Backend("flash-attn", UNAVAILABLE, f"flash-attn {why} ({GPU_EXTRA_HINT} on a CUDA machine)")
    return _on_gpu("flash-attn", f"flash-attn {version_of('flash-attn', module)}")


def fftconv_backend() -> Backend:
    """The prebuilt CUDA FFT-convolution extension (``make kernel``); never compiles anything."""
    from bertforge.ops import fftconv_cuda

    module, why = try_import(fftconv_cuda.MODULE)
    if module is None:
        if why == "not installed":
            why = (f"not built (run `make kernel`, or set {fftconv_cuda.JIT_ENV}=1 to compile it on first use; "
                   "models fall back to torch.fft)")
        return Backend("fftconv", UNAVAILABLE, f"{fftconv_cuda.MODULE} {why}")
    return _on_gpu("fftconv", f"{fftconv_cuda.MODULE} prebuilt ({getattr(module, '__file__', '?')})")


def _fused_check() -> Callable[[], tuple[bool, str]] | None:
    """``bertforge.kernels.fused_available`` when that package has it, else None (then liger-kernel decides)."""
    kernels, _ = try_import("bertforge.kernels")
    return getattr(kernels, "fused_available", None)


def fused_backend() -> Backend:
    """Fused Triton kernels (``kernels: fused``): liger-kernel and triton importable, and bertforge's own check."""
    liger, why = try_import("liger_kernel")
    if liger is None:
        return Backend("fused", UNAVAILABLE, f"liger-kernel {why} ({GPU_EXTRA_HINT})")
    triton, why = try_import("triton")
    if triton is None:
        return Backend("fused", UNAVAILABLE, f"triton {why} (it comes with CUDA builds of torch)")
    detail = f"liger-kernel {version_of('liger-kernel', liger)}, triton {version_of('triton', triton)}"
    check = _fused_check()
    if check is None:
        return _on_gpu("fused", detail)
    try:
        ok, reason = check()
    except Exception as exc:  # a failing check must show up in the table, not as a traceback
        ok, reason = False, f"bertforge.kernels.fused_available() failed ({first_line(exc)})"
    if ok:
        return Backend("fused", ACTIVE, reason or detail)
    if not gpu_visible():
        return Backend("fused", READY, f"{detail}; {reason}")
    return Backend("fused", UNAVAILABLE, reason)


def collect() -> list[Backend]:
    """Every row, in :data:`NAMES` order."""
    return [torch_backend(), gpu_backend(), flash_attn_backend(), fftconv_backend(), fused_backend()]


def format_table(backends: Sequence[Backend]) -> str:
    """A fixed-width table: backend, status, detail."""
    width = max(len(b.name) for b in backends)
    lines = [f"{'backend':<{width}}  {'status':<11}  detail"]
    lines += [f"{b.name:<{width}}  {b.status:<11}  {b.detail}" for b in backends]
    return "\n".join(lines)


def parse_required(text: str) -> list[str]:
    """The names in ``--require a,b``; an unknown name is a :class:`UserError` listing the valid ones."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    for name in names:
        if name not in NAMES:
            raise UserError(f"--require: unknown backend '{name}'{did_you_mean(name, NAMES)}; "
                            f"choose from {', '.join(NAMES)}")
    return names


def check_required(backends: Sequence[Backend], required: Sequence[str]) -> None:
    """Raise one-line :class:`UserError` naming every required backend that is not present, with its reason."""
    by_name = {b.name: b for b in backends}
    missing = [by_name[n] for n in required if not by_name[n].present]
    if missing:
        raise UserError("required backends missing: " + "; ".join(f"{b.name}: {b.detail}" for b in missing))


def main(argv: list[str] | None = None) -> None:
    """Print the backend table; with ``--require`` fail (exit 2, one line) when a named backend is missing."""
    parser = argparse.ArgumentParser(prog="python -m bertforge.backends", description=__doc__.splitlines()[0])
    parser.add_argument("--require", default="", metavar="NAMES",
                        help=f"comma-separated backends that must be present: {', '.join(NAMES)}")
    args = parser.parse_args(argv)
    required = parse_required(args.require)
    backends = collect()
    print(format_table(backends), flush=True)
    check_required(backends, required)


if __name__ == "__main__":
    run_cli(main)
