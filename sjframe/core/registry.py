"""The one registry lookup: a table ``name -> "module:attribute"`` (imported on first use) or the object itself.

Methods (:mod:`sjframe.methods.registry`), models (:data:`sjframe.models.MODELS`) and data sets
(:data:`sjframe.data.DATASETS`) are each such a table; :func:`lookup` resolves a name in one, so a
module's import errors only affect its own entry.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

__all__ = ["lookup"]


def lookup(table: Mapping[str, Any], name: str, kind: str) -> Any:
    """The entry ``name`` of ``table`` (a ``"module:attribute"`` string is imported); an unknown name is a
    ``ValueError`` naming the ``kind`` and listing the valid names."""
    if name not in table:
        raise ValueError(f"unknown {kind} {name!r}; valid: {sorted(table)}")
    target = table[name]
    if not isinstance(target, str):
        return target
    module_name, _, attribute = target.partition(":")
    return getattr(importlib.import_module(module_name), attribute)
