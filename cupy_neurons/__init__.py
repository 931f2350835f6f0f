"""CUDA kernel sources of the sjframe neurons and their CuPy launchers (see the kernels issue)."""

from __future__ import annotations


def _not_built(*_args: object, **_kwargs: object) -> None:
    raise NotImplementedError("the cupy kernels are not implemented yet")


culif = adlif = lif = _not_built
