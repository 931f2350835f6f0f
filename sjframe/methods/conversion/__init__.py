"""The ``conversion`` method (see :mod:`sjframe.methods.conversion.method`)."""
