"""Data sets of sjframe: readers of the seed systems' files, binned into time-major frames.

``build_dataset(name, split, **options)`` returns a ``torch.utils.data.Dataset`` whose items are
``(x, y)``: ``x`` float32 ``[T_total, *input_shape]`` (time first, ``T_total = T + T_empty``: ``T``
binned steps followed by ``T_empty`` all-zero steps) and ``y`` an int class label. Every data set
has the attributes ``input_shape: tuple[int, ...]``, ``num_classes: int`` and ``dt_ms: float | None``
(``None`` when the time axis is not tied to milliseconds, e.g. the Yin-Yang latency code).

``split`` is ``train``, ``val`` or ``test``; the validation split is carved from the training file
except for Yin-Yang, which has a published validation split. ``val_split: {fraction: 0.1, by: speaker |
random, seed: 0}`` (:mod:`sjframe.data.common`): ``by: speaker`` holds out whole speakers (no speaker in
both ``train`` and ``val``), the default where the file carries speaker ids (``/extra/speaker``: SHD,
SSC, the spoken-digit files); ``by: random`` holds out a random subset of samples, the default
elsewhere; the older ``val_fraction`` / ``val_seed`` options are the random form. The test split is
never used for any choice (the best checkpoint, tuning): it is read only by ``test.py``. The paper's
protocol (``train.protocol: paper``) trains on the whole training file instead
(:func:`whole_training_options`) and has no validation split.
``time_major_collate`` stacks a list of items into ``x [T, B, *input_shape]`` and ``y [B]``.

Registry (name -> builder); see ``datasets/README.md`` for where each file goes:

========================  ==========================================================
``shd``                   Spiking Heidelberg Digits (``shd_{train,test}.h5``)
``spoken_digits``         SHD layout, files ``spoken_digits_{train,test}.h5``
``ntidigits``             N-TIDIGITS single digits (``n-tidigits-single.hdf5``)
``dvsgesture``            DVS128 Gesture, 10 classes (``DVS-Gesture-{train,test}10.hdf5``)
``dvsplane``              DVSPlane (``DVSPlane-{train,test}.hdf5``)
``nmnist``                N-MNIST (``nmnist_{train,test}.h5`` from ``convert_nmnist``)
``mnist``                 MNIST IDX files (torchvision layout)
``fashion_mnist``         Fashion-MNIST IDX files (torchvision layout)
``yinyang``               Yin-Yang, generated (no files)
========================  ==========================================================
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from sjframe.core.registry import lookup

__all__ = ["DATASETS", "SPLITS", "build_dataset", "time_major_collate", "whole_training_options"]

SPLITS = ("train", "val", "test")

# name -> "module:function"; the function is called as fn(split, **options) and validates its options.
DATASETS: dict[str, str] = {
    "shd": "sjframe.data.shd:build_shd",
    "spoken_digits": "sjframe.data.shd:build_spoken_digits",
    "ntidigits": "sjframe.data.ntidigits:build_ntidigits",
    "dvsgesture": "sjframe.data.dvs:build_dvsgesture",
    "dvsplane": "sjframe.data.dvs:build_dvsplane",
    "nmnist": "sjframe.data.nmnist:build_nmnist",
    "mnist": "sjframe.data.mnist:build_mnist",
    "fashion_mnist": "sjframe.data.mnist:build_fashion_mnist",
    "yinyang": "sjframe.data.yinyang:build_yinyang",
}


def build_dataset(name: str, split: str, **options: Any) -> Dataset:
    """Build data set ``name`` for ``split`` (``train | val | test``) with its ``options``.

    Unknown names, splits or option keys raise ``ValueError`` listing the valid ones.
    """
    builder = lookup(DATASETS, name, "data set")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r} for data set {name!r}; valid: {list(SPLITS)}")
    return builder(split, **options)


#: data sets whose ``train`` split is its own published set (no validation part is carved from it)
PUBLISHED_VAL_SPLIT = ("yinyang",)


def whole_training_options(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """The ``build_dataset(name, "train", **...)`` options that keep the **whole** training file (no validation
    split held out; the paper's protocol): ``options`` without ``val_split`` / ``val_fraction`` / ``val_seed``,
    plus ``val_fraction: 0`` where the data set carves its validation split from the training file."""
    out = {k: v for k, v in options.items() if k not in ("val_split", "val_fraction", "val_seed")}
    if name not in PUBLISHED_VAL_SPLIT:
        out["val_fraction"] = 0.0
    return out


def time_major_collate(batch: Sequence[tuple[torch.Tensor, int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Collate items ``(x [T, *shape], y)`` into ``(x [T, B, *shape], y LongTensor [B])``.

    Use as the ``collate_fn`` of a ``DataLoader``. All ``x`` must have the same shape. Data sets
    whose items are not time-major (``encoding: raw``, attribute ``time_major = False``) use the
    default collate instead (``x [B, *input_shape]``).
    """
    if len(batch) == 0:
        raise ValueError("batch is empty")
    xs = [item[0] for item in batch]
    shape = xs[0].shape
    if len(shape) == 0:
        raise ValueError("batch items have 0-d x; time_major_collate needs x of shape [T, *input_shape]")
    for i, x in enumerate(xs):
        if x.shape != shape:
            raise ValueError(f"batch item {i} has x of shape {tuple(x.shape)}, item 0 has {tuple(shape)}")
    x = torch.stack(xs, dim=1)
    y = torch.as_tensor([int(item[1]) for item in batch], dtype=torch.long)
    return x.contiguous(), y
