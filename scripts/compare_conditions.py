#!/usr/bin/env python
"""How much each model loses from one data condition to another (e.g. clean -> noisy), from multi-seed aggregates.

Each ``--pair BASE HARD`` names two aggregate folders (``train.py <config> --seeds ...`` writes them under
``results/``) of the same model on two versions of a data set. For every pair the script takes the headline test
accuracy of each seed (the rule of ``scripts/results_table.py``: ``acc_fs`` for FS-trained SNNs, ``acc_fr`` for
FR-trained ones, ``acc`` for the non-spiking baselines) and reports

- mean ± sd of each condition (sd with ddof = 1),
- the change ``mean(HARD) - mean(BASE)`` in points with its 95 % Welch interval (Welch-Satterthwaite degrees of
  freedom; the seeds of the two conditions are independent runs) and Welch's two-sided p-value,
- the change relative to the base mean (%),
- for every pair after the first, the difference of its change from the first pair's change (a difference in
  differences: ``(hard_i - base_i) - (hard_1 - base_1)``, positive when model i falls less than model 1), with
  its 95 % interval (variance: the sum of the four ``sd^2 / n``; Welch-Satterthwaite degrees of freedom) and
  two-sided p-value.

Outputs (``--out DIR``, written atomically): ``compare.md`` (the table), ``compare.json`` (every per-seed value) and
``compare.png`` (bars with the 95 % t intervals, base beside hard for every model).

    .venv/bin/python scripts/compare_conditions.py --out results/compare_noisy_spoken_digits \\
        --pair results/spoken_digits_full_radlif_fs_aug-3seeds results/spoken_digits_noisy_radlif_fs_aug-3seeds \\
        --pair results/baseline_spoken_digits_full_gru_aug-3seeds results/baseline_spoken_digits_noisy_gru_aug-3seeds
"""

from __future__ import annotations

import argparse
import io
import json
import math
import shlex
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

import results_table  # noqa: E402

from sjframe.core.rundir import atomic_write_bytes  # noqa: E402
from sjframe.methods.aggregate import summarize  # noqa: E402


def headline_values(agg_dir: Path, root: Path = ROOT) -> tuple[str, str, list[float]]:
    """``(model label, metric, per-seed values)`` of the aggregate in ``agg_dir`` (finished seeds only)."""
    path = Path(agg_dir) / "aggregate.json"
    if not path.is_file():
        raise FileNotFoundError(f"no aggregate.json in {agg_dir} (run train.py <config> --seeds ... first)")
    agg = json.loads(path.read_text())
    method = str(agg.get("method", "?"))
    cfg = results_table._config(root / str(agg.get("config")))
    coding = results_table.CODING.get(str((cfg.get("loss") or {}).get("mode", "first_time")), "?")
    coding = coding if method == "surrogate" else method
    metric, _ = results_table._headline(method, agg.get("stats") or {}, coding)
    per_seed = (agg.get("per_seed") or {}).get(metric) or {}
    values = [float(v) for v in per_seed.values() if v is not None and math.isfinite(float(v))]
    if method in ("stdp", "spikeprop", "conversion"):  # these methods report fractions (as in results_table)
        values = [100.0 * v for v in values]
    if len(values) < 2:
        raise ValueError(f"{agg_dir}: {metric} has {len(values)} finished seed(s); a comparison needs at least 2")
    label = results_table._model(cfg, method) + (f", {coding}" if coding in ("FS", "FR") else "")
    return label, metric, values


def welch_contrast(groups: list[list[float]], signs: tuple[int, ...]) -> dict[str, float]:
    """``sum(sign * mean(group))`` over independent groups with its 95 % t interval and two-sided p-value: variance
    ``sum(sd^2 / n)`` (sd with ddof = 1), Welch-Satterthwaite degrees of freedom. Two groups with signs ``(1, -1)``
    is Welch's t-test of ``mean(a) - mean(b)``; four with ``(1, -1, -1, 1)`` a difference in differences."""
    from scipy import stats

    terms = [statistics.variance(g) / len(g) for g in groups]
    value = sum(sign * statistics.fmean(g) for sign, g in zip(signs, groups, strict=True))
    var = sum(terms)
    if var == 0:
        return {"diff": value, "low": value, "high": value, "p": 0.0 if value else 1.0, "df": float("inf")}
    df = var**2 / sum(t**2 / (len(g) - 1) for t, g in zip(terms, groups, strict=True))
    half = stats.t.ppf(0.975, df) * math.sqrt(var)
    p = 2 * stats.t.sf(abs(value) / math.sqrt(var), df)
    return {"diff": value, "low": value - half, "high": value + half, "p": float(p), "df": float(df)}


