"""Config of a LIF (S3GD / LocalZO) group: ``tau_m_steps`` and ``theta`` (``tau_s_steps`` accepted, unused)."""

from __future__ import annotations

from dataclasses import dataclass

from sjframe.neurons.base import NeuronConfig

__all__ = ["LIFConfig"]


@dataclass(frozen=True)
class LIFConfig(NeuronConfig):
    """LIF group config (``tau_m_steps``, ``theta``, surrogate, gradient)."""
