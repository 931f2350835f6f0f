"""Config of a LIF (S3GD / LocalZO) group: ``tau_m_steps`` and ``theta``."""

from __future__ import annotations

from dataclasses import dataclass

from sjframe.neurons.base import NeuronConfig

__all__ = ["LIFConfig"]


@dataclass(frozen=True)
class LIFConfig(NeuronConfig):
    """LIF group config.

    Attributes:
        tau_m_steps: membrane time constant in steps (> 0): ``beta = exp(-1/tau_m_steps)``.
    """

    tau_m_steps: float = 5.0
