"""Learning rules beyond surrogate-gradient BPTT (seed 004, n3ml; seed 002's animations).

* :mod:`sjframe.learning.stdp`: Diehl & Cook (2015) unsupervised STDP network.
* :mod:`sjframe.learning.conversion`: ANN-to-SNN conversion (max / percentile / spike-norm).
* :mod:`sjframe.learning.spikeprop`: SpikeProp (Bohte 2002) exact spike-time gradients.
* :mod:`sjframe.learning.animation`: animated bar charts of cumulative output spike counts (GIF).
* :mod:`sjframe.learning.toy_data`: digits / Iris / XOR, available offline.
"""
