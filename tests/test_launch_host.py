"""Host-side logic of the GPU launch path, checked on the CPU (issue #20), plus its GPU twins.

* the CuPy launch constructs no deprecated object: ``cupy.cuda.Stream.from_external`` with the device
  index, never ``cupy.cuda.ExternalStream`` (warnings as errors; CuPy installed, no GPU needed: the
  kernel, the device context and torch's stream are stand-ins, the CuPy stream object is real);
* the block size from N and the SM count;
* the LocalZO keys: one generator call, bit for bit the keys of ``T`` single draws;
* the quantile table cached per (law, device, dtype): a hit on the second call, no copy.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import pytest
import torch

from cupy_neurons import launch
from cupy_neurons.build import Specialisation
from sjframe.spike import localzo as lz
from tests.conftest import requires_gpu


# ------------------------------------------------------------------------------------ CuPy stream
class _FakeTorchStream:
    cuda_stream = 0x5EED


class _FakeKernel:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def __call__(self, grid: tuple, block: tuple, args: tuple, stream: Any = None) -> None:
        self.calls.append((grid, block, args, stream))


def test_cupy_launch_uses_stream_from_external_with_the_device_index(monkeypatch) -> None:  # noqa: ANN001
    cupy = pytest.importorskip("cupy")
    kernel = _FakeKernel()
    devices: list[int] = []
    asked: list[Any] = []

    @contextlib.contextmanager
    def fake_device(index: int):  # noqa: ANN202 - cupy.cuda.Device(index) needs a GPU
        devices.append(index)
        yield

    def fake_current_stream(device: Any = None) -> _FakeTorchStream:
        asked.append(device)
        return _FakeTorchStream()

    monkeypatch.setattr(launch, "_cupy_function", lambda spec, name, index: kernel)
    monkeypatch.setattr(cupy.cuda, "Device", fake_device)
    monkeypatch.setattr(torch.cuda, "current_stream", fake_current_stream)
    external: list[Any] = []
    monkeypatch.setattr(cupy.cuda, "ExternalStream", lambda *a, **k: external.append(a))  # must never be called

    spec = Specialisation("lif.cu", "float32")
    x = torch.zeros(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a DeprecationWarning would raise here
        launch.launch_cupy(spec, "k", (("const_scalar_ptr", "x"), ("int", "n")), 7, 64, (x, 3),
                           torch.device("cuda", 1))
    assert not external
    assert devices == [1] and asked == [1]
    ((grid, block, args, stream),) = kernel.calls
    assert grid == (7,) and block == (64,) and len(args) == 2
    assert type(stream) is cupy.cuda.Stream  # not the deprecated ExternalStream (a sibling class)
    assert stream.ptr == 0x5EED and stream.device_id == 1


def test_external_stream_is_deprecated_in_this_cupy() -> None:
    """The reason for the change: constructing ExternalStream warns (an error under -W error)."""
    cupy = pytest.importorskip("cupy")
    with pytest.warns(DeprecationWarning, match="from_external"):
        cupy.cuda.ExternalStream(0x5EED, 0)


def test_launch_picks_the_block_from_the_sm_count(monkeypatch) -> None:  # noqa: ANN001
    """launch() on a (stand-in) CUDA device asks block_size with the device's SM count; the grid covers N."""
    seen: list[tuple] = []
    monkeypatch.setattr(launch, "_check_args", lambda spec, sig, args: (torch.device("cuda", 0), list(args)))
    monkeypatch.setattr(launch, "sm_count", lambda index: 132)
    monkeypatch.setattr(launch, "launch_cupy", lambda spec, name, params, grid, block, args, device:
                        seen.append((grid, block)))
    from cupy_neurons.build import KernelSig

    sig = KernelSig("k", (("int", "n"),))
    for n, block in ((4096, 32), (16384, 32), (40_000, 128), (2**20, 256), (1, 32)):
        launch.launch(Specialisation("lif.cu", "float32"), sig, n, (n,))
        grid, got = seen[-1]
        assert got == block and grid * got >= n > (grid - 1) * got


# ------------------------------------------------------------------------------------ block size
@pytest.mark.parametrize(("n", "sms", "want"), [
    (2**20, 132, 256),      # large layer: 4096 blocks of 256
    (4096, 132, 32),        # 16 blocks of 256 on 132 SMs: spread to 128 blocks of one warp
    (16384, 132, 32),       # 64 blocks of 256 -> 512 blocks of 32
    (40_000, 132, 128),     # 157 blocks of 256 < 2 x 132; 313 of 128
    (67_329, 132, 256),     # 264 = 2 x 132 blocks of 256 (the last one partial)
    (67_328, 132, 128),     # 263 blocks of 256: one short
    (1, 132, 32),           # never below one warp
    (0, 132, 32),
    (4096, 8, 256),         # a small GPU: 16 blocks of 256 already give each of 8 SMs two
])
def test_block_size(n: int, sms: int, want: int) -> None:
    assert launch.block_size(n, sms) == want


