"""Aggregates of multi-seed experiments (``train.py <config> --seeds ...``, :mod:`sjframe.methods.multiseed`).

:func:`summarize`: n, mean, sample sd and the 95 % t interval of one metric; :func:`collect_scalars`: the
numeric scalars of a test report; :func:`write_aggregate`: ``aggregate.json`` / ``.md`` / ``.png`` and
``commands.txt`` of an aggregate directory; :func:`is_aggregate_dir` / :func:`print_aggregate`: what
``test.py <aggregate dir>`` uses. Every file is written atomically (:func:`sjframe.core.rundir.atomic_write_bytes`).
"""

from __future__ import annotations

import json
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from sjframe.core.rundir import atomic_write_bytes

__all__ = ["HEADLINE", "collect_scalars", "is_aggregate_dir", "print_aggregate", "summarize", "write_aggregate"]

ROOT = Path(__file__).resolve().parents[2]
#: the metrics plotted (one column each) when the reports have them
HEADLINE = ("acc_fs", "acc_fs_spike", "acc_fr", "n_s")


def summarize(values: list[float]) -> dict[str, Any]:
    """n, mean, sample sd (ddof 1) and the 95 % interval mean ± t_{0.975, n-1} sd / sqrt(n); sd / interval None for n < 2."""
    import numpy as np
    from scipy import stats

    n = len(values)
    out: dict[str, Any] = {"n": n, "mean": None, "sd": None, "t": None, "half_width": None, "ci95": None}
    if n == 0:
        return out
    out["mean"] = float(np.mean(values))
    if n >= 2:
        sd = float(np.std(values, ddof=1))
        t = float(stats.t.ppf(0.975, n - 1))
        half = t * sd / math.sqrt(n)
        out.update(sd=sd, t=t, half_width=half, ci95=[out["mean"] - half, out["mean"] + half])
    return out


def collect_scalars(report: dict[str, Any]) -> dict[str, float]:
    """Every finite numeric scalar of a test report (its ``metrics`` section when it has one), nested keys
    dotted (``n_s_per_layer.hidden1``); lists (curves, confusion matrices), strings and booleans skipped."""
    source = report["metrics"] if isinstance(report.get("metrics"), dict) else report
    out: dict[str, float] = {}

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            elif isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                out[f"{prefix}{key}"] = float(value)

    walk(source, "")
    return out


def is_aggregate_dir(path: str | Path) -> bool:
    """Whether ``path`` is an aggregate directory written by :func:`run_seeds`."""
    return (Path(path) / "aggregate.json").is_file() and (Path(path) / "aggregate.md").is_file()


