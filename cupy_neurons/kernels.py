"""Kernel signatures and specialisations of the sjframe neurons (CuLIF / PCuLIF, AdLIF, LIF).

One source per neuron (``culif.cu``, ``adlif.cu``, ``lif.cu``), each with a ``*_forward`` and a
``*_backward`` kernel. A specialisation is chosen by (neuron, storage dtype, surrogate C
expression, detach_reset); the per-layer / per-neuron parameter layout is a runtime argument
(``P`` = 1 or the feature count), so it does not multiply the compiled variants.
"""

from __future__ import annotations

from cupy_neurons.build import KernelSig, Specialisation

__all__ = ["NEURON_KERNELS", "NEURON_SOURCES", "ROUNDTRIP_SIG", "ROUNDTRIP_SPEC", "kernel_sigs", "specialisation"]

_SIZES = (("acc", "theta"), ("int", "T"), ("index", "N"), ("index", "P"))

NEURON_KERNELS: dict[str, tuple[KernelSig, KernelSig]] = {
    "culif": (
        KernelSig("culif_forward", (
            ("const_scalar_ptr", "x_seq"), ("const_scalar_ptr", "v0"), ("const_scalar_ptr", "i0"),
            ("const_acc_ptr", "lam"), ("const_acc_ptr", "gam"), *_SIZES,
            ("scalar_ptr", "s_seq"), ("scalar_ptr", "h_seq"), ("scalar_ptr", "v_last"), ("scalar_ptr", "i_last"),
            ("scalar_ptr", "iprev_seq"),
        )),
        KernelSig("culif_backward", (
            ("const_scalar_ptr", "gs_seq"), ("const_scalar_ptr", "gh_seq"), ("const_scalar_ptr", "gv_last"),
            ("const_scalar_ptr", "gi_last"), ("const_scalar_ptr", "h_seq"), ("const_scalar_ptr", "v0"),
            ("const_scalar_ptr", "iprev_seq"), ("const_acc_ptr", "lam"), ("const_acc_ptr", "gam"), *_SIZES,
            ("scalar_ptr", "dx_seq"), ("scalar_ptr", "dv0"), ("scalar_ptr", "di0"),
            ("acc_ptr", "dlam_part"), ("acc_ptr", "dgam_part"),
        )),
    ),
    "adlif": (
        KernelSig("adlif_forward", (
            ("const_scalar_ptr", "x_seq"), ("const_scalar_ptr", "v0"), ("const_scalar_ptr", "w0"),
            ("const_scalar_ptr", "h0"), ("const_scalar_ptr", "s0"),
            ("const_acc_ptr", "alpha"), ("const_acc_ptr", "beta"), ("const_acc_ptr", "a"), ("const_acc_ptr", "b"),
            *_SIZES,
            ("scalar_ptr", "s_seq"), ("scalar_ptr", "h_seq"), ("scalar_ptr", "v_last"), ("scalar_ptr", "w_last"),
            ("scalar_ptr", "wprev_seq"),
        )),
        KernelSig("adlif_backward", (
            ("const_scalar_ptr", "gs_seq"), ("const_scalar_ptr", "gh_seq"), ("const_scalar_ptr", "gv_last"),
            ("const_scalar_ptr", "gw_last"), ("const_scalar_ptr", "h_seq"), ("const_scalar_ptr", "x_seq"),
            ("const_scalar_ptr", "wprev_seq"), ("const_scalar_ptr", "v0"), ("const_scalar_ptr", "h0"),
            ("const_scalar_ptr", "s0"),
            ("const_acc_ptr", "alpha"), ("const_acc_ptr", "beta"), ("const_acc_ptr", "a"), ("const_acc_ptr", "b"),
            *_SIZES,
            ("scalar_ptr", "dx_seq"), ("scalar_ptr", "dv0"), ("scalar_ptr", "dw0"), ("scalar_ptr", "dh0"),
            ("scalar_ptr", "ds0"),
            ("acc_ptr", "dalpha_part"), ("acc_ptr", "dbeta_part"), ("acc_ptr", "da_part"), ("acc_ptr", "db_part"),
        )),
    ),
    "lif": (
        KernelSig("lif_forward", (
            ("const_scalar_ptr", "x_seq"), ("const_scalar_ptr", "h0"), ("const_scalar_ptr", "x0"),
            ("const_acc_ptr", "beta"), *_SIZES,
            ("scalar_ptr", "s_seq"), ("scalar_ptr", "h_seq"),
        )),
        KernelSig("lif_backward", (
            ("const_scalar_ptr", "gs_seq"), ("const_scalar_ptr", "gh_seq"), ("const_scalar_ptr", "h_seq"),
            ("const_scalar_ptr", "h0"), ("const_acc_ptr", "beta"), *_SIZES,
            ("scalar_ptr", "dx_seq"), ("scalar_ptr", "dh0"), ("scalar_ptr", "dx0"), ("acc_ptr", "dbeta_part"),
        )),
    ),
}
NEURON_SOURCES = {"culif": "culif.cu", "adlif": "adlif.cu", "lif": "lif.cu"}

# Conversion self-test (selftest.cu): float32 in, the binary16 / bfloat16 round trips out.
ROUNDTRIP_SIG = KernelSig("sj_roundtrip", (
    ("const_scalar_ptr", "x"), ("scalar_ptr", "half_rt"), ("scalar_ptr", "bf16_rt"), ("index", "N"),
))
ROUNDTRIP_SPEC = Specialisation("selftest.cu", "float32")


def kernel_sigs(neuron: str) -> tuple[KernelSig, KernelSig]:
    """``(forward, backward)`` signatures of a neuron kind (``culif`` | ``adlif`` | ``lif``)."""
    if neuron not in NEURON_KERNELS:
        raise ValueError(f"unknown neuron kernel {neuron!r}; valid: {sorted(NEURON_KERNELS)}")
    return NEURON_KERNELS[neuron]


def specialisation(neuron: str, dtype: str, surrogate_expr: str, detach_reset: bool) -> Specialisation:
    """The compiled variant for (neuron, storage dtype name, surrogate C expression, detach_reset)."""
    if neuron not in NEURON_SOURCES:
        raise ValueError(f"unknown neuron kernel {neuron!r}; valid: {sorted(NEURON_SOURCES)}")
    if not isinstance(detach_reset, bool):
        raise ValueError(f"detach_reset must be a bool, got {detach_reset!r}")
    return Specialisation(NEURON_SOURCES[neuron], dtype, surrogate_expr, (("SJ_DETACH_RESET", int(detach_reset)),))