def test_block_size_bounds_and_validation() -> None:
    for n in (1, 31, 33, 1000, 5000, 123_457, 2**24 + 3):
        for sms in (1, 14, 132):
            b = launch.block_size(n, sms)
            assert launch.MIN_BLOCK <= b <= launch.BLOCK and b & (b - 1) == 0
            # the largest such block: doubling it would leave fewer than 2 blocks per SM (or exceed BLOCK)
            assert b == launch.BLOCK or -(-n // (2 * b)) < launch.BLOCKS_PER_SM * sms
    with pytest.raises(ValueError, match="block_size"):
        launch.block_size(10, 0)
    with pytest.raises(ValueError, match="block_size"):
        launch.block_size(-1, 10)


# ------------------------------------------------------------------------------------ LocalZO keys
@pytest.mark.parametrize("count", [1, 5, 300])
def test_draw_keys_equals_single_draws_bit_for_bit(count: int) -> None:
    a = torch.Generator().manual_seed(11)
    b = torch.Generator().manual_seed(11)
    keys = lz.draw_keys(a, count)
    singles = [lz.draw_key(b) for _ in range(count)]
    assert keys.dtype == torch.int64 and keys.device.type == "cpu"
    assert keys.tolist() == singles
    assert torch.equal(a.get_state(), b.get_state())  # the generator left in the same state


def test_draw_keys_from_the_global_rng() -> None:
    torch.manual_seed(4)
    keys = lz.draw_keys(None, 6)
    after = torch.randint(0, 2**62, (1,))
    torch.manual_seed(4)
    assert keys.tolist() == [lz.draw_key(None) for _ in range(6)]
    assert torch.equal(after, torch.randint(0, 2**62, (1,)))


def test_draw_keys_is_one_generator_call(monkeypatch) -> None:  # noqa: ANN001
    calls = []
    real = torch.randint

    def counting(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch, "randint", counting)
    lz.draw_keys(torch.Generator().manual_seed(0), 128)
    assert len(calls) == 1
    with pytest.raises(ValueError, match="count"):
        lz.draw_keys(None, -1)
    assert lz.draw_keys(None, 0).shape == (0,)


def test_kernel_path_draws_its_keys_in_one_call(monkeypatch) -> None:  # noqa: ANN001
    """The kernel bridge (sjframe.neurons.base: the T keys of a LocalZO forward): one draw_keys call, no draw_key,
    no .item()."""
    import sjframe.neurons.base as kn
    from sjframe.spike import GradientSpec

    gen = torch.Generator().manual_seed(1)
    want = [lz.draw_key(gen) for _ in range(9)]
    seen = []
    monkeypatch.setattr(kn.lz, "draw_key", lambda g: pytest.fail("draw_key (one .item() per key) was called"))
    real = lz.draw_keys
    monkeypatch.setattr(kn.lz, "draw_keys", lambda g, n, d=None: seen.append((n, d)) or real(g, n, d))
    x = torch.randn(9, 2, 3)
    spec = GradientSpec(mode="localzo", distribution="normal", rng="philox")
    _, zo = kn.kernel_gradient_args(None, spec, torch.Generator().manual_seed(1), x, "test")
    assert seen == [(9, x.device)]
    assert zo["zo_keys"].tolist() == want
    assert zo["zo_table"] is lz.device_table("normal", spec.delta, spec.k, "cpu")  # the cached table


# ------------------------------------------------------------------------------------ quantile table
def test_device_table_is_cached_per_law_device_and_dtype(monkeypatch) -> None:  # noqa: ANN001
    lz._device_table.cache_clear()
    first = lz.device_table("normal", 0.05, 100.0, "cpu")
    info = lz._device_table.cache_info()
    again = lz.device_table("normal", 0.3, 7.0, torch.device("cpu"))  # delta, k do not matter for normal
    assert again is first and lz._device_table.cache_info().hits == info.hits + 1
    assert torch.equal(first, lz.quantile_table("normal")) and first.dtype == torch.float32
    assert lz.device_table("normal", 0.05, 100.0, "cpu", torch.float64) is not first
    fs_a = lz.device_table("fast_sigmoid", 0.05, 100.0, "cpu")
    assert lz.device_table("fast_sigmoid", 0.05, 50.0, "cpu") is not fs_a  # fast_sigmoid depends on k
    assert lz.device_table("fast_sigmoid", 0.05, 100.0, "cpu") is fs_a
    assert lz.device_table("laplace", 0.05, 100.0, "cpu") is None
    with pytest.raises(ValueError, match="unknown LocalZO distribution"):
        lz.device_table("cauchy", 0.05, 100.0, "cpu")


def test_reference_estimate_reads_the_cached_table(monkeypatch) -> None:  # noqa: ANN001
    """localzo_estimate_with copies no table per call: quantile_table (the fresh CPU copy) is not called."""
    lz.device_table("sigmoid", 0.2, 100.0, "cpu")  # fill the cache
    monkeypatch.setattr(lz, "quantile_table", lambda *a, **k: pytest.fail("a fresh table was copied"))
    u = torch.randn(50)
    g = lz.localzo_estimate_with(u, "sigmoid", 0.2, 2, 100.0, "philox", None, 12345)
    assert g.shape == u.shape


# ------------------------------------------------------------------------------------ GPU twins
@requires_gpu
def test_draw_keys_on_cuda_equal_single_draws() -> None:
    cpu_a, cpu_b = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    keys = lz.draw_keys(cpu_a, 16, "cuda")  # pinned, non-blocking copy
    assert keys.device.type == "cuda" and keys.tolist() == [lz.draw_key(cpu_b) for _ in range(16)]
    gpu_a = torch.Generator(device="cuda").manual_seed(3)
    gpu_b = torch.Generator(device="cuda").manual_seed(3)
    keys = lz.draw_keys(gpu_a, 16)  # on the device, no synchronisation
    assert keys.device.type == "cuda" and keys.tolist() == [lz.draw_key(gpu_b) for _ in range(16)]
    assert torch.equal(gpu_a.get_state(), gpu_b.get_state())


@requires_gpu
def test_cupy_stream_on_the_device_is_torchs_current_stream() -> None:
    import cupy

    side = torch.cuda.Stream()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.cuda.stream(side):
            stream = launch.cupy_stream(torch.cuda.current_device())
    assert type(stream) is cupy.cuda.Stream and stream.ptr == side.cuda_stream
    assert stream.device_id == torch.cuda.current_device()
