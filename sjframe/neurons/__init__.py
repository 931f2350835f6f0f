"""sjframe neurons: one sub-package per neuron type, registered by name with its config class.

* :mod:`sjframe.neurons.base`: :class:`SJNeuron` (the SpikingJelly multi-step module base),
  :class:`NeuronOutput`, :class:`NeuronConfig`, input checks, the backends and the kernel bridge.
* :mod:`sjframe.neurons.registry`: :func:`register_neuron`, :func:`build_neuron`, :func:`neuron_names`.
* ``culif/`` (CuLIF, PCuLIF), ``adlif/``, ``lif/``: each ``reference.py`` (autograd loop),
  ``fused.py`` (hand-written backward), ``kernel.py`` (the CUDA kernel), ``module.py``, ``config.py``.

Nothing outside a neuron's folder names its type: models build layers through the registry.
"""

from __future__ import annotations

from torch import nn

from sjframe.neurons.base import NeuronConfig, NeuronOutput, SJNeuron
from sjframe.neurons.params import tau_steps
from sjframe.neurons.registry import build_neuron, get_neuron, neuron_names, register_neuron

__all__ = [
    "NeuronConfig",
    "NeuronOutput",
    "SJNeuron",
    "build_neuron",
    "get_neuron",
    "neuron_names",
    "neurons_in",
    "register_neuron",
    "tau_steps",
]


def neurons_in(model: nn.Module) -> list[SJNeuron]:
    """All sjframe neuron layers of a model, in module order."""
    return [m for m in model.modules() if isinstance(m, SJNeuron)]
