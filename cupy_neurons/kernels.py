"""The neuron kernels of this package: every ``<name>.cu`` here with a ``<name>_forward`` and a
``<name>_backward`` kernel registers its generated ops (so a new neuron kernel is its ``.cu`` file).

One source per neuron (``culif.cu``, ``adlif.cu``, ``lif.cu``); the kernels' argument lists are
parsed from the source (:func:`cupy_neurons.build.kernel_sigs`) and turned into custom ops by
:func:`cupy_neurons.ops.register_neuron_ops`. A specialisation is chosen by (neuron, storage
dtype, surrogate C expression, detach_reset, localzo); the per-layer / per-neuron parameter layout
is a runtime argument (``P`` = 1 or the feature count), so it does not multiply the compiled
variants.

``localzo=True`` compiles the backward with the LocalZO spike derivative (``SJ_LOCALZO = 1``):
``g`` at step ``t`` of neuron ``n`` is the estimate of ``sparse/localzo.cuh`` with the Philox
noise of counter ``n`` and key ``zo_keys[t]`` (the arguments ``SJ_ZO_PARAMS``, null / zero in the
dense specialisations); the surrogate expression is then unused. The forward kernels are the same
in both modes.
"""

from __future__ import annotations

from cupy_neurons.build import SOURCE_DIR, KernelSig, Specialisation, kernel_sigs
from cupy_neurons.ops import NeuronOps, neuron_specialisation, register_neuron_ops

__all__ = [
    "NEURON_KERNELS", "NEURON_OPS", "NEURON_SOURCES", "ROUNDTRIP_SIG", "ROUNDTRIP_SPEC", "neuron_ops", "specialisation",
]



def _neuron_sources() -> tuple[str, ...]:
    """The neuron kernel sources of this folder: ``<name>.cu`` declaring ``<name>_forward`` and ``<name>_backward``."""
    names = []
    for path in sorted(SOURCE_DIR.glob("*.cu")):
        declared = {sig.name for sig in kernel_sigs(path.name)}
        if {f"{path.stem}_forward", f"{path.stem}_backward"} <= declared:
            names.append(path.stem)
    return tuple(names)


#: the neuron kernels: name -> generated ops
NEURON_OPS: dict[str, NeuronOps] = {name: register_neuron_ops(name) for name in _neuron_sources()}
NEURON_SOURCES = {name: ops.kernel.source for name, ops in NEURON_OPS.items()}
NEURON_KERNELS: dict[str, tuple[KernelSig, KernelSig]] = {
    name: (ops.kernel.forward, ops.kernel.backward) for name, ops in NEURON_OPS.items()
}

# Conversion self-test (selftest.cu): float32 in, the binary16 / bfloat16 round trips out.
(ROUNDTRIP_SIG,) = kernel_sigs("selftest.cu")
ROUNDTRIP_SPEC = Specialisation("selftest.cu", "float32")


def neuron_ops(neuron: str) -> NeuronOps:
    """The generated ops of a neuron kernel (``culif`` | ``adlif`` | ``lif``)."""
    if neuron not in NEURON_OPS:
        raise ValueError(f"unknown neuron kernel {neuron!r}; valid: {sorted(NEURON_OPS)}")
    return NEURON_OPS[neuron]


def specialisation(
    neuron: str, dtype: str, surrogate_expr: str, detach_reset: bool, localzo: bool = False
) -> Specialisation:
    """The compiled variant for (neuron, storage dtype name, surrogate C expression, detach_reset, localzo)."""
    return neuron_specialisation(neuron_ops(neuron).kernel.source, dtype, surrogate_expr, detach_reset, localzo)
