"""Fused Triton kernels for GPU training, chosen by ``model_config.kernels: auto | torch | fused``."""

from bertforge.kernels.select import KERNEL_CHOICES, fused_available, resolve_kernels, runs_triton

__all__ = ["KERNEL_CHOICES", "fused_available", "resolve_kernels", "runs_triton"]
