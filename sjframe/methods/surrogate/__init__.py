"""The ``surrogate`` method (see :mod:`sjframe.methods.surrogate.method`)."""
