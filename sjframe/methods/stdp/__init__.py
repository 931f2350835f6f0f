"""The ``stdp`` method (see :mod:`sjframe.methods.stdp.method`)."""
