#!/usr/bin/env python
"""The README's results section, generated from the committed multi-seed aggregates.

Every folder ``results/<name>/`` holding an ``aggregate.json`` (``train.py <config> --seeds ...``) gives one row:
task (data set), config and the overrides of its command, model, coding (FS / FR trained, or the method),
seeds, the headline test accuracy as mean ± sd and 95 % t interval, ``acc_fs_spike``, the silent share,
N_s, td50, the median time per seed and the command that reproduces it (the aggregate's own argv, without
``--runs_root``). Rows are sorted by task, then by accuracy (highest first).

Headline accuracy per method (fixed rules, not chosen on test data): ``surrogate`` ``acc_fs`` (the paper's FS
rule) for FS-trained configs, ``acc_fr`` for FR-trained ones, ``acc`` for the non-spiking baselines; ``exact_time``
``acc_fs``; ``stdp`` and ``spikeprop`` ``test_acc``; ``conversion`` the SNN with max-activation balancing at its
longest window.

    .venv/bin/python scripts/results_table.py                 # print the section
    .venv/bin/python scripts/results_table.py --write README.md   # replace it between the markers
    .venv/bin/python scripts/results_table.py --check README.md   # exit 1 if the README's copy is stale

The README holds the section between ``<!-- results:begin -->`` and ``<!-- results:end -->``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
CODING = {"first_time": "FS", "firing_rate": "FR", "logits_nll": "none (logits)"}


def _config(path: Path) -> dict[str, Any]:
    try:
        return yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _task(cfg: dict[str, Any], argv: list[str] | None = None) -> str:
    """The data set named anywhere in the config (``data.name``, ``<method>.data.name``, ``<method>.dataset``);
    for a data set with versions (``data.options`` ``variant`` / ``num_classes``, as the config file sets them or
    the command's ``--data.options`` replaces them) the version too, e.g. ``spoken_digits (full, 20 classes)``."""
    if isinstance(cfg.get("data"), dict) and cfg["data"].get("name"):
        options = cfg["data"].get("options") if isinstance(cfg["data"].get("options"), dict) else {}
        argv = argv or []
        for i, arg in enumerate(argv[:-1]):
            if arg == "--data.options":
                try:
                    value = yaml.safe_load(argv[i + 1])
                except yaml.YAMLError:
                    value = None
                options = value if isinstance(value, dict) else options
        version = [str(options["variant"])] if options.get("variant") else []
        version += [f"{options['num_classes']} classes"] if options.get("num_classes") else []
        return str(cfg["data"]["name"]) + (f" ({', '.join(version)})" if version else "")
    for value in cfg.values():
        if isinstance(value, dict):
            if value.get("dataset"):
                return str(value["dataset"])
            if isinstance(value.get("data"), dict) and value["data"].get("name"):
                return str(value["data"]["name"])
    return "?"


def _model(cfg: dict[str, Any], method: str) -> str:
    model = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    if method != "surrogate" or not model:
        return method
    name = str(model.get("name", "?"))
    if name in ("logreg", "mlp", "gru"):
        return f"{name} (non-spiking)"
    neuron = model.get("neuron_type", "culif")
    sizes = model.get("hidden_sizes")
    return f"{name} {neuron}" + (f" {'-'.join(str(s) for s in sizes)}" if sizes else "")


def _drop_options(args: list[str], single: tuple[str, ...], multi: tuple[str, ...] = ()) -> list[str]:
    """``args`` without the options of ``single`` (each with one value) and of ``multi`` (with every value up to
    the next ``--`` option)."""
    out: list[str] = []
    skip_one = skip_values = False
    for arg in args:
        if skip_values and not arg.startswith("--"):
            continue
        skip_values = False
        if skip_one:
            skip_one = False
            continue
        if arg in single:
            skip_one = True
        elif arg in multi:
            skip_values = True
        else:
            out.append(arg)
    return out


def _overrides(argv: list[str]) -> list[str]:
    """The argv after the config, without ``--seeds ...``, ``--jobs``, ``--threads`` and ``--runs_root``."""
    return _drop_options(argv[2:], ("--jobs", "--threads", "--runs_root"), ("--seeds",))


def _command(argv: list[str]) -> str:
    """The multi-seed command, as run from the repository root (``--runs_root`` dropped)."""
    return ".venv/bin/python " + " ".join(_drop_options(argv, ("--runs_root",)))


def _stat(stats: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = stats.get(key)
    return value if isinstance(value, dict) and value.get("mean") is not None else None


def _headline(method: str, stats: dict[str, Any], coding: str) -> tuple[str, dict[str, Any] | None]:
    if coding == "FR" and _stat(stats, "acc_fr"):
        return "acc_fr", stats["acc_fr"]
    if method in ("surrogate", "exact_time"):
        if _stat(stats, "acc_fs"):
            return "acc_fs", stats["acc_fs"]
        return "acc", _stat(stats, "acc")
    if method in ("stdp", "spikeprop"):
        return "test_acc", _stat(stats, "test_acc")
    if method == "conversion":
        keys = [k for k in stats if k.startswith("snn_test_acc.max.")]
        if keys:
            key = max(keys, key=lambda k: int(k.rsplit(".", 1)[1]))
            return key, _stat(stats, key)
    return "-", None


def _scaled(s: dict[str, Any] | None, scale: float) -> dict[str, Any] | None:
    if s is None or scale == 1.0:
        return s
    return {**s, "mean": s["mean"] * scale, "sd": None if s.get("sd") is None else s["sd"] * scale,
            "ci95": None if not s.get("ci95") else [v * scale for v in s["ci95"]]}


def _pm(s: dict[str, Any] | None, digits: int = 2) -> str:
    if s is None:
        return "-"
    if s.get("sd") is None:
        return f"{s['mean']:.{digits}f} (n = 1)"
    return f"{s['mean']:.{digits}f} ± {s['sd']:.{digits}f}"


def _ci(s: dict[str, Any] | None) -> str:
    if s is None or not s.get("ci95"):
        return "-"
    lo, hi = s["ci95"]
    return f"[{lo:.2f}, {hi:.2f}]"


def rows(results: Path, root: Path = ROOT) -> list[dict[str, str]]:
    """One row per ``results/<name>/aggregate.json`` (complete or not: the status is shown)."""
    out: list[tuple[tuple[str, float, str], dict[str, str]]] = []  # (sort key, row)
    for agg_path in sorted(results.glob("*/aggregate.json")):
        agg = json.loads(agg_path.read_text())
        env_path = agg_path.parent / "environment.json"
        env = json.loads(env_path.read_text()) if env_path.is_file() else {}
        argv = list(env.get("argv") or ["train.py", str(agg.get("config"))])
        method = str(agg.get("method", "?"))
        cfg = _config(root / str(agg.get("config")))
        stats = agg.get("stats") or {}
        coding = CODING.get(str((cfg.get("loss") or {}).get("mode", "first_time")), "?") if method == "surrogate" \
            else method
        key, head = _headline(method, stats, coding)
        if method in ("stdp", "spikeprop", "conversion"):  # these methods report fractions
            head = _scaled(head, 100.0)
        times = [r["elapsed_s"] for r in (agg.get("runs") or {}).values() if isinstance(r.get("elapsed_s"), (int, float))]
        td = _stat(stats, "td50_ms")
        overrides = " ".join(_overrides(argv))
        task = _task(cfg, argv)
        order = (task, -head["mean"] if head else float("inf"), agg_path.parent.name)
        out.append((order, {
            "name": agg_path.parent.name,
            "task": task,
            "config": f"`{Path(str(agg.get('config'))).stem}`" + (f" `{overrides}`" if overrides else "")
            + (f" (see `results/{agg_path.parent.name}/README.md`)" if (agg_path.parent / "README.md").is_file() else ""),
            "model": _model(cfg, method),
            "coding": coding,
            "n": str(len(agg.get("finished_seeds") or [])) + ("" if agg.get("status") == "complete" else " (incomplete)"),
            "metric": key,
            "acc": _pm(head),
            "ci": _ci(head),
            "acc_fs_spike": _pm(_stat(stats, "acc_fs_spike")),
            "acc_fr": _pm(_stat(stats, "acc_fr")),
            "silent": _pm(_scaled(_stat(stats, "silent_fraction"), 100.0), 1),
            "n_s": _pm(_stat(stats, "n_s")),
            "td50": f"{_pm(td, 0)} ms" if td else (f"{_pm(_stat(stats, 'td50'), 1)} steps" if _stat(stats, "td50") else "-"),
            "time": f"{statistics.median(times):.0f} s" if times else "-",
            "command": f"`{_command(argv)}`",
        }))
    return [row for _, row in sorted(out, key=lambda item: item[0])]


def section(results: Path, root: Path = ROOT) -> str:
    """The markdown section (without the markers)."""
    lines = [
        "Generated by `.venv/bin/python scripts/results_table.py --write README.md` from the aggregates committed",
        "under `results/` (one row per folder; do not edit by hand: `tests/test_results_table.py` checks that this",
        "copy is current). Accuracy: the test accuracy in % of each seed's checkpoint (`best.pt` chosen on validation,",
        "or the last epoch where the command says `--protocol paper` or the method has no validation), mean ± sd over",
        "the seeds and the 95 % t interval. `metric` names which accuracy: the paper's FS rule `acc_fs` for FS-trained",
        "and `acc_fr` for FR-trained surrogate runs, `acc` for non-spiking baselines, `test_acc` for STDP / SpikeProp,",
        "the SNN at its longest window with max-activation balancing for conversion (STDP, SpikeProp and conversion",
        "report fractions, shown here in %). A folder with a README.md (e.g. a measurement patch not visible in the",
        "command) is named in its row. Silent: test samples with no output spike. Time: median wall-clock seconds per",
        "seed (train and test) on the machine in each folder's `environment.json` (shared, so an upper bound).",
        "",
        "| task | config and overrides | model | trained | seeds | metric | accuracy % | 95 % interval | acc_fs_spike % |"
        " acc_fr % | silent % | N_s | td50 | time / seed | command |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows(results, root):
        lines.append(" | ".join(["", r["task"], r["config"], r["model"], r["coding"], r["n"], r["metric"], r["acc"],
                                 r["ci"], r["acc_fs_spike"], r["acc_fr"], r["silent"], r["n_s"], r["td50"], r["time"],
                                 r["command"], ""]).strip())
    return "\n".join(lines) + "\n"


def replace_section(text: str, body: str) -> str:
    """``text`` with the part between the markers replaced by ``body``; a clear error without the markers."""
    if text.count(BEGIN) != 1 or text.count(END) != 1 or text.index(BEGIN) > text.index(END):
        raise ValueError(f"the file must hold one {BEGIN} followed by one {END}")
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{BEGIN}\n{body}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--results", type=Path, default=ROOT / "results", help="folder of aggregates (default results/)")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--write", type=Path, help="replace the section between the markers of this file")
    group.add_argument("--check", type=Path, help="exit 1 if this file's section differs from the generated one")
    args = p.parse_args(argv)
    body = section(args.results)
    target = args.write or args.check
    if target is None:
        print(body, end="")
        return 0
    try:
        text = target.read_text()
        new = replace_section(text, body)
    except (OSError, ValueError) as exc:
        print(f"results_table.py: error: {target}: {exc}", file=sys.stderr)
        return 2
    if args.check:
        if new != text:
            print(f"results_table.py: {target}'s results section is stale: run scripts/results_table.py --write {target}",
                  file=sys.stderr)
            return 1
        return 0
    target.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
