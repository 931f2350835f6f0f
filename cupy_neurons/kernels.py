"""Kernel signatures and specialisations of the sjframe neurons (CuLIF / PCuLIF, AdLIF, LIF).

One source per neuron (``culif.cu``, ``adlif.cu``, ``lif.cu``), each with a ``*_forward`` and a
``*_backward`` kernel. A specialisation is chosen by (neuron, storage dtype, surrogate C
expression, detach_reset, localzo); the per-layer / per-neuron parameter layout is a runtime
argument (``P`` = 1 or the feature count), so it does not multiply the compiled variants.

``localzo=True`` compiles the backward with the LocalZO spike derivative (``SJ_LOCALZO = 1``):
``g`` at step ``t`` of neuron ``n`` is the estimate of ``sparse/localzo.cuh`` with the Philox
noise of counter ``n`` and key ``zo_keys[t]`` (the arguments :data:`ZO_PARAMS`, null / zero in
the dense specialisations); the surrogate expression is then unused. The forward kernels are
the same in both modes.
"""

from __future__ import annotations

from cupy_neurons.build import KernelSig, Specialisation

__all__ = [
    "NEURON_KERNELS", "NEURON_SOURCES", "ROUNDTRIP_SIG", "ROUNDTRIP_SPEC", "ZO_PARAMS", "kernel_sigs", "specialisation",
]

_SIZES = (("acc", "theta"), ("int", "T"), ("index", "N"), ("index", "P"))
# SJ_ZO_PARAMS of sparse/localzo.cuh: one Philox key per step and the LocalZO law (backward kernels only)
ZO_PARAMS = (
    ("const_index_ptr", "zo_keys"), ("const_float_ptr", "zo_table"), ("int", "zo_intervals"), ("float", "zo_w_max"),
    ("float", "zo_w_scale"), ("int", "zo_samples"), ("int", "zo_dist"), ("float", "zo_delta"), ("float", "zo_scale"),
)

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
            *ZO_PARAMS,
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
            *_SIZES, *ZO_PARAMS,
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
            ("const_scalar_ptr", "h0"), ("const_acc_ptr", "beta"), *_SIZES, *ZO_PARAMS,
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


def specialisation(
    neuron: str, dtype: str, surrogate_expr: str, detach_reset: bool, localzo: bool = False
) -> Specialisation:
    """The compiled variant for (neuron, storage dtype name, surrogate C expression, detach_reset, localzo).

    With ``localzo=True`` the surrogate is not used: its expression is normalised to ``0.0f`` so
    that every surrogate shares one compiled LocalZO variant.
    """
    if neuron not in NEURON_SOURCES:
        raise ValueError(f"unknown neuron kernel {neuron!r}; valid: {sorted(NEURON_SOURCES)}")
    for name, flag in (("detach_reset", detach_reset), ("localzo", localzo)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be a bool, got {flag!r}")
    expr = "0.0f" if localzo else surrogate_expr
    defines = (("SJ_DETACH_RESET", int(detach_reset)), ("SJ_LOCALZO", int(localzo)))
    return Specialisation(NEURON_SOURCES[neuron], dtype, expr, defines)
