"""Input spike-time encodings of exact first-spike-time learning (one spike per input, or none).

Times are in units of ``tau_s``, ``t_early = 0.15``, ``t_late = 2.0`` by default:

* Yin-Yang: the four values ``(x, y, 1-x, 1-y)`` in ``[0, 1]`` fire at ``t = t_early + v (t_late - t_early)``
  (the bias spikes are added per layer by the network, not here).
* MNIST (28x28 = 784 inputs): ``p = pixel / 255``; bright = early: ``t = t_early + (1 - p)(t_late - t_early)``.
* 16x16 MNIST (256 inputs): centre crop 24x24, bilinear (antialiased) resize to 16x16, then the same
  code; black pixels (``p = 0``) do not spike (``t = inf``) when ``black_no_spike``.

Splits: Yin-Yang uses its published train / validation / test sets; MNIST uses the last
``n_val`` training images as validation (the published setup: 50000 / 10000) and the test file.
All arrays returned are ``times [N, F]`` (float64 by default) and ``labels [N]`` (int64).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["encode_values", "encode_mnist", "load_split", "DATASETS"]

DATASETS = ("yinyang", "mnist", "mnist16")


def encode_values(values: torch.Tensor, t_early: float = 0.15, t_late: float = 2.0,
                  dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """``t = t_early + v (t_late - t_early)`` for values ``v [N, F]`` in ``[0, 1]``."""
    if not isinstance(values, torch.Tensor) or values.dim() != 2:
        raise ValueError(f"values must be an [N, F] tensor, got {getattr(values, 'shape', values)!r}")
    v = values.to(dtype)
    if torch.isnan(v).any() or (v < 0).any() or (v > 1).any():
        raise ValueError("values must lie in [0, 1] (and not be NaN)")
    if not t_late > t_early >= 0:
        raise ValueError(f"need 0 <= t_early < t_late, got t_early={t_early}, t_late={t_late}")
    return t_early + v * (t_late - t_early)


def encode_mnist(images: torch.Tensor, size: int = 28, t_early: float = 0.15, t_late: float = 2.0,
                 black_no_spike: bool = False, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    """Spike times ``[N, size * size]`` of uint8 images ``[N, 28, 28]`` (bright = early).

    ``size=16``: centre crop to 24x24, then bilinear antialiased resize to 16x16. Pixels with
    ``p = 0`` give ``inf`` (no spike) if ``black_no_spike``, else ``t_late``.
    """
    if not isinstance(images, torch.Tensor) or images.dim() != 3 or tuple(images.shape[1:]) != (28, 28):
        raise ValueError(f"images must be [N, 28, 28], got {getattr(images, 'shape', images)!r}")
    if images.dtype != torch.uint8:
        raise ValueError(f"images must be uint8, got {images.dtype}")
    if size not in (28, 16):
        raise ValueError(f"size must be 28 or 16, got {size}")
    p = images.to(dtype) / 255.0
    if size == 16:
        crop = p[:, 2:26, 2:26].unsqueeze(1)  # [N, 1, 24, 24]
        p = F.interpolate(crop, size=(16, 16), mode="bilinear", align_corners=False, antialias=True).squeeze(1)
        p = p.clamp(0.0, 1.0)
    p = p.reshape(p.shape[0], -1)
    t = encode_values(1.0 - p, t_early, t_late, dtype)
    if black_no_spike:
        t = torch.where(p <= 0, torch.full_like(t, math.inf), t)
    return t


def load_split(name: str, split: str, root: str = "datasets", t_early: float = 0.15, t_late: float = 2.0,
               black_no_spike: bool | None = None, n_val: int = 10000,
               dtype: torch.dtype = torch.float64) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(times [N, F], labels [N], num_classes)`` of data set ``name`` (``yinyang | mnist | mnist16``).

    ``black_no_spike=None`` means the data set's default (``True`` for ``mnist16``, else ``False``).
    """
    if split not in ("train", "val", "test"):
        raise ValueError(f"split must be one of ['train', 'val', 'test'], got {split!r}")
    if name == "yinyang":
        from sjframe.data.yinyang import YINYANG_SPLITS, make_yinyang

        x, y = make_yinyang(*YINYANG_SPLITS[split])
        return encode_values(x, t_early, t_late, dtype), y.long(), 3
    if name in ("mnist", "mnist16"):
        from sjframe.data.mnist import load_mnist_arrays

        images, labels = load_mnist_arrays(root, "test" if split == "test" else "train", kind="mnist")
        images = torch.as_tensor(images)
        labels = torch.as_tensor(labels).long()
        if split != "test":
            if not 0 < n_val < images.shape[0]:
                raise ValueError(f"n_val must be in (0, {images.shape[0]}), got {n_val}")
            cut = images.shape[0] - n_val
            images, labels = (images[:cut], labels[:cut]) if split == "train" else (images[cut:], labels[cut:])
        size = 16 if name == "mnist16" else 28
        black = (name == "mnist16") if black_no_spike is None else black_no_spike
        return encode_mnist(images, size, t_early, t_late, black, dtype), labels, 10
    raise ValueError(f"unknown data set {name!r}; valid: {list(DATASETS)}")
