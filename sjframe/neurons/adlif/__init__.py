"""AdLIF: reference (autograd), fused torch path, kernel path (``cupy_neurons/adlif.cu``), module, config."""

from __future__ import annotations

from sjframe.neurons.adlif.config import AdLIFConfig
from sjframe.neurons.adlif.kernel import run_adlif
from sjframe.neurons.adlif.module import AdLIF
from sjframe.neurons.adlif.reference import AdLIFState, adlif_multi_step

__all__ = ["AdLIF", "AdLIFConfig", "AdLIFState", "adlif_multi_step", "run_adlif"]
