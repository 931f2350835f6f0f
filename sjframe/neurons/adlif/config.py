"""Config of an AdLIF group: ``tau_m_steps``, the adaptation time constant ``tau_w_steps`` and ``theta``."""

from __future__ import annotations

from dataclasses import dataclass

from sjframe.neurons.base import NeuronConfig

__all__ = ["AdLIFConfig"]


@dataclass(frozen=True)
class AdLIFConfig(NeuronConfig):
    """AdLIF group config.

    Attributes:
        tau_m_steps: membrane time constant in steps (> 0): ``alpha`` starts at ``exp(-1/tau_m_steps)``.
        tau_w_steps: adaptation time constant in steps (> 0; the paper's "100 ms" was 100 steps in the
            original code; here the unit is explicit).
    """

    tau_m_steps: float = 5.0
    tau_w_steps: float = 100.0
