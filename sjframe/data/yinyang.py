"""Yin-Yang data set (seed 001's benchmark): generated, ships with no files.

Each sample is a point ``(x, y)`` drawn uniformly in the disc of radius ``r_big = 0.5`` centred at
``(0.5, 0.5)``, labelled by the region of the Yin-Yang symbol it falls in:

* class 2 ("dot") if ``d_R < r_small`` or ``d_L < r_small``;
* class 1 ("yin") if ``d_R <= r_small`` or ``r_small < d_L <= r_big / 2`` or
  (``y > r_big`` and ``d_R > r_big / 2``);
* class 0 ("yang") otherwise,

with ``d_R`` / ``d_L`` the distances to ``(1.5 r_big, r_big)`` / ``(0.5 r_big, r_big)`` and
``r_small = 0.1``. The generator draws a goal class ``rng.randint(3)`` per sample, then rejects
points until one of that class is found (so the classes are balanced in expectation). With
``numpy.random.RandomState(seed)`` this reproduces the published splits exactly; the output
vector is ``(x, y, 1 - x, 1 - y)``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from sjframe.data.common import check_options, require_bool, require_int, require_number

__all__ = [
    "ENCODINGS", "R_BIG", "R_SMALL", "YINYANG_SPLITS", "YinYangDataset", "build_yinyang", "encode_latency",
    "make_yinyang", "yinyang_class",
]

R_SMALL = 0.1
R_BIG = 0.5

# encodings of YinYangDataset (see its docstring)
ENCODINGS = ("latency", "latency_substep", "raw")

# split -> (number of samples, RandomState seed) of the published data set.
YINYANG_SPLITS: dict[str, tuple[int, int]] = {"train": (5000, 42), "val": (1000, 41), "test": (1000, 40)}


def yinyang_class(x: float, y: float, r_small: float = R_SMALL, r_big: float = R_BIG) -> int:
    """Class (0 yang, 1 yin, 2 dot) of the point ``(x, y)`` inside the Yin-Yang disc."""
    d_right = math.hypot(x - 1.5 * r_big, y - r_big)
    d_left = math.hypot(x - 0.5 * r_big, y - r_big)
    if d_right < r_small or d_left < r_small:
        return 2
    is_yin = (d_right <= r_small) or (r_small < d_left <= 0.5 * r_big) or (y > r_big and d_right > 0.5 * r_big)
    return int(is_yin)


def make_yinyang(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Generate ``n`` Yin-Yang samples with ``numpy.random.RandomState(seed)``.

    Returns ``X`` float32 ``[n, 4]`` with rows ``(x, y, 1 - x, 1 - y)`` (all in ``[0, 1]``) and
    ``y`` int64 ``[n]`` with classes in ``{0, 1, 2}``. The published splits are
    ``make_yinyang(*YINYANG_SPLITS[split])``.
    """
    if isinstance(n, bool) or not isinstance(n, int) or n < 0:
        raise ValueError(f"n must be a non-negative int, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an int, got {seed!r}")
    rng = np.random.RandomState(seed)
    features = np.empty((n, 4), dtype=np.float64)
    labels = np.empty(n, dtype=np.int64)
    for i in range(n):
        goal = rng.randint(3)
        while True:
            x, y = rng.rand(2) * 2.0 * R_BIG
            if math.hypot(x - R_BIG, y - R_BIG) > R_BIG:
                continue
            if yinyang_class(x, y) == goal:
                break
        features[i] = (x, y, 1.0 - x, 1.0 - y)
        labels[i] = goal
    return torch.from_numpy(features.astype(np.float32)), torch.from_numpy(labels)


