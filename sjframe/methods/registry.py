"""The training methods by name: a config's top-level ``method`` (default ``surrogate``) picks one.

Each method is a folder ``sjframe/methods/<name>/`` exposing one :class:`~sjframe.methods.base.Method`
object, ``METHOD``, in its ``method.py`` (see :mod:`sjframe.methods.base` for the contract);
``train.py`` / ``test.py`` find it through :func:`get_method`. To add a method: its folder and one
line below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sjframe.core.registry import lookup

if TYPE_CHECKING:
    from sjframe.methods.base import Method

__all__ = ["DEFAULT_METHOD", "METHODS", "get_method", "method_of"]

DEFAULT_METHOD = "surrogate"

# name -> "module:attribute" of the Method object; the default ``surrogate`` is BPTT with surrogate gradients.
METHODS: dict[str, str] = {
    "surrogate": "sjframe.methods.surrogate.method:METHOD",
    "exact_time": "sjframe.methods.exact_time.method:METHOD",
    "stdp": "sjframe.methods.stdp.method:METHOD",
    "conversion": "sjframe.methods.conversion.method:METHOD",
    "spikeprop": "sjframe.methods.spikeprop.method:METHOD",
}


def get_method(name: str) -> Method:
    """The :class:`~sjframe.methods.base.Method` of ``name``; unknown names raise ``ValueError`` listing the valid ones."""
    return lookup(METHODS, name, "method")


def method_of(raw: dict) -> Method:
    """The method a whole config dict names (its ``method`` key, default ``surrogate``)."""
    name = raw.get("method", DEFAULT_METHOD)
    if not isinstance(name, str):
        raise ValueError(f"config method: expected a name, got {name!r}")
    return get_method(name)