def compare(pairs: list[tuple[Path, Path]], root: Path = ROOT, labels: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per ``(base, hard)`` pair: the model (``labels[i]`` if given, e.g. to tell two data handlings of
    one model apart), both conditions' values and statistics, the change."""
    if labels is not None and len(labels) != len(pairs):
        raise ValueError(f"{len(labels)} labels for {len(pairs)} pairs")
    rows = []
    for i, (base_dir, hard_dir) in enumerate(pairs):
        label, metric, base = headline_values(base_dir, root)
        hard_label, hard_metric, hard = headline_values(hard_dir, root)
        if (label, metric) != (hard_label, hard_metric):
            raise ValueError(
                f"{base_dir} ({label}, {metric}) and {hard_dir} ({hard_label}, {hard_metric}) are not "
                "the same model and metric"
            )
        change = welch_contrast([hard, base], (1, -1))
        base_stats = summarize(base)
        rows.append({
            "model": label if labels is None else f"{label}: {labels[i]}", "metric": metric,
            "base_dir": str(base_dir), "hard_dir": str(hard_dir),
            "base": base, "hard": hard, "base_stats": base_stats, "hard_stats": summarize(hard),
            "change": change, "relative_change_pct": 100.0 * change["diff"] / base_stats["mean"],
        })  # fmt: skip
    first = rows[0]
    for row in rows[1:]:
        row["vs_first"] = welch_contrast([row["hard"], row["base"], first["hard"], first["base"]], (1, -1, -1, 1))
    return rows


def table(rows: list[dict[str, Any]], base_name: str, hard_name: str) -> str:
    """The markdown table of ``compare``'s rows."""
    lines = [
        f"| model (aggregates) | metric | {base_name} % | {hard_name} % | change, points [95 % Welch interval] | "
        f"Welch p | relative change | change minus the first row's [95 % interval], p |",
        "|---|---|---|---|---|---:|---:|---|",
    ]
    for r in rows:
        b, h, c = r["base_stats"], r["hard_stats"], r["change"]
        names = f"`{Path(r['base_dir']).name}` -> `{Path(r['hard_dir']).name}`"
        lines.append(
            f"| {r['model']} ({names}) | {r['metric']} | {b['mean']:.2f} ± {b['sd']:.2f} (n = {b['n']}) | "
            f"{h['mean']:.2f} ± {h['sd']:.2f} (n = {h['n']}) | {c['diff']:+.2f} [{c['low']:+.2f}, {c['high']:+.2f}] | "
            f"{c['p']:.2g} | {r['relative_change_pct']:+.1f} % | {_did(r.get('vs_first'))} |"
        )
    return "\n".join(lines) + "\n"


def _did(d: dict[str, float] | None) -> str:
    if d is None:
        return "(reference)"
    return f"{d['diff']:+.2f} [{d['low']:+.2f}, {d['high']:+.2f}], p = {d['p']:.2g}"


def plot(rows: list[dict[str, Any]], base_name: str, hard_name: str) -> bytes:
    """PNG: for every model, the base and hard means side by side with their 95 % t intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(6.0, 1.6 * len(rows) + 2), 4.2))
    xs = range(len(rows))
    bars = ((-0.2, "base_stats", base_name, "tab:blue"), (0.2, "hard_stats", hard_name, "tab:red"))
    for offset, key, name, colour in bars:
        means = [r[key]["mean"] for r in rows]
        errs = [r[key]["half_width"] or 0.0 for r in rows]
        ax.bar([x + offset for x in xs], means, width=0.38, yerr=errs, capsize=3, label=name, color=colour, alpha=0.8)
    for x, r in zip(xs, rows, strict=True):  # the change, above the higher interval
        top = max(r[k]["mean"] + (r[k]["half_width"] or 0.0) for k in ("base_stats", "hard_stats"))
        ax.annotate(f"{r['change']['diff']:+.1f}", (x, top + 1.5), ha="center", fontsize=8)
    ax.set_xticks(list(xs), [r["model"].replace(" (non-spiking)", "\n(non-spiking)").replace(": ", "\n") for r in rows],
                  fontsize=7)  # fmt: skip
    ax.set_ylabel("test accuracy % (mean, 95 % t interval)")
    lows = [min(r["base_stats"]["mean"], r["hard_stats"]["mean"]) for r in rows]
    ax.set_ylim(max(0.0, min(lows) - 15), 100)
    ax.set_title(f"{base_name} -> {hard_name}: change per model (points)")
    ax.legend(loc="lower right")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    plt.close(fig)
    return buf.getvalue()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pair", nargs=2, action="append", type=Path, metavar=("BASE", "HARD"), required=True,
                        help="aggregate folders of one model on the base and the hard condition (repeatable)")  # fmt: skip
    parser.add_argument("--names", nargs=2, default=("clean", "noisy"), metavar=("BASE", "HARD"),
                        help="names of the two conditions in the table (default: clean noisy)")  # fmt: skip
    parser.add_argument("--labels", nargs="+", default=None, metavar="LABEL",
                        help="one label per pair, added to the model's name (e.g. the data handling)")  # fmt: skip
    parser.add_argument("--out", type=Path, default=None, help="folder for compare.md / .json / .png (default: print only)")
    args = parser.parse_args(argv)
    try:
        rows = compare([(Path(a), Path(b)) for a, b in args.pair], labels=args.labels)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = table(rows, *args.names)
    print(text, end="")
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        command = "python scripts/compare_conditions.py " + " ".join(
            [f"--pair {a} {b}" for a, b in args.pair]
            + ([f"--labels {' '.join(shlex.quote(x) for x in args.labels)}"] if args.labels else [])
            + [f"--names {args.names[0]} {args.names[1]}", f"--out {args.out}"]
        )
        atomic_write_bytes(args.out / "compare.md", f"{text}\nCommand: `{command}`\n".encode())
        atomic_write_bytes(args.out / "compare.json", json.dumps({"command": command, "rows": rows}, indent=1).encode())
        atomic_write_bytes(args.out / "compare.png", plot(rows, *args.names))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
