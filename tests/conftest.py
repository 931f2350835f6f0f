"""Shared test setup: the repository root on sys.path, deterministic torch, 2 threads."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def cuda_and_cupy() -> bool:
    from sjframe.neurons.backends import cupy_unavailable_reason

    return cupy_unavailable_reason() is None


requires_gpu = pytest.mark.skipif(not cuda_and_cupy(), reason="needs CUDA and CuPy")
