"""Sparse (S3GD) and LocalZO backward kernels: CUDA sources and their launchers (see kernels.py)."""

from __future__ import annotations

from cupy_neurons.sparse.kernels import KERNELS, launch, localzo_estimate_kernel, s3gd_backward_kernels, specialisation

__all__ = ["KERNELS", "launch", "localzo_estimate_kernel", "s3gd_backward_kernels", "specialisation"]
