"""Which kernels a model uses: ``torch`` (plain PyTorch ops), ``fused`` (Triton) or ``auto``."""

from __future__ import annotations

import functools
import importlib.util
import logging

import torch

from bertforge.errors import ConfigError
from bertforge.kernels.interpreter import interpreting

log = logging.getLogger(__name__)

KERNEL_CHOICES = ("auto", "torch", "fused")
INSTALL_HINT = "install them with `pip install -e .[gpu]`"


@functools.cache
def _missing_package() -> str | None:
    for name in ("triton", "liger_kernel"):
        if importlib.util.find_spec(name) is None:
            return name.replace("_", "-")
    return None


def fused_available() -> tuple[bool, str]:
    """Whether the fused Triton kernels can run here, and why (one line either way).

    They need triton and liger-kernel importable and a CUDA device, or Triton's CPU interpreter
    (``TRITON_INTERPRET=1``, slow: for checks only).
    """
    missing = _missing_package()
    if missing is not None:
        return False, f"{missing} is not installed ({INSTALL_HINT})"
    from importlib.metadata import version

    libs = f"liger-kernel {version('liger-kernel')}, triton {version('triton')}"
    if torch.cuda.is_available():
        return True, f"{libs} on {torch.cuda.get_device_name()}"
    if interpreting():
        return True, f"{libs} in Triton's CPU interpreter (TRITON_INTERPRET=1; slow, for checks only)"
    return False, "no CUDA device (TRITON_INTERPRET=1 runs the kernels on CPU, slowly, for checks)"


@functools.cache
def _log_fallback(reason: str) -> None:
    log.info("kernels: auto -> torch (%s)", reason)


def resolve_kernels(name: str, key: str = "kernels") -> str:
    """``'torch'`` or ``'fused'`` for the YAML choice ``name``.

    ``auto`` is fused where :func:`fused_available`, else torch with one log line; an explicit ``fused`` that
    cannot run is a one-line :class:`~bertforge.errors.ConfigError` naming ``key``.
    """
    if name not in KERNEL_CHOICES:
        raise ConfigError(key, f"{name!r} is not one of {', '.join(KERNEL_CHOICES)}")
    if name == "torch":
        return "torch"
    ok, reason = fused_available()
    if ok:
        return "fused"
    if name == "fused":
        raise ConfigError(key, f"fused kernels cannot run here: {reason}; use auto or torch")
    _log_fallback(reason)
    return "torch"


def runs_triton(x: torch.Tensor) -> bool:
    """Whether a Triton kernel can take ``x``: a CUDA tensor, or any tensor under the CPU interpreter."""
    return x.is_cuda or interpreting()


class KernelChoice:
    """For model configs with a ``kernels: auto | torch | fused`` field: the check at construction (an explicit
    choice that cannot run is refused before any work) and the resolved choice on this machine."""

    kernels: str

    def check_kernels(self) -> None:
        """Refuse a bad value, or ``fused`` where it cannot run, in one line naming ``kernels``."""
        if self.kernels != "auto":
            resolve_kernels(self.kernels)

    @property
    def fused_kernels(self) -> bool:
        """Whether this model runs the fused kernels (``kernels`` resolved on this machine)."""
        return resolve_kernels(self.kernels) == "fused"
