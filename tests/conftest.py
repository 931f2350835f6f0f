"""Shared test setup: the repository root on sys.path, deterministic torch, 2 threads."""

from __future__ import annotations

import sys
from collections.abc import Iterator
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


@pytest.fixture
def one_torch_thread() -> Iterator[None]:
    """One torch thread for the test (the previous count restored after).

    For tests of small data items (``pytestmark = pytest.mark.usefixtures("one_torch_thread")``):
    a thread pool only stalls them on a loaded machine.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def cuda_and_cupy() -> bool:
    from sjframe.neurons.backends import cupy_unavailable_reason

    return cupy_unavailable_reason() is None


requires_gpu = pytest.mark.skipif(not cuda_and_cupy(), reason="needs CUDA and CuPy")
