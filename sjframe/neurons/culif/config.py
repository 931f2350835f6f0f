"""Config of a CuLIF / PCuLIF group: ``tau_m_steps`` (membrane), ``tau_s_steps`` (synaptic current), ``theta``.

PCuLIF starts its trainable decays at ``exp(-1/tau)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sjframe.neurons.base import NeuronConfig

__all__ = ["CuLIFConfig"]


@dataclass(frozen=True)
class CuLIFConfig(NeuronConfig):
    """CuLIF / PCuLIF group config.

    Attributes:
        tau_m_steps: membrane time constant in steps (> 0).
        tau_s_steps: synaptic time constant in steps (> 0).
    """

    tau_m_steps: float = 5.0
    tau_s_steps: float = 5.0
