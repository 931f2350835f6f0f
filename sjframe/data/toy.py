"""Small data sets available offline for the STDP, conversion and SpikeProp methods.

* ``digits``: scikit-learn's bundled 8x8 handwritten digits (1797 images, 10 classes, pixel
  values 0..16, no download). Returned scaled to [0, 1] as ``float32 [N, 1, 8, 8]``.
* ``iris``: scikit-learn's bundled Iris (150 samples, 4 features, 3 classes) as ``float64 [N, 4]``.
* ``xor``: the four XOR patterns ``[4, 2]`` in {0, 1} with labels ``[4]``.

Splits are stratified and fixed by a seed: ``test`` takes ``test_fraction`` of the data, ``val``
takes ``val_fraction`` of the rest, ``train`` the remainder (``val_fraction = 0`` gives an empty
validation split).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["SPLITS", "load_digits_split", "load_iris_split", "split_indices", "xor_patterns"]

SPLITS = ("train", "val", "test")


def split_indices(
    labels: np.ndarray, split: str, test_fraction: float, val_fraction: float, seed: int
) -> np.ndarray:
    """Indices of ``split`` in a stratified (test | val | train) partition of ``labels``."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction!r}")
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction!r}")
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    rest, test = train_test_split(idx, test_size=test_fraction, random_state=seed, stratify=labels)
    if split == "test":
        return np.sort(test)
    if val_fraction == 0.0:
        return np.sort(rest) if split == "train" else np.zeros(0, dtype=np.int64)
    train, val = train_test_split(rest, test_size=val_fraction, random_state=seed + 1, stratify=labels[rest])
    return np.sort(train if split == "train" else val)


def load_digits_split(
    split: str, test_fraction: float = 0.2, val_fraction: float = 0.1, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's 8x8 digits: ``(images float32 [N, 1, 8, 8] in [0, 1], labels int64 [N])``."""
    from sklearn.datasets import load_digits

    data = load_digits()
    idx = split_indices(data.target, split, test_fraction, val_fraction, seed)
    images = torch.from_numpy(data.images[idx] / 16.0).float().unsqueeze(1)
    return images, torch.from_numpy(data.target[idx]).long()


def load_iris_split(
    split: str, test_fraction: float = 0.33, val_fraction: float = 0.0, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """scikit-learn's Iris: ``(features float64 [N, 4] in cm, labels int64 [N])``."""
    from sklearn.datasets import load_iris

    data = load_iris()
    idx = split_indices(data.target, split, test_fraction, val_fraction, seed)
    return torch.from_numpy(data.data[idx]).double(), torch.from_numpy(data.target[idx]).long()


def xor_patterns() -> tuple[torch.Tensor, torch.Tensor]:
    """The XOR truth table: ``(inputs float64 [4, 2] in {0, 1}, labels int64 [4] = a xor b)``."""
    x = torch.tensor([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]], dtype=torch.float64)
    return x, torch.tensor([0, 1, 1, 0], dtype=torch.long)
