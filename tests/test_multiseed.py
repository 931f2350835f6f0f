"""Multi-seed experiments (issue #16 part 2): ``train.py <config> --seeds ...`` and its aggregate directory.

The statistics are checked against numpy / scipy computed here, independently of ``sjframe.methods.multiseed``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from sjframe.methods import aggregate, multiseed
from tests.support.entry_points import load_entry_point

ROOT = Path(__file__).resolve().parents[1]
CHEAP = ["--train.epochs", "2", "--train.max_batches", "2", "--model.hidden_sizes", "16", "--train.progress", "false",
         "--eval.plots", "false"]


_load = load_entry_point


@pytest.mark.parametrize("values", [[95.2], [95.2, 96.6], [95.2, 95.8, 96.6, 94.1, 97.0]])
def test_summarize_matches_scipy(values):
    got = aggregate.summarize(values)
    n = len(values)
    assert got["n"] == n and got["mean"] == pytest.approx(np.mean(values))
    if n == 1:
        assert got["sd"] is None and got["ci95"] is None and got["half_width"] is None
        return
    lo, hi = stats.t.interval(0.95, n - 1, loc=np.mean(values), scale=stats.sem(values))
    assert got["sd"] == pytest.approx(np.std(values, ddof=1))
    assert got["ci95"] == pytest.approx([lo, hi])
    assert got["t"] == pytest.approx({2: 12.7062047, 5: 2.7764451}[n])


def test_summarize_empty_and_scalars_of_a_report():
    assert aggregate.summarize([])["mean"] is None
    report = {"event": "test", "checkpoint": "best.pt", "metrics": {
        "acc_fs": 95.0, "n_samples": 1000, "td50": None, "curve_fs": [1.0, 2.0], "ok": True, "bad": float("nan"),
        "n_s_per_layer": {"hidden1": 3.5, "output": 0.25}, "confusion": [[1, 0], [0, 1]]}}
    assert aggregate.collect_scalars(report) == {"acc_fs": 95.0, "n_samples": 1000.0, "n_s_per_layer.hidden1": 3.5,
                                                 "n_s_per_layer.output": 0.25}
    assert aggregate.collect_scalars({"method": "stdp", "test_acc": 0.8, "rule": "x"}) == {"test_acc": 0.8}


def _aggregate_dir(stdout: str) -> Path:
    lines = [line for line in stdout.splitlines() if line.startswith("aggregate_dir: ")]
    assert lines, stdout
    return Path(lines[-1].removeprefix("aggregate_dir: "))


@pytest.mark.slow
def test_three_seeds_of_the_default_config(tmp_path, capsys):
    runs = tmp_path / "runs"
    status = _load("train").main(["configs/default.yaml", "--seeds", "0", "1", "2", *CHEAP,
                                  "--runs_root", str(runs)])
    out = capsys.readouterr()
    assert status == 0, out.err
    agg_dir = _aggregate_dir(out.out)
    assert agg_dir.parent == runs and agg_dir.name.startswith("default-seeds-")
    for s in (0, 1, 2):
        assert f"seed {s}: started" in out.out and f"seed {s}: done in" in out.out
    agg = json.loads((agg_dir / "aggregate.json").read_text())
    assert agg["status"] == "complete" and agg["finished_seeds"] == [0, 1, 2] and agg["failed"] is None

    # the per-seed reports, read here: every numeric scalar is aggregated, statistics recomputed with numpy / scipy
    reports = []
    for s in (0, 1, 2):
        run = Path(agg["runs"][str(s)]["run_dir"])
        assert (agg_dir / f"seed-{s}").resolve() == run.resolve()
        found = [p for p in (run / "reports").glob("test-best-*.json") if "confusion" not in p.name]
        assert len(found) == 1, found
        reports.append(json.loads(found[0].read_text())["metrics"])
        assert f"seed: {s}" in (run / "config.yaml").read_text()
    scalars = [k for k, v in reports[0].items() if isinstance(v, (int, float)) and not isinstance(v, bool)]
    assert {"acc_fs", "acc_fr", "n_s"} <= set(scalars) <= set(agg["stats"])
    for key in scalars:
        x = np.array([r[key] for r in reports], dtype=float)
        st = agg["stats"][key]
        assert [agg["per_seed"][key][str(s)] for s in (0, 1, 2)] == pytest.approx(list(x))
        assert st["n"] == 3 and st["mean"] == pytest.approx(x.mean())
        assert st["sd"] == pytest.approx(x.std(ddof=1), abs=1e-12)
        half = stats.t.ppf(0.975, 2) * x.std(ddof=1) / math.sqrt(3)
        assert st["ci95"] == pytest.approx([x.mean() - half, x.mean() + half], abs=1e-12)
    assert not any(k.startswith("curve_") for k in agg["stats"])

    md = (agg_dir / "aggregate.md").read_text()
    assert "mean ± sd [95 % CI]" in md and "complete" in md
    assert (agg_dir / "aggregate.png").stat().st_size > 0
    commands = (agg_dir / "commands.txt").read_text().splitlines()
    assert sum("train.py configs/default.yaml" in c and c.rstrip().endswith(f"--seed {s}") for c in commands
               for s in (0, 1, 2)) == 3
    assert sum("test.py" in c and not c.startswith("#") for c in commands) == 3
    env = json.loads((agg_dir / "environment.json").read_text())
    assert {"cpu_model", "cores", "cpu_capability", "torch", "numpy", "python", "git_commit", "date"} <= set(env)

    # test.py <aggregate dir> prints the table
    assert _load("test").main([str(agg_dir)]) == 0
    printed = capsys.readouterr().out
    assert "mean ± sd [95 % CI]" in printed and "acc_fs" in printed and str(agg_dir / "aggregate.json") in printed


@pytest.mark.slow
def test_jobs_run_seeds_at_once_with_the_threads_divided(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(multiseed.os, "cpu_count", lambda: 2)
    status = _load("train").main(["configs/default.yaml", "--seeds", "7", "8", "--jobs", "2", *CHEAP,
                                  "--train.epochs", "1", "--runs_root", str(tmp_path / "runs")])
    out = capsys.readouterr()
    assert status == 0, out.err
    assert "2 at a time, --threads 1 each" in out.out
    agg_dir = _aggregate_dir(out.out)
    agg = json.loads((agg_dir / "aggregate.json").read_text())
    assert agg["status"] == "complete" and agg["stats"]["acc_fs"]["n"] == 2
    commands = (agg_dir / "commands.txt").read_text()
    assert commands.count("OMP_NUM_THREADS=1 ") == 5 and commands.count("--threads") == 0  # the file's threads: 1
    assert json.loads((agg_dir / "environment.json").read_text())["jobs"] == 2


def test_a_failed_seed_stops_and_names_its_log(tmp_path, capsys):
    runs = tmp_path / "runs"
    status = _load("train").main(["configs/default.yaml", "--seeds", "3", "4", *CHEAP, "--runs_root", str(runs),
                                  "--train.init_checkpoint", str(tmp_path / "missing.pt")])
    err = capsys.readouterr().err
    assert status == 1
    line = [e for e in err.splitlines() if e.startswith("train.py: error:")]
    assert len(line) == 1 and "seed 3 failed" in line[0] and "seed-3.log" in line[0] and "incomplete" in line[0]
    agg_dir = next(runs.glob("default-seeds-*"))
    agg = json.loads((agg_dir / "aggregate.json").read_text())
    assert agg["status"] == "incomplete" and agg["failed"]["seed"] == 3 and agg["finished_seeds"] == []
    assert "missing.pt" in (agg_dir / "logs" / "seed-3.log").read_text()
    assert not (agg_dir / "logs" / "seed-4.log").exists()  # stopped: seed 4 never started


def test_jobs_keep_the_config_files_threads(tmp_path, capsys, monkeypatch):
    """configs/default.yaml says ``threads: 1``: ``--jobs 1`` on 4 cores keeps 1 thread, not cores // jobs."""
    monkeypatch.setattr(multiseed.os, "cpu_count", lambda: 4)
    status = _load("train").main(["configs/default.yaml", "--seeds", "0", "1", "--jobs", "1", *CHEAP,
                                  "--runs_root", str(tmp_path / "runs"),
                                  "--train.init_checkpoint", str(tmp_path / "missing.pt")])
    out = capsys.readouterr().out
    assert status == 1  # the seed fails at once (missing checkpoint): only the plan is checked here
    assert "1 at a time, --threads 1 each" in out, out


