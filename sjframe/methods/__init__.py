"""Training methods, one folder each, found by name through :mod:`sjframe.methods.registry`."""

from sjframe.methods.registry import METHODS, get_method, method_of

__all__ = ["METHODS", "get_method", "method_of"]
