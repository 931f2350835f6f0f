"""LIF of S3GD / LocalZO: reference (autograd), fused torch path, kernel path (``cupy_neurons/lif.cu``), module, config."""

from __future__ import annotations

from sjframe.neurons.lif.config import LIFConfig
from sjframe.neurons.lif.kernel import run_lif
from sjframe.neurons.lif.module import LIF
from sjframe.neurons.lif.reference import LIFState, lif_multi_step

__all__ = ["LIF", "LIFConfig", "LIFState", "lif_multi_step", "run_lif"]
