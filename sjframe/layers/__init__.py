"""Layers between the neurons and the models.

* :mod:`sjframe.layers.common`: neuron group options, the neuron factory of the models, time-fixed
  dropout, the recurrent spiking Linear, ``seq_apply``.
* :mod:`sjframe.layers.sparse_linear_lif`: the fused Linear + LIF layer with the sparse (S3GD) and
  LocalZO backward (its math, the torch path and the kernel dispatch).
"""
