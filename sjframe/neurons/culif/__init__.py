"""CuLIF / PCuLIF: reference (autograd), fused torch path, kernel path (``cupy_neurons/culif.cu``), module, config."""

from __future__ import annotations

from sjframe.neurons.culif.config import CuLIFConfig
from sjframe.neurons.culif.kernel import run_culif
from sjframe.neurons.culif.module import CuLIF, PCuLIF
from sjframe.neurons.culif.reference import CuLIFState, culif_multi_step

__all__ = ["CuLIF", "CuLIFConfig", "CuLIFState", "PCuLIF", "culif_multi_step", "run_culif"]
