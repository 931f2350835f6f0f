"""Shared test setup: the repository root on sys.path, deterministic torch, 2 threads."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
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


def requires_cuda(test: Callable) -> Callable:
    """A GPU test of torch code alone (no CuPy): marked ``gpu``, skipped without CUDA. The skip reason starts
    with "needs CUDA", as ``requires_gpu``'s does (scripts/gpu_checks.sh fails on either)."""
    return pytest.mark.gpu(pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")(test))