def print_aggregate(path: str | Path) -> int:
    """``test.py <aggregate dir>``: print its ``aggregate.md``; exit status 0."""
    print((Path(path) / "aggregate.md").read_text().rstrip())
    print(f"aggregate: {Path(path) / 'aggregate.json'}")
    return 0


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def write_aggregate(state: dict[str, Any], plot: bool = True) -> None:
    """Write aggregate.json, aggregate.md, commands.txt (and aggregate.png) from ``state``."""
    out, runs, plan = state["dir"], state["runs"], state["plan"]
    done = [s for s in state["seeds"] if s in runs]
    names = list(dict.fromkeys(k for s in done for k in runs[s]["metrics"]))
    per_seed = {m: {str(s): runs[s]["metrics"].get(m) for s in done} for m in names}
    stats = {m: summarize([v for v in per_seed[m].values() if v is not None]) for m in names}
    agg = {"kind": "sjframe multi-seed aggregate", "status": state["status"], "config": plan["config"],
           "method": plan["method"], "seeds": state["seeds"], "finished_seeds": done, "failed": state["failed"],
           "interval": "95 % t interval: mean ± t.ppf(0.975, n-1) * sd / sqrt(n), sd with ddof=1; n = 1: no sd",
           "runs": {str(s): {k: v for k, v in runs[s].items() if k != "metrics"} for s in done},
           "per_seed": per_seed, "stats": stats}
    atomic_write_bytes(out / "aggregate.json", json.dumps(agg, indent=2).encode())
    by_acc = sorted(names, key=lambda m: "acc" not in m)  # other methods: their accuracies first
    head = [m for m in (*HEADLINE[:3], "silent_fraction", "n_s", "td50") if m in stats]
    if "acc_logits" in stats:  # a logits readout (a non-spiking baseline, S3GD): its accuracy is acc, then loss
        head = ["acc", *head] if head else ["acc", "loss"]
    head = head or by_acc[:6]
    cell = lambda st: (_fmt(st["mean"]) + ("" if st["sd"] is None else  # noqa: E731
                                           f" ± {_fmt(st['sd'])} [{_fmt(st['ci95'][0])}, {_fmt(st['ci95'][1])}]"))
    lines = [f"# Multi-seed aggregate: {plan['name']} ({plan['method']}), {state['status']}", "",
             f"seeds {', '.join(map(str, done))} finished of {', '.join(map(str, state['seeds']))}; each tested by "
             "`test.py <run_dir>` (its default checkpoint: best validation, or last without validation).",
             f"Command: `train.py {shlex.join(state['argv'])}` (per-seed commands: commands.txt).", ""]
    if state["failed"] is not None:
        f = state["failed"]
        why = f.get("reason") or f"seed {f['seed']} failed (exit status {f['status']}; log {f['log']})"
        lines += [f"**Incomplete**: {why}; the statistics cover the finished seeds only.", ""]
    if len(done) == 1:
        lines += ["n = 1: no sd or interval (they need two seeds or more).", ""]
    lines += ["| seed | " + " | ".join(head) + " | run |", "|---|" + "---:|" * len(head) + "---|"]
    lines += [f"| {s} | " + " | ".join(_fmt(runs[s]["metrics"].get(m)) for m in head) + f" | {runs[s]['run_dir']} |"
              for s in done]
    lines += ["| mean ± sd [95 % CI] | " + " | ".join(cell(stats[m]) for m in head) + " | |", "",
              "Every metric of the test reports:", "", "| metric | n | mean | sd | 95 % CI | per seed |",
              "|---|---:|---:|---:|---|---|"]
    for m in names:
        st, ci = stats[m], stats[m]["ci95"]
        lines.append(f"| {m} | {st['n']} | {_fmt(st['mean'])} | {_fmt(st['sd'])} | "
                     f"{'n/a' if ci is None else f'[{_fmt(ci[0])}, {_fmt(ci[1])}]'} | "
                     + ", ".join(_fmt(v) for v in per_seed[m].values()) + " |")
    atomic_write_bytes(out / "aggregate.md", ("\n".join(lines) + "\n").encode())
    prefix = f"cd {shlex.quote(os.getcwd())} && " + (f"OMP_NUM_THREADS={state['threads']} " if state["threads"] else "")
    python = shlex.quote(sys.executable)
    text = [f"# multi-seed command: {prefix}{python} {ROOT / 'train.py'} {shlex.join(state['argv'])}",
            "# per seed: train (a new run directory), then test.py on the run this aggregate used"]
    for s in state["seeds"]:
        text.append(f"{prefix}{python} {ROOT / 'train.py'} {shlex.join(state['cmd'][s])}")
        if s in runs:
            text.append(f"{prefix}{python} {ROOT / 'test.py'} {shlex.quote(runs[s]['run_dir'])}")
    atomic_write_bytes(out / "commands.txt", ("\n".join(text) + "\n").encode())
    if plot and done:
        plotted = [m for m in HEADLINE if m in stats]
        plotted = (["acc", *plotted] if "acc_logits" in stats else plotted) or by_acc[:4]
        _plot(out / "aggregate.png", plotted, per_seed, stats)


def _plot(path: Path, metrics: list[str], per_seed: dict[str, dict[str, float | None]],
          stats: dict[str, dict[str, Any]]) -> None:
    """Per-seed points with the mean and the 95 % interval, one column per metric, written atomically."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(metrics), figsize=(2.6 * len(metrics), 3.2), squeeze=False)
    for ax, m in zip(axes[0], metrics):
        values = [v for v in per_seed[m].values() if v is not None]
        ax.plot([0.0] * len(values), values, "o", alpha=0.6, label="seeds")
        st = stats[m]
        ax.errorbar([0.25], [st["mean"]], yerr=None if st["half_width"] is None else [[st["half_width"]]],
                    fmt="s", color="black", capsize=6, label="mean, 95 % CI")
        ax.set_xlim(-0.5, 0.75)
        ax.set_xticks([])
        ax.set_title(f"{m} (n={st['n']})")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, bbox_to_anchor=(0.5, -0.08))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    atomic_write_bytes(path, buffer.getvalue())
