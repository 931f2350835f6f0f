"""The binning path: every event in the right bin (checked against a direct count), windows, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sjframe.data.binning import SparseFrames, bin_events, bin_events_chunked, concat_samples, downsample_dvs_units

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _random_samples(rng: np.random.Generator, n: int, num_units: int, max_us: int) -> list[tuple[np.ndarray, np.ndarray]]:
    samples = []
    for i in range(n):
        k = 0 if i == 2 else int(rng.integers(1, 400))
        t_us = np.sort(rng.integers(0, max_us, size=k))
        t_us[: k // 10] = (t_us[: k // 10] // 10_000) * 10_000  # some events exactly on a bin edge
        samples.append((np.sort(t_us), rng.integers(0, num_units, size=k)))
    return samples


def _concat(samples: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    offsets = np.zeros(len(samples) + 1, dtype=np.int64)
    np.cumsum([len(t) for t, _ in samples], out=offsets[1:])
    times = np.concatenate([t for t, _ in samples])
    units = np.concatenate([u for _, u in samples])
    return times, units, offsets


def _direct_count(t_us: np.ndarray, units: np.ndarray, T: int, dt_ms: float, num_units: int, shift: bool) -> np.ndarray:
    """Reference: one event at a time, integer arithmetic."""
    out = np.zeros((T, num_units), dtype=np.float32)
    t0 = int(t_us[0]) if shift and len(t_us) else 0
    width = int(round(dt_ms * 1000))
    for t, u in zip(t_us.tolist(), units.tolist()):
        b = (t - t0) // width
        if b < T:
            out[b, u] += 1
    return out


@pytest.mark.parametrize("time_unit, shift", [("s", False), ("us", False), ("us", True), ("ms", False)])
@pytest.mark.parametrize("dt_ms, T", [(10.0, 37), (1.0, 300), (2.5, 41)])
def test_bins_match_a_direct_count(time_unit: str, shift: bool, dt_ms: float, T: int) -> None:
    rng = np.random.default_rng(int(dt_ms * 10) + T)
    num_units = 23
    samples = _random_samples(rng, 6, num_units, max_us=450_000)
    t_us, units, offsets = _concat(samples)
    scale = {"s": 1e-6, "ms": 1e-3, "us": 1.0}[time_unit]
    times = t_us * scale if time_unit != "us" else t_us.astype(np.uint32)
    frames = bin_events(
        times, units, offsets, num_units=num_units, T=T, dt_ms=dt_ms, time_unit=time_unit, shift_to_first=shift
    )
    assert len(frames) == 6
    for i, (t, u) in enumerate(samples):
        expected = _direct_count(t, u, T, dt_ms, num_units, shift)
        got = frames.dense(i)
        assert got.shape == (T, num_units) and got.dtype == torch.float32
        np.testing.assert_array_equal(got.numpy(), expected)
        assert frames.sample_counts()[i] == expected.sum()


def test_T_empty_and_clamp() -> None:
    times = np.array([0.0, 0.001, 0.002, 0.0125, 0.05])
    units = np.array([3, 3, 3, 0, 1])
    frames = bin_events(times, units, np.array([0, 5]), num_units=4, T=3, dt_ms=10.0, time_unit="s")
    x = frames.dense(0, T_empty=4)
    assert x.shape == (7, 4)
    assert x[0, 3] == 3 and x[1, 0] == 1 and x.sum() == 4  # the event at 50 ms is outside T * dt = 30 ms
    assert torch.count_nonzero(x[3:]) == 0
    assert frames.dense(0, clamp=True)[0, 3] == 1


def test_edge_of_the_window_and_float32_decimal_times() -> None:
    # 0.03 s with dt = 10 ms is bin 3: outside T = 3; 0.01 s in float32 is 0.0099999998 s but is bin 1
    times = np.array([0.01, 0.02, 0.03], dtype=np.float32)
    frames = bin_events(times, np.array([0, 1, 2]), np.array([0, 3]), num_units=3, T=3, dt_ms=10.0)
    x = frames.dense(0)
    assert x[1, 0] == 1 and x[2, 1] == 1 and x.sum() == 2


def test_empty_samples_give_zero_frames() -> None:
    frames = bin_events(np.zeros(0), np.zeros(0, dtype=np.int64), np.array([0, 0, 0]), num_units=5, T=4, dt_ms=1.0)
    assert len(frames) == 2 and torch.count_nonzero(frames.dense(1, T_empty=2)) == 0
    # events all after the window: also all zero
    frames = bin_events(np.array([1.0]), np.array([2]), np.array([0, 1]), num_units=5, T=4, dt_ms=1.0)
    assert frames.dense(0).sum() == 0


def test_select_and_concat() -> None:
    rng = np.random.default_rng(3)
    samples = _random_samples(rng, 5, 7, 100_000)
    t_us, units, offsets = _concat(samples)
    frames = bin_events(t_us, units, offsets, num_units=7, T=9, dt_ms=10.0, time_unit="us")
    picked = frames.select([4, 0, 2])
    for j, i in enumerate([4, 0, 2]):
        assert torch.equal(picked.dense(j), frames.dense(i))
    joined = concat_samples([frames.select([0, 1]), frames.select([2, 3, 4])])
    for i in range(5):
        assert torch.equal(joined.dense(i), frames.dense(i))
    assert isinstance(joined, SparseFrames) and joined.positions.dtype == np.int32


def test_dvs_downsampling() -> None:
    x = np.array([0, 3, 4, 127, 5])
    y = np.array([0, 3, 0, 127, 9])
    p = np.array([0, 0, 1, 1, 0])
    units, shape = downsample_dvs_units(x, y, p, width=128, height=128, factor=4)
    assert shape == (2, 32, 32)
    assert units.tolist() == [0, 0, 1024 + 1, 1024 + 31 * 32 + 31, 2 * 32 + 1]
    _, shape = downsample_dvs_units(x, y, p, width=304, height=240, factor=4)
    assert shape == (2, 60, 76)
    with pytest.raises(ValueError, match="x = 128 out of range"):
        downsample_dvs_units(np.array([128]), np.array([0]), np.array([0]), width=128, height=128, factor=4)
    with pytest.raises(ValueError, match="polarity = 2"):
        downsample_dvs_units(np.array([1]), np.array([0]), np.array([2]), width=128, height=128, factor=4)


@pytest.mark.parametrize(
    "times, units, match",
    [
        ([0.1, -0.2], [0, 1], "sample s1: negative time -0.2"),
        ([0.1, 0.3, 0.2], [0, 1, 1], r"sample s1: times not sorted \(event 2 at 0.2 comes after 0.3\)"),
        ([0.1, np.nan], [0, 1], "sample s1: non-finite time"),
        ([0.1, 0.2], [0, 9], r"sample s1: unit id 9 out of range \[0, 9\)"),
        ([0.1, 0.2], [0, -1], "sample s1: unit id -1 out of range"),
    ],
)
def test_bad_events_name_the_file_and_sample(times: list[float], units: list[int], match: str) -> None:
    all_times = np.array([0.0] + times)
    all_units = np.array([0] + units)
    with pytest.raises(ValueError, match=f"myfile.h5: {match}"):
        bin_events(
            all_times, all_units, np.array([0, 1, len(all_times)]), num_units=9, T=10, dt_ms=1.0,
            source="myfile.h5", sample_name=lambda i: f"s{i}",
        )


def test_a_new_sample_may_start_earlier_and_bad_arguments() -> None:
    frames = bin_events(np.array([0.5, 0.1]), np.array([0, 0]), np.array([0, 1, 2]), num_units=1, T=1000, dt_ms=1.0)
    assert frames.dense(0)[500, 0] == 1 and frames.dense(1)[100, 0] == 1
    with pytest.raises(ValueError, match="dt_ms"):
        bin_events(np.zeros(1), np.zeros(1, dtype=int), np.array([0, 1]), num_units=1, T=1, dt_ms=0.0)
    with pytest.raises(ValueError, match="T must"):
        bin_events(np.zeros(1), np.zeros(1, dtype=int), np.array([0, 1]), num_units=1, T=0, dt_ms=1.0)
    with pytest.raises(ValueError, match="offsets"):
        bin_events(np.zeros(2), np.zeros(2, dtype=int), np.array([0, 1]), num_units=1, T=1, dt_ms=1.0)
    with pytest.raises(ValueError, match="time_unit"):
        bin_events(np.zeros(1), np.zeros(1, dtype=int), np.array([0, 1]), num_units=1, T=1, dt_ms=1.0, time_unit="min")
    with pytest.raises(ValueError, match="non-integral unit"):
        bin_events(np.zeros(1), np.array([0.5]), np.array([0, 1]), num_units=1, T=1, dt_ms=1.0)


def test_chunked_binning_equals_one_pass_and_names_the_right_sample() -> None:
    rng = np.random.default_rng(5)
    samples = _random_samples(rng, 9, 11, 200_000)
    t_us, units, offsets = _concat(samples)
    kwargs = {"num_units": 11, "T": 15, "dt_ms": 10.0, "time_unit": "us"}
    one = bin_events(t_us, units, offsets, **kwargs)
    chunked = bin_events_chunked(t_us, units, offsets, chunk_events=500, **kwargs)
    assert len(chunked) == 9
    for i in range(9):
        assert torch.equal(one.dense(i), chunked.dense(i))
    units = units.copy()
    units[offsets[7] + 1] = 11  # sample 7 lies in a later chunk
    with pytest.raises(ValueError, match=r"f.h5: sample #7: unit id 11 out of range"):
        bin_events_chunked(t_us, units, offsets, chunk_events=500, source="f.h5", sample_name=lambda i: f"#{i}", **kwargs)
