"""sjframe neurons: CuLIF, PCuLIF, AdLIF and LIF as SpikingJelly multi-step modules."""

from __future__ import annotations

from typing import Any

from torch import nn

from sjframe.neurons.functional import adlif_multi_step, culif_multi_step, lif_multi_step
from sjframe.neurons.modules import LIF, AdLIF, CuLIF, PCuLIF, SJNeuron
from sjframe.neurons.params import tau_steps

__all__ = [
    "LIF",
    "NEURON_TYPES",
    "AdLIF",
    "CuLIF",
    "PCuLIF",
    "SJNeuron",
    "adlif_multi_step",
    "build_neuron",
    "culif_multi_step",
    "lif_multi_step",
    "tau_steps",
]

NEURON_TYPES = ("culif", "pculif", "pculif_neuron", "adlif", "lif")


def build_neuron(
    neuron_type: str,
    num_neurons: int | tuple[int, ...],
    tau_m: float,
    tau_s: float,
    theta: float,
    **kwargs: Any,
) -> SJNeuron:
    """Make a neuron layer from config values (time constants in steps).

    ``neuron_type``: ``culif`` | ``pculif`` (one decay pair per layer) | ``pculif_neuron`` (per
    neuron) | ``adlif`` (``tau_s`` unused; ``tau_w`` may be passed in ``kwargs``) | ``lif``
    (``tau_s`` unused). ``kwargs`` go to the module (surrogate, gradient, backend, ...).
    """
    if neuron_type == "culif":
        return CuLIF(tau_m=tau_m, tau_s=tau_s, theta=theta, **kwargs)
    if neuron_type in ("pculif", "pculif_neuron"):
        return PCuLIF(tau_m=tau_m, tau_s=tau_s, theta=theta, per_neuron=neuron_type == "pculif_neuron",
                      num_neurons=num_neurons, **kwargs)
    if neuron_type == "adlif":
        return AdLIF(num_neurons=num_neurons, tau_m=tau_m, theta=theta, **kwargs)
    if neuron_type == "lif":
        return LIF(tau_m=tau_m, theta=theta, **kwargs)
    raise ValueError(f"unknown neuron_type {neuron_type!r}; valid: {list(NEURON_TYPES)}")


def neurons_in(model: nn.Module) -> list[SJNeuron]:
    """All sjframe neuron layers of a model, in module order."""
    return [m for m in model.modules() if isinstance(m, SJNeuron)]
