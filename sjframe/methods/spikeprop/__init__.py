"""The ``spikeprop`` method (see :mod:`sjframe.methods.spikeprop.method`)."""
