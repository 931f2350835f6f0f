"""The LocalZO arguments of the kernels (``SJ_ZO_PARAMS`` of ``sparse/localzo.cuh``): codes, table layout, checks.

This is the kernels' side of the LocalZO law: the integer code of each noise law (``SJ_DIST_*`` in
``sparse/localzo.cuh``), the layout of the quantile table (``TABLE_INTERVALS + 1`` float32
entries on ``w = -ln p`` in ``[0, W_MAX]``) and the validation / packing of the arguments. The
laws themselves (and the table's values) are computed by :mod:`sjframe.spike.localzo`, which
imports these constants from here: one definition, below both.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

__all__ = ["DIST_CODES", "NO_ZO", "TABLE_INTERVALS", "TABULATED", "W_MAX", "check_zo", "zo_kernel_args"]

# Integer codes shared with the CUDA kernels (sparse/localzo.cuh: SJ_DIST_*).
DIST_CODES = {"normal": 0, "laplace": 1, "uniform": 2, "sigmoid": 3, "fast_sigmoid": 4}
TABULATED = ("normal", "sigmoid", "fast_sigmoid")

TABLE_INTERVALS = 4096
# p >= 2^-24 for both generators (torch.rand: 1 - U with U on a 2^-24 grid; philox: ((x>>9)+0.5) 2^-23),
# so w = -ln p <= 24 ln 2 = 16.64.
W_MAX = 16.75

#: the kernel arguments ``SJ_ZO_PARAMS`` without LocalZO (null pointers and zeros)
NO_ZO = (None, None, 0, 0.0, 0.0, 0, 0, 0.0, 0.0)


def check_zo(t_steps: int, like: Tensor, zo_keys: Tensor | None, zo_table: Tensor | None, zo_dist: int,
             zo_samples: int, zo_delta: float) -> None:
    """Validate the LocalZO arguments of an op (a clear error instead of a kernel reading out of bounds)."""
    if zo_keys is None:
        return
    if zo_keys.dtype != torch.int64 or zo_keys.shape != (t_steps,) or zo_keys.device != like.device:
        raise ValueError(f"zo_keys must be an int64 tensor [T] = [{t_steps}] on {like.device}, got "
                         f"{zo_keys.dtype} {tuple(zo_keys.shape)} on {zo_keys.device}")
    if zo_dist not in DIST_CODES.values():
        raise ValueError(f"zo_dist must be one of {sorted(DIST_CODES.values())} (cupy_neurons.zo.DIST_CODES), "
                         f"got {zo_dist}")
    tabulated = zo_dist in (DIST_CODES[name] for name in TABULATED)
    if tabulated and (zo_table is None or zo_table.dtype != torch.float32 or zo_table.shape != (TABLE_INTERVALS + 1,)
                      or zo_table.device != like.device):
        raise ValueError(f"zo_table must be the float32 quantile table [{TABLE_INTERVALS + 1}] on {like.device} "
                         f"for LocalZO law code {zo_dist}")
    if not (isinstance(zo_samples, int) and zo_samples >= 1):
        raise ValueError(f"zo_samples must be an int >= 1, got {zo_samples!r}")
    if not zo_delta > 0:
        raise ValueError(f"zo_delta must be > 0, got {zo_delta!r}")


def zo_kernel_args(zo_keys: Tensor | None, zo_table: Tensor | None, zo_dist: int, zo_samples: int,
                   zo_delta: float) -> tuple[Any, ...]:
    """The kernel arguments ``SJ_ZO_PARAMS`` (:data:`NO_ZO` without LocalZO, i.e. ``zo_keys`` None)."""
    if zo_keys is None:
        return NO_ZO
    table = zo_table.contiguous() if zo_table is not None else None
    return (zo_keys.contiguous(), table, TABLE_INTERVALS, W_MAX, TABLE_INTERVALS / W_MAX, zo_samples,
            zo_dist, zo_delta, 1.0 / (2.0 * zo_delta * zo_samples))
