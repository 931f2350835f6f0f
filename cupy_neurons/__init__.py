"""CUDA kernels of the sjframe neurons and their launchers (the ``cupy`` backend).

* ``*.cu`` / ``common.cuh``: kernel sources (one thread per neuron, time loop inside, time-major
  ``[T, N]``); ``host_shim.h`` makes the same text compile as host C++ for CPU checks.
* :mod:`cupy_neurons.build`: render a specialisation, compile for host (g++), nvcc, or CuPy.
* :mod:`cupy_neurons.launch`: run a kernel on torch tensors (CuPy on CUDA, host build on CPU).
* :mod:`cupy_neurons.ops`: ``torch.library`` custom ops with fake tensors and autograd.
* :mod:`cupy_neurons.neurons`: the neuron entry points ``culif``, ``adlif``, ``lif`` called by
  :mod:`sjframe.neurons.backends`, and ``run_*`` for direct use.
"""

from __future__ import annotations

from cupy_neurons.neurons import adlif, culif, lif, run_adlif, run_culif, run_lif

__all__ = ["adlif", "culif", "lif", "run_adlif", "run_culif", "run_lif"]
