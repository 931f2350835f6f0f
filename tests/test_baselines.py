"""Non-spiking baselines (issue #17 part 1): ``logreg``, ``mlp``, ``gru`` as registered models.

Shapes and pooling, parameter counts against the SNN of the spoken-digit configs, small trainings that
learn (and, with the information pooled away, fail to learn) a toy problem, ``train.py`` / ``test.py`` and
``train.py --seeds`` end to end on the tiny SHD-format file, and bad settings rejected with clear errors.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from sjframe.core.config import ConfigError, load_yaml
from sjframe.methods.surrogate.config import resolve_config
from sjframe.methods.surrogate.evaluation import OneFrame, as_frames, format_report
from sjframe.models import MODELS, build_model, is_non_spiking
from sjframe.models.baselines import bin_matrix, parameter_count, pool_counts
from tests.support.entry_points import load_entry_point, write_tiny_shd_config

ROOT = Path(__file__).resolve().parents[1]
BASELINE_CONFIGS = sorted((ROOT / "configs").glob("baseline_*.yaml"))


# ------------------------------------------------------------------------------------------ shapes, pooling
def test_registered_and_flagged_non_spiking():
    assert {"logreg", "mlp", "gru"} <= set(MODELS)
    assert all(is_non_spiking(n) for n in ("logreg", "mlp", "gru"))
    assert not is_non_spiking("fcnet") and not is_non_spiking("s3gd_net")


@pytest.mark.parametrize("name, options", [
    ("logreg", {"time_bins": 4, "channel_bins": 3}),
    ("mlp", {"time_bins": 5, "hidden_sizes": [7, 5], "dropout": 0.1}),
    ("gru", {"hidden_size": 6}),
    ("gru", {"time_bins": 3, "channel_bins": 2, "readout": "mean", "num_layers": 2}),
    ("gru", {"readout": "max", "input_norm": "none", "log_counts": True}),
])
def test_shapes_logits_only(name, options):
    model = build_model(name, options, (2, 3), 4)  # channels flattened: 6
    out = model(torch.poisson(torch.ones(9, 5, 2, 3)))
    assert out.logits.shape == (5, 4) and out.logits.dtype == torch.float32
    assert out.spikes is None and out.h is None and out.layer_spikes == {}
    out.logits.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_pool_counts_sums_uneven_bins_exactly():
    x = torch.arange(7 * 2 * 5, dtype=torch.float32).reshape(7, 2, 5)
    g = pool_counts(x, 3, 2)  # time edges floor(k 7 / 3) = 0, 2, 4, 7; channel edges 0, 2, 5
    assert g.shape == (3, 2, 2)
    for k, (a, b) in enumerate([(0, 2), (2, 4), (4, 7)]):
        for j, (c, d) in enumerate([(0, 2), (2, 5)]):
            assert torch.equal(g[k, :, j], x[a:b, :, c:d].sum(dim=(0, 2)))
    assert torch.equal(pool_counts(x, None, None), x)
    assert torch.equal(bin_matrix(4, None), torch.eye(4))
    assert bin_matrix(10, 3).sum(0).tolist() == [3.0, 3.0, 4.0]  # edges floor(k 10 / 3) = 0, 3, 6, 10
    assert torch.equal(bin_matrix(6, 3).argmax(1), torch.tensor([0, 0, 1, 1, 2, 2]))
    assert torch.equal(pool_counts(x, 1, None)[0], x.sum(0))


def test_logreg_features_are_log_counts_then_linear():
    model = build_model("logreg", {"time_bins": 2, "channel_bins": None, "input_norm": "none"}, (3,), 2)
    x = torch.poisson(2 * torch.ones(4, 5, 3))
    f = torch.log1p(torch.cat([x[:2].sum(0), x[2:].sum(0)], dim=1))  # [B, time bin major]
    linear = model.net[0]
    assert torch.allclose(model(x).logits, f @ linear.weight.T + linear.bias)


# ------------------------------------------------------------------------------------------ parameter counts
def test_parameter_counts_of_the_spoken_digit_configs_match_the_snn():
    counts = {}
    for name in ("logreg", "mlp", "gru"):
        cfg = resolve_config(load_yaml(ROOT / "configs" / f"baseline_spoken_digits_{name}.yaml"))
        counts[name] = parameter_count(build_model(cfg.model.name, cfg.model.options, (700,), 10))
    snn = resolve_config(load_yaml(ROOT / "configs" / "spoken_digits_adlif_fs.yaml"))
    fcnet = parameter_count(build_model(snn.model.name, snn.model.options, (700,), 10))
    assert counts == {"logreg": 700 * 10 + 10, "mlp": 700 * 256 + 256 + 256 * 256 + 256 + 256 * 10 + 10,
                      "gru": 3 * 254 * (70 + 254) + 6 * 254 + 254 * 10 + 10}
    assert counts == {"logreg": 7010, "mlp": 247818, "gru": 250962} and fcnet == 250368  # the README's numbers
    for name in ("mlp", "gru"):
        assert abs(counts[name] - fcnet) / fcnet < 0.015, (name, counts[name], fcnet)


def test_yinyang_configs_raw_inputs_and_4_200_3():
    for name, count in (("logreg", 4 * 3 + 3), ("mlp", 4 * 200 + 200 + 200 * 3 + 3)):
        cfg = resolve_config(load_yaml(ROOT / "configs" / f"baseline_yinyang_{name}.yaml"))
        assert cfg.data.options == {"encoding": "raw"} and cfg.loss.mode == "logits_nll"
        assert parameter_count(build_model(cfg.model.name, cfg.model.options, (4,), 3)) == count


@pytest.mark.parametrize("path", BASELINE_CONFIGS, ids=[p.stem for p in BASELINE_CONFIGS])
def test_every_baseline_config_resolves_and_comments_every_model_value(path):
    cfg = resolve_config(load_yaml(path))
    assert is_non_spiking(cfg.model.name) and cfg.loss.mode == "logits_nll"
    lines = path.read_text().splitlines()
    model = lines.index("model:")
    for line in lines[model + 2:]:  # each value under model (after name) says why
        if not line.startswith("  "):
            break
        assert "#" in line, f"{path.name}: no reason given for {line.strip()!r}"


# ------------------------------------------------------------------------------------------ learning
def _toy(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Frames ``[8, n, 2]``: class 1 fires channel 0 in the first half and channel 1 in the second, class 0 the
    reverse; the total count per channel is the same for both classes (only the time bins tell them apart)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=g)
    x = torch.zeros(8, n, 2)
    early = torch.poisson(torch.full((4, n), 2.0), generator=g)
    late = torch.poisson(torch.full((4, n), 2.0), generator=g)
    first = torch.where(y.bool(), 0, 1)
    x[:4, torch.arange(n), first] = early
    x[4:, torch.arange(n), 1 - first] = late
    return x, y


def _fit(name: str, options: dict, steps: int = 150) -> float:
    torch.manual_seed(0)
    model = build_model(name, options, (2,), 2)
    x, y = _toy(256, seed=1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-2)
    for _ in range(steps):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(x).logits, y).backward()
        opt.step()
    model.eval()
    x, y = _toy(256, seed=2)
    with torch.no_grad():
        return float((model(x).logits.argmax(1) == y).float().mean())


@pytest.mark.parametrize("name, options", [
    ("logreg", {"time_bins": 2}),
    ("mlp", {"time_bins": 2, "hidden_sizes": [16]}),
    ("gru", {"hidden_size": 8, "readout": "last"}),
])
def test_learns_the_temporal_toy_problem(name, options):
    assert _fit(name, options) > 0.95


def test_fails_when_the_time_bins_pool_the_information_away():
    # the same problem with one time bin: equal counts per channel, so no better than chance -- the check can fail
    assert _fit("logreg", {"time_bins": 1}) < 0.65
    assert _fit("mlp", {"time_bins": 1, "hidden_sizes": [16]}) < 0.65


# ------------------------------------------------------------------------------------------ entry points
def _tiny_baseline(folder: Path, model: dict) -> Path:
    path = write_tiny_shd_config(folder, plots=False)
    raw = yaml.safe_load(path.read_text())
    raw["model"] = model
    raw["loss"] = {"mode": "logits_nll"}
    raw["train"]["epochs"] = 2
    path.write_text(yaml.safe_dump(raw))
    return path


def _run_dir(stdout: str) -> Path:
    return Path([ln for ln in stdout.splitlines() if ln.startswith("run_dir: ")][-1].removeprefix("run_dir: "))


@pytest.mark.parametrize("model", [
    {"name": "logreg", "time_bins": 3, "channel_bins": 10},
    {"name": "gru", "hidden_size": 8, "channel_bins": 20},
], ids=["logreg", "gru"])
def test_train_and_test_end_to_end_on_the_tiny_shd_file(tmp_path, capsys, model):
    cfg = _tiny_baseline(tmp_path, model)
    assert load_entry_point("train").main([str(cfg), "--runs_root", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr()
    run = _run_dir(out.out)
    assert (run / "checkpoints" / "best.pt").is_file() and (run / "checkpoints" / "last.pt").is_file()
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in records if "epoch" in r and "event" not in r]
    assert len(epochs) == 2 and all(r["val_acc"] is not None and r["val_acc_fs"] is None for r in epochs)
    assert '"val_acc"' in out.err and '"val_acc_fs"' not in out.err

    assert load_entry_point("test").main([str(run)]) == 0
    printed = capsys.readouterr().out
    assert "accuracy (argmax of the logits)" in printed and "no spike metrics" in printed
    assert "FS accuracy" not in printed and "FR accuracy" not in printed
    report = json.loads(next(p for p in (run / "reports").glob("test-best-*.json")).read_text())
    m = report["metrics"]
    assert m["primary"] == "logits" and m["n_samples"] == 8 and 0.0 <= m["acc"] <= 100.0 and m["acc"] == m["acc_logits"]
    assert all(m[k] is None for k in ("acc_fs", "acc_fs_spike", "acc_fr", "silent_fraction", "n_s", "td50"))
    assert report["model"] == model["name"] and report["confusion"] == {}


@pytest.mark.slow
def test_multi_seed_aggregate_carries_the_accuracy(tmp_path, capsys):
    cfg = _tiny_baseline(tmp_path, {"name": "logreg", "time_bins": 2, "channel_bins": 10})
    status = load_entry_point("train").main([str(cfg), "--seeds", "0", "1", "--runs_root", str(tmp_path / "runs")])
    out = capsys.readouterr()
    assert status == 0, out.err
    agg_dir = Path([ln for ln in out.out.splitlines() if ln.startswith("aggregate_dir: ")][-1].split(": ", 1)[1])
    agg = json.loads((agg_dir / "aggregate.json").read_text())
    assert agg["status"] == "complete" and agg["finished_seeds"] == [0, 1]
    acc = agg["stats"]["acc"]
    assert acc["n"] == 2 and acc["mean"] is not None and acc["sd"] is not None and len(acc["ci95"]) == 2
    assert set(agg["stats"]) == {"n_samples", "dt_ms", "loss", "acc", "acc_logits"}  # no spike metric
    md = (agg_dir / "aggregate.md").read_text()
    assert "| seed | acc | loss | run |" in md and "mean ± sd [95 % CI]" in md


# ------------------------------------------------------------------------------------------ errors
@pytest.mark.parametrize("change, message", [
    ({"model": {"name": "logreg", "hidden_sizes": [5]}}, "hidden_sizes"),
    ({"model": {"name": "gru", "hidden_sise": 5}}, "hidden_sise"),
    ({"model": {"name": "mlp", "input_norm": "layernorm"}}, "input_norm"),
    ({"model": {"name": "gru", "readout": "first"}}, "readout"),
    ({"model": {"name": "logreg", "time_bins": 0}}, "time_bins"),
    ({"model": {"name": "mlp", "dropout": 1.0}}, "dropout"),
    ({"model": {"name": "logreg"}, "loss": {"mode": "first_time"}}, "loss.mode: logits_nll"),
    ({"model": {"name": "gru"}, "train": {"select_metric": "acc_fs"}}, "choose acc or loss"),
])
def test_bad_settings_are_rejected_with_the_key_named(change, message):
    raw = {"data": {"name": "yinyang", "options": {"encoding": "raw"}}, "loss": {"mode": "logits_nll"}}
    raw.update(change)
    with pytest.raises((ConfigError, ValueError), match=message):
        resolve_config(raw)


def test_shape_errors_name_the_sizes():
    with pytest.raises(ValueError, match="channel_bins = 9 exceeds the input's 4 channels"):
        build_model("logreg", {"channel_bins": 9}, (4,), 3)
    with pytest.raises(ValueError, match="time_bins must be set"):
        build_model("mlp", {"time_bins": None}, (4,), 3)
    with pytest.raises(ValueError, match="time_bins = 10 exceeds the window's T = 3"):
        build_model("logreg", {}, (4,), 3)(torch.zeros(3, 2, 4))
    with pytest.raises(ValueError, match=r"shape \[T, B, 4\]"):
        build_model("gru", {}, (4,), 3)(torch.zeros(3, 2, 5))


def test_static_inputs_are_one_frame_for_baselines_only():
    from sjframe.data import build_dataset

    raw = build_dataset("yinyang", "val", encoding="raw")
    cfg = resolve_config({"data": {"name": "yinyang", "options": {"encoding": "raw"}}, "model": {"name": "mlp"},
                          "loss": {"mode": "logits_nll"}})
    frames = as_frames(raw, cfg)
    assert isinstance(frames, OneFrame) and frames.input_shape == (4,) and frames.num_classes == 3
    x, y = frames[0]
    assert torch.equal(x, raw[0][0].unsqueeze(0)) and y == raw[0][1]
    snn = resolve_config({"data": {"name": "yinyang", "options": {"encoding": "raw"}}})
    with pytest.raises(ValueError, match="not time-major.*spiking model 'fcnet'"):
        as_frames(raw, snn)


def test_report_table_of_a_non_spiking_model_has_no_spike_rows():
    metrics = {"primary": "logits", "n_samples": 80, "acc": 85.0, "acc_logits": 85.0, "loss": 0.5, "n_s": None,
               "acc_fs": None, "acc_fr": None, "T": None}
    table = format_report({"checkpoint": "best.pt", "epoch": 3, "data": "spoken_digits", "T": 100, "T_empty": 0,
                           "dt_ms": 10.0, "model": "logreg", "metrics": metrics})
    assert "accuracy (argmax of the logits)  85.00 %" in table and "logreg (non-spiking" in table
    rows = [line.split("  ")[0] for line in table.splitlines()]
    assert rows == ["protocol", "model", "checkpoint", "data / split", "window", "accuracy (argmax of the logits)",
                    "spike metrics", "test loss"]
