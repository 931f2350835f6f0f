"""Every plot writes a non-empty PNG; bad input is a clear error."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sjframe.core.rundir import RunDir
from sjframe.methods.surrogate import plots

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _is_png(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 1000 and path.read_bytes()[:8] == PNG_MAGIC


def test_training_curves_from_metrics_jsonl(tmp_path: Path) -> None:
    run = RunDir.create("plots", root=tmp_path, stamp="t")
    for epoch in range(4):
        run.log({"epoch": epoch, "train_loss": 2.0 / (epoch + 1), "val_loss": 2.2 / (epoch + 1),
                 "val_acc_fs": 50.0 + 10 * epoch, "val_acc_fr": 40.0 + 9 * epoch, "lr": 1e-3})
    run.log({"test": True, "acc_fs": 90.0})  # a report line without an epoch is skipped
    out = plots.plot_training_curves(run.read_log(), run.plots / "curves.png")
    assert _is_png(out)
    with pytest.raises(ValueError, match="no epoch record"):
        plots.plot_training_curves([{"acc_fs": 1.0}], tmp_path / "x.png")


def test_raster_and_patterns_and_histograms(tmp_path: Path) -> None:
    spikes = (torch.rand(50, 20) < 0.1).float()
    assert _is_png(plots.plot_raster(spikes, tmp_path / "raster.png", dt_ms=2.0, title="sample 0"))
    t_f = torch.randint(1, 60, (30, 4)).float()  # T_in = 50: values above are silent neurons
    labels = torch.arange(30) % 4
    assert _is_png(plots.plot_first_spike_patterns(t_f, labels, tmp_path / "patterns.png", T_in=50))
    assert _is_png(plots.plot_first_spike_histograms(t_f, labels, tmp_path / "hist.png", T_in=50, dt_ms=1.0))
    weights = {"fc1.weight": torch.randn(16, 8), "fc2.weight": torch.randn(4, 16)}
    assert _is_png(plots.plot_weight_histograms(weights, tmp_path / "weights.png"))
    curve = [0.0, 10.0, 40.0, 70.0, 85.0, 90.0]
    assert _is_png(plots.plot_accuracy_vs_time(curve, tmp_path / "sub" / "curve.png", td50=3, td90=5, dt_ms=10.0))


def test_plot_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="spikes must have 2 dimensions"):
        plots.plot_raster(torch.zeros(5, 2, 3), tmp_path / "r.png")
    with pytest.raises(ValueError, match="labels must be"):
        plots.plot_first_spike_patterns(torch.ones(4, 3), torch.zeros(3), tmp_path / "p.png")
    with pytest.raises(ValueError, match="NaN"):
        plots.plot_accuracy_vs_time([0.0, float("nan")], tmp_path / "c.png")
    with pytest.raises(ValueError, match="labels must be in"):
        plots.plot_first_spike_histograms(torch.ones(2, 3), torch.tensor([0, 5]), tmp_path / "h.png")
