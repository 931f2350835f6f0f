"""CUDA kernels of the sjframe neurons and their launchers (the ``cupy`` backend); imports nothing of sjframe.

* ``*.cu`` / ``common.cuh``: kernel sources (one thread per neuron, time loop inside, time-major
  ``[T, N]``); each kernel's argument list is written once, in its source. ``host_shim.h`` makes
  the same text compile as host C++: the CPU checks and the CPU backend (``backend='cpu'``).
* :mod:`cupy_neurons.build`: parse kernel signatures, render a specialisation, compile for host
  (g++), nvcc, or CuPy.
* :mod:`cupy_neurons.launch`: run a kernel on torch tensors (CuPy on CUDA, a host build on CPU: the fast
  CPU backend by default).
* :mod:`cupy_neurons.ops`: ``torch.library`` custom ops (fake tensors, autograd) generated from a
  neuron kernel's signature; :mod:`cupy_neurons.kernels`: the neuron kernels of this package.
* :mod:`cupy_neurons.neurons`: :func:`~cupy_neurons.neurons.run_neuron`, the entry point the
  neurons of ``sjframe/neurons`` call for ``backend='cupy'`` (plain tensors in, plain tuples out).
* :mod:`cupy_neurons.zo`: the LocalZO argument conventions (law codes, table layout).
* :mod:`cupy_neurons.sparse`: the S3GD / LocalZO backward kernels of the fused Linear + LIF layer.

Importing the package imports none of these (the ops register on first import of ``kernels``).
"""