def encode_latency(
    features: torch.Tensor,
    T: int,
    t_min: float,
    t_span: float,
    substep: bool = False,
    tau_s: float = 5.0,
    bias_step: int | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames ``[n, T, 4 (+1 bias)]`` float32 and event steps ``[n, 4]`` of features ``[n, 4]`` in ``[0, 1]``.

    Input ``i`` has the event time ``s_i = t_min + v_i * t_span`` (steps). ``substep=False``
    (``latency``): a 1 at step ``floor(s_i + 0.5)``. ``substep=True`` (``latency_substep``):
    ``exp(-(k_i + 1 - s_i) / tau_s)`` at step ``k_i = floor(s_i)`` (see :class:`YinYangDataset`).
    ``bias_step``: a fifth column with a 1 at that step (``None``: no bias column).
    """
    times = t_min + features.double() * t_span
    if substep:
        steps = torch.floor(times).long()
        amplitude = torch.exp(-(steps + 1 - times) / tau_s).float()
    else:
        steps = torch.floor(times + 0.5).long()
        amplitude = torch.ones(steps.shape, dtype=torch.float32)
    n = features.shape[0]
    frames = torch.zeros(n, T, 4 if bias_step is None else 5, dtype=torch.float32)
    rows = torch.arange(n).unsqueeze(1).expand(n, 4)
    cols = torch.arange(4).unsqueeze(0).expand(n, 4)
    frames[rows, steps, cols] = amplitude
    if bias_step is not None:
        frames[:, bias_step, 4] = 1.0
    return frames, steps


class YinYangDataset(Dataset):
    """The Yin-Yang split as a data set, raw, latency-coded or latency-coded with sub-step times.

    * ``encoding="latency"``: items ``x`` float32 ``[T, 5]`` (``[T, 4]`` without bias), one spike
      per input: input ``i`` with value ``v_i`` in ``[0, 1]`` fires at step
      ``floor(t_min + v_i * t_span + 0.5)`` (rounded half up), and the bias input (column 4) fires
      at ``bias_step``. ``T`` must exceed every step; ``T_empty`` all-zero steps follow (items
      ``[T + T_empty, 5]``). ``dt_ms`` is ``None`` (steps are abstract). The network sees only
      ``~t_span`` values per coordinate (``scripts/yinyang_quantisation_bound.py``).
    * ``encoding="latency_substep"``: the same one event per input, at the continuous time
      ``s_i = t_min + v_i * t_span`` (in steps, not rounded), written into step ``k_i = floor(s_i)``
      with the amplitude ``exp(-(k_i + 1 - s_i) / tau_s)`` in ``[exp(-1 / tau_s), 1)``; the bias is
      ``1`` at ``bias_step`` as above. Why: a current-based neuron with synaptic decay
      ``gam = exp(-1 / tau_s)`` integrates ``I_t = gam * I_{t-1} + W x_t`` (CuLIF's update), so
      after step ``n >= k_i`` the input's share of ``I_n`` is
      ``w * gam^(n - k_i) * exp(-(k_i + 1 - s_i) / tau_s) = w * exp(-(n + 1 - s_i) / tau_s)``:
      exactly the current at the step boundary ``n + 1`` of an exponential synapse driven by a spike at
      the continuous time ``s_i`` (a BatchNorm after the Linear layer scales ``w`` and adds the same
      constant at every step: the input's share stays exact). Nothing is quantised (``s_i = k_i + 1 + tau_s * ln(x[k_i, i])``
      recovers the input exactly), so the classifier's ceiling is the raw inputs' one. ``tau_s``
      (steps) should equal the first layer's synaptic time constant (``model.neuron1.tau_s_steps``).
    * ``encoding="raw"``: items ``x`` float32 ``[4]`` = ``(x, y, 1 - x, 1 - y)``, not time-major
      (``time_major = False``: use the default collate, giving ``[B, 4]``).
    """

    def __init__(
        self,
        split: str,
        encoding: str = "latency",
        T: int = 20,
        t_min: float = 1.0,
        t_span: float = 18.0,
        bias: bool = True,
        bias_step: int = 9,
        T_empty: int = 0,
        tau_s: float = 5.0,
    ) -> None:
        if split not in YINYANG_SPLITS:
            raise ValueError(f"split must be one of {list(YINYANG_SPLITS)}, got {split!r}")
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {list(ENCODINGS)} for yinyang, got {encoding!r}")
        features, labels = make_yinyang(*YINYANG_SPLITS[split])
        self.split = split
        self.encoding = encoding
        self.features = features
        self.labels = labels
        self.num_classes = 3
        if encoding == "raw":
            self.input_shape: tuple[int, ...] = (4,)
            self.dt_ms = None
            self.time_major = False
            self.frames = None
            return
        T = require_int("T", T, minimum=1)
        t_min = require_number("t_min", t_min, minimum=0.0)
        t_span = require_number("t_span", t_span, minimum=0.0)
        bias = require_bool("bias", bias)
        bias_step = require_int("bias_step", bias_step, minimum=0)
        T_empty = require_int("T_empty", T_empty, minimum=0)
        tau_s = require_number("tau_s", tau_s, minimum=0.0)
        if tau_s <= 0:
            raise ValueError(f"tau_s must be > 0, got {tau_s!r}")
        substep = encoding == "latency_substep"
        last = math.floor(t_min + t_span) if substep else math.floor(t_min + t_span + 0.5)
        if last >= T:
            raise ValueError(f"T={T} too short: inputs fire up to step {last} (t_min={t_min}, t_span={t_span})")
        if bias and bias_step >= T:
            raise ValueError(f"bias_step={bias_step} must be < T={T}")
        frames, steps = encode_latency(features, T + T_empty, t_min, t_span, substep, tau_s,
                                       bias_step if bias else None)
        width = frames.shape[2]
        self.frames = frames
        self.steps = steps
        self.tau_s = tau_s
        self.input_shape = (width,)
        self.dt_ms = None
        self.time_major = True

    def __len__(self) -> int:
        return self.labels.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        if self.frames is None:
            return self.features[index], int(self.labels[index])
        return self.frames[index], int(self.labels[index])


_YINYANG_OPTIONS = ("encoding", "T", "T_empty", "t_min", "t_span", "bias", "bias_step", "tau_s")


def build_yinyang(split: str, **options: Any) -> YinYangDataset:
    """Registry builder of ``yinyang``: options ``encoding`` (``latency`` | ``latency_substep`` | ``raw``),
    ``T``, ``T_empty``, ``t_min``, ``t_span``, ``bias``, ``bias_step``, ``tau_s`` (steps; ``latency_substep``
    only). The published splits are used as they are (no ``val_fraction``: the validation split is the
    published one, seed 41)."""
    check_options("yinyang", options, _YINYANG_OPTIONS)
    return YinYangDataset(split, **options)
