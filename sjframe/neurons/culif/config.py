"""Config of a CuLIF / PCuLIF group: the keys of :class:`~sjframe.neurons.base.NeuronConfig`.

``tau_m_steps`` (membrane) and ``tau_s_steps`` (synaptic current) in steps, ``theta``; PCuLIF
starts its trainable decays at ``exp(-1/tau)``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sjframe.neurons.base import NeuronConfig

__all__ = ["CuLIFConfig"]


@dataclass(frozen=True)
class CuLIFConfig(NeuronConfig):
    """CuLIF / PCuLIF group config (``tau_m_steps``, ``tau_s_steps``, ``theta``, surrogate, gradient)."""