def test_incomplete_and_single_seed_aggregate_is_reported(tmp_path, capsys):
    out = tmp_path / "agg"
    (out / "logs").mkdir(parents=True)
    state = {"dir": out, "plan": {"name": "x", "method": "surrogate", "config": "c.yaml"}, "seeds": [0, 1],
             "argv": ["c.yaml", "--seeds", "0", "1"], "cmd": {0: ["c.yaml", "--seed", "0"], 1: ["c.yaml", "--seed", "1"]},
             "threads": None, "status": "incomplete",
             "failed": {"seed": 1, "status": 1, "log": str(out / "logs" / "seed-1.log"), "run_dir": None},
             "runs": {0: {"run_dir": "runs/x-0", "report": "r.json", "log": "l", "elapsed_s": 1.0,
                          "metrics": {"acc_fs": 90.0, "acc_fr": 80.0, "n_s": 3.0}}}}
    aggregate.write_aggregate(state)
    agg = json.loads((out / "aggregate.json").read_text())
    assert agg["stats"]["acc_fs"] == {"n": 1, "mean": 90.0, "sd": None, "t": None, "half_width": None, "ci95": None}
    assert _load("test").main([str(out)]) == 0
    printed = capsys.readouterr().out
    assert "**Incomplete**" in printed and "n = 1: no sd or interval" in printed and "| 0 | 90 | 80 | 3 |" in printed


@pytest.mark.parametrize(("args", "message"), [
    (["--jobs", "2"], "give --seeds"),
    (["--seeds", "0", "0"], "lists a seed twice"),
    (["--seeds", "a"], "integer seeds"),
    (["--seeds", "0", "1", "--seed", "3"], "drop --seed"),
    (["--seeds", "0", "1", "--jobs", "3"], "this machine has 2 cores"),
    (["--seeds", "0", "1", "--jobs", "2", "--threads", "2"], "2 x 2 threads = 4 > 2 cores"),
    (["--seeds", "0", "--resume", "runs/x"], "cannot be combined with --resume"),
])
def test_usage_errors_leave_nothing_behind(tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.setattr(multiseed.os, "cpu_count", lambda: 2)
    status = _load("train").main(["configs/default.yaml", *args, "--runs_root", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert status == 2 and message in err and err.startswith("train.py: error:"), err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())
