"""Test support for the entry points: ``train.py`` / ``test.py`` loaded as modules, and a tiny SHD config.

Used by the CLI, error-path, report, multi-seed and README-command tests (one copy of each helper).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import yaml

from sjframe.data.writers import random_dataset_files

ROOT = Path(__file__).resolve().parents[2]


def load_entry_point(name: str) -> ModuleType:
    """A fresh module object of the repository's ``<name>.py`` (``train`` or ``test``), not put in
    ``sys.modules``; call its ``main(argv)`` in-process."""
    spec = importlib.util.spec_from_file_location(f"_sjframe_entry_{name}", ROOT / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_tiny_shd_config(folder: Path, plots: bool = True) -> Path:
    """Random SHD-format files (24 train / 8 test samples) under ``folder / 'data'`` and ``folder / 'tiny.yaml'``:
    a 12-unit FCNet, T 10 + T_empty 3, one epoch of two batches, one thread (a run takes a few seconds)."""
    data = random_dataset_files("shd", folder / "data", n_train=24, n_test=8, events=300, seed=2)
    cfg = {
        "threads": 1,
        "data": {"name": "shd", "root": str(data), "T": 10, "T_empty": 3, "dt": 50, "val_fraction": 0.25},
        "model": {"name": "fcnet", "hidden_sizes": [12],
                  "neuron1": {"tau_m_steps": 3, "tau_s_steps": 3, "theta": 0.1},
                  "neuron2": {"tau_m_steps": 3, "tau_s_steps": 3, "theta": 0.1}},
        "train": {"epochs": 1, "batch_size": 6, "test_batch_size": 8, "max_batches": 2, "progress": False},
        "loss": {"D": 4, "A": 50},
        "eval": {"raster_samples": 1} if plots else {"raster_samples": 1, "plots": False},
    }
    path = folder / "tiny.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path
