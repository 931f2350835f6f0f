"""Config of an AdLIF group: ``tau_m_steps``, ``theta`` and the adaptation time constant ``tau_w_steps``."""

from __future__ import annotations

import math
from dataclasses import dataclass

from sjframe.neurons.base import NeuronConfig

__all__ = ["AdLIFConfig"]


@dataclass(frozen=True)
class AdLIFConfig(NeuronConfig):
    """AdLIF group config.

    Attributes:
        tau_w_steps: adaptation time constant in steps (the paper's "100 ms" was 100 steps in the
            original code; here the unit is explicit). ``tau_s_steps`` is accepted and unused.
    """

    tau_w_steps: float = 100.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (math.isfinite(self.tau_w_steps) and self.tau_w_steps > 0):
            raise ValueError(f"tau_w_steps must be a positive finite number, got {self.tau_w_steps!r}")
