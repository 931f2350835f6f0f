"""Backend registry and dispatch for the neurons: ``torch`` (reference) and ``cupy`` (kernels).

Asking for ``cupy`` where it cannot run raises a ``RuntimeError`` naming what is missing; there is
no silent fallback to torch.
"""

from __future__ import annotations

from typing import Any

__all__ = ["BACKENDS", "check_backend", "cupy_adlif", "cupy_culif", "cupy_lif", "cupy_unavailable_reason"]

BACKENDS = ("torch", "cupy")


def cupy_unavailable_reason() -> str | None:
    """None if the cupy backend can run here, else a sentence saying what is missing."""
    import torch

    if not torch.cuda.is_available():
        return "CUDA is not available (torch.cuda.is_available() is False: no GPU or no CUDA driver)"
    try:
        import cupy  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the install
        return f"CuPy is not installed ({exc}); install cupy-cuda13x (see requirements.txt)"
    return None


def check_backend(backend: str, who: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"{who}: unknown backend {backend!r}; valid: {list(BACKENDS)}")
    if backend == "cupy":
        reason = cupy_unavailable_reason()
        if reason is not None:
            raise RuntimeError(f"{who}: backend='cupy' cannot run here: {reason}. Use backend='torch'.")


def _kernels() -> Any:
    import cupy_neurons  # local import: only the cupy backend needs it

    return cupy_neurons


def cupy_culif(module: Any, x_seq: Any, state: Any, lam: Any, gam: Any) -> Any:
    return _kernels().culif(module, x_seq, state, lam, gam)


def cupy_adlif(module: Any, x_seq: Any, state: Any, alpha: Any, beta: Any, a: Any, b: Any) -> Any:
    return _kernels().adlif(module, x_seq, state, alpha, beta, a, b)


def cupy_lif(module: Any, x_seq: Any, state: Any, beta: Any) -> Any:
    return _kernels().lif(module, x_seq, state, beta)
