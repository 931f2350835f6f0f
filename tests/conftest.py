"""Shared test setup: the repository root on sys.path, deterministic torch, 2 threads; the GPU marks.

SpikingJelly at collection time: this file (through ``sjframe.neurons.base``, whose package
``sjframe.neurons`` holds the SpikingJelly modules) and the GPU test files import SpikingJelly when they
are collected. We keep that and carry the wheel instead of making collection SpikingJelly-free: the GPU
tests need SpikingJelly themselves (``functional.reset_net`` in the kernel tests, the engine, STDP and
conversion GPU cases), and sjframe's neurons are SpikingJelly modules by design, so a collection without
it would only move the ImportError into the tests. On the device machine (which has no SpikingJelly)
``scripts/gpu_checks.sh`` installs the carried wheels first and stops with a clear message before pytest
if SpikingJelly still cannot be imported; ``tests/test_gpu_checks_dryrun.py`` proves both on the CPU.
"""

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

# Skip reasons of the GPU marks. Every GPU test's reason starts with NEEDS_CUDA: scripts/gpu_checks.sh fails
# on any skip that does (a pass must prove that the GPU tests ran), and the ``gpu`` marker is added to every
# test carrying such a skip mark (pytest_collection_modifyitems below), so ``-m gpu`` selects all of them.
NEEDS_CUDA = "needs CUDA"

# Text of the CUDA errors that leave the context unusable (sticky errors): after one, every later CUDA
# call in the process fails too, so the session stops at the first (pytest_runtest_makereport below).
_STICKY_CUDA_ERRORS = (
    "illegal memory access", "illegal address", "cudaErrorIllegalAddress", "CUDA_ERROR_ILLEGAL_ADDRESS",
    "misaligned address", "CUDA_ERROR_MISALIGNED_ADDRESS", "illegal instruction", "CUDA_ERROR_ILLEGAL_INSTRUCTION",
    "unspecified launch failure", "CUDA_ERROR_LAUNCH_FAILED", "device-side assert", "CUDA_ERROR_ASSERT",
    "CUDA_ERROR_HARDWARE_STACK_ERROR", "CUDA_ERROR_INVALID_PC",
)


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
    from sjframe.neurons.base import cupy_unavailable_reason

    return cupy_unavailable_reason() is None


requires_gpu = pytest.mark.skipif(not cuda_and_cupy(), reason=f"{NEEDS_CUDA} and CuPy")


def requires_cuda(test: Callable) -> Callable:
    """A GPU test of torch code alone (no CuPy): marked ``gpu``, skipped without CUDA. The skip reason starts
    with "needs CUDA", as ``requires_gpu``'s does (scripts/gpu_checks.sh fails on either)."""
    return pytest.mark.gpu(pytest.mark.skipif(not torch.cuda.is_available(), reason=NEEDS_CUDA)(test))


def is_gpu_item(item: pytest.Item) -> bool:
    """True for a test under a GPU skip mark (``requires_gpu``, ``requires_cuda``) or marked ``gpu``."""
    if item.get_closest_marker("gpu") is not None:
        return True
    return any(str(mark.kwargs.get("reason", "")).startswith(NEEDS_CUDA) for mark in item.iter_markers("skipif"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every GPU test ``gpu`` (``requires_gpu`` is a plain skipif used as ``pytestmark`` and as a
    decorator, so it cannot carry the marker itself): ``pytest -m gpu`` then selects exactly the GPU tests."""
    for item in items:
        if item.get_closest_marker("gpu") is None and is_gpu_item(item):
            item.add_marker(pytest.mark.gpu)


def is_sticky_cuda_error(text: str) -> bool:
    """True if ``text`` (a failure's report) names a CUDA error that poisons the context."""
    return any(needle in text for needle in _STICKY_CUDA_ERRORS)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo) -> Iterator[None]:
    """Stop the session at the first sticky CUDA fault: every later test would only report the same
    poisoned context (scripts/gpu_checks.sh also runs with ``-x``; this covers runs without it)."""
    outcome = yield
    report = outcome.get_result()
    if report.failed and torch.cuda.is_available() and is_sticky_cuda_error(str(report.longrepr)):
        item.session.shouldstop = (f"CUDA fault in {item.nodeid}: the CUDA context is unusable after it, so the "
                                   "session stops here (rerun from this test, in a fresh process)")
