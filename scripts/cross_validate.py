"""Cross-validation over the training file: rank configs by validation score, never touching the test file.

    .venv/bin/python scripts/cross_validate.py CONFIG [CONFIG ...] --folds K [--seeds 0 1] [--jobs J]
        [--threads N] [--metric auto|acc|acc_fs|acc_fs_spike|acc_fr] [--last 10] [--by speaker|random]
        [--split-seed 0] [--out DIR] [-- train.py overrides for every run ...]

For every config, seed and fold ``i = 0 .. K-1`` it runs ``train.py CONFIG --data.val_split '{folds: K, fold: i,
by: ..., seed: ...}' --seed S [overrides]``: fold ``i`` of the training file validates and the other folds train
(:func:`sjframe.data.common.fold_indices`: whole speakers per fold where the file names speakers), so every
training sample is validated once per seed. No run is tested.

A run's score is the mean of its validation metric over its last ``--last`` epochs (a plateau value, less noisy than
the best epoch on a small split); the best epoch's value is reported beside it. ``--metric auto``: the config's
coding (FS loss: ``acc_fs``; FR losses: ``acc_fr``; non-spiking logits: ``acc``). The configs share the folds (same
``--split-seed``), so they are compared fold by fold: the table gives each config's mean ± sd over its runs and,
against the top config, the mean paired difference and a paired t-test p-value.

Writes ``<out>/cv.json`` (every run: config, seed, fold, run directory, per-epoch validation values, score),
``<out>/cv.md`` (the table, printed too) and ``<out>/logs/``. Default ``--out``: ``runs/cv-<stamp>``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sjframe.core.rundir import atomic_write_bytes  # noqa: E402
from sjframe.methods.aggregate import summarize  # noqa: E402

METRICS = ("auto", "acc", "acc_fs", "acc_fs_spike", "acc_fr")


def parse_args(argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    overrides: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, overrides = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("configs", nargs="+", type=Path)
    parser.add_argument("--folds", type=int, required=True, help="number of folds K (>= 2)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0], help="training seeds (default 0)")
    parser.add_argument("--jobs", type=int, default=1, help="runs at once (default 1)")
    parser.add_argument("--threads", type=int, default=None, help="threads per run (default: cores // jobs)")
    parser.add_argument("--metric", choices=METRICS, default="auto", help="validation metric (default: the coding's)")
    parser.add_argument("--last", type=int, default=10, help="score = mean over the last N epochs (default 10)")
    parser.add_argument("--by", choices=("speaker", "random"), default=None,
                        help="fold by speaker or at random (default: speaker where the file names speakers)")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the fold assignment (default 0)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default runs/cv-<stamp>)")
    args = parser.parse_args(argv)
    if args.folds < 2:
        parser.error(f"--folds must be >= 2, got {args.folds}")
    if args.last < 1:
        parser.error(f"--last must be >= 1, got {args.last}")
    cores = os.cpu_count() or 1
    if not 1 <= args.jobs <= cores:
        parser.error(f"--jobs must be in 1..{cores} (this machine's cores), got {args.jobs}")
    for cfg in args.configs:
        if not cfg.is_file():
            parser.error(f"config {cfg} not found")
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds lists a seed twice: {args.seeds}")
    if any(a.partition("=")[0] in ("--seed", "--seeds", "--jobs", "--data.val_split") for a in overrides):
        parser.error("the overrides after -- cannot set --seed(s), --jobs or --data.val_split (this script sets them)")
    args.threads = args.threads or max(1, cores // args.jobs)
    return args, overrides


def val_split_arg(folds: int, fold: int, by: str | None, seed: int) -> str:
    """The ``--data.val_split`` value of fold ``fold`` (a YAML flow mapping)."""
    return "{" + f"folds: {folds}, fold: {fold}, seed: {seed}" + ("" if by is None else f", by: {by}") + "}"


def coding_metric(run_dir: Path) -> str:
    """The validation metric of a run's coding: its loss mode's default selection metric."""
    import yaml

    from sjframe.methods.surrogate.engine import default_select_metric

    cfg = yaml.safe_load((run_dir / "config.yaml").read_text())
    return default_select_metric(str(((cfg or {}).get("loss") or {}).get("mode", "")))


def run_score(run_dir: Path, metric: str, last: int) -> dict[str, Any]:
    """Per-epoch validation values of ``metric`` in a run's ``metrics.jsonl``, the score and the best value."""
    values: list[float] = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        if not line.strip():
            continue
        record = json.loads(line)
        if "event" in record or not isinstance(record.get("epoch"), int):
            continue
        value = record.get(f"val_{metric}")
        if isinstance(value, (int, float)) and math.isfinite(value):
            values.append(float(value))
    if not values:
        raise ValueError(f"{run_dir}: no validation values of {metric!r} in metrics.jsonl (is there a validation "
                         "split, and does the model give this metric?)")
    tail = values[-last:]
    return {"metric": metric, "val": values, "score": sum(tail) / len(tail), "best": max(values),
            "epochs": len(values)}


def paired_p(diffs: list[float]) -> float | None:
    """Two-sided paired t-test p-value of the differences (None for fewer than 2 or all equal)."""
    from scipy import stats

    st = summarize(diffs)
    if st["sd"] is None or st["sd"] == 0.0:
        return None
    return float(stats.ttest_1samp(diffs, 0.0).pvalue)


def table(runs: list[dict[str, Any]], configs: list[str], folds: int, seeds: list[int]) -> list[str]:
    scores = {c: {(r["seed"], r["fold"]): r["score"] for r in runs if r["config"] == c} for c in configs}
    stats = {c: summarize(list(scores[c].values())) for c in configs}
    ranked = sorted(configs, key=lambda c: -stats[c]["mean"])
    top = ranked[0]
    metric = {c: next(r["metric"] for r in runs if r["config"] == c) for c in configs}
    head = " | ".join(f"s{s} f{f}" for s in seeds for f in range(folds))
    lines = [f"| config | metric | {head} | mean ± sd | best epoch, mean | vs top: mean diff | paired p |",
             "|---|---|" + "---:|" * (len(seeds) * folds) + "---:|---:|---:|---:|"]
    for c in ranked:
        st = stats[c]
        spread = "" if st["sd"] is None else f" ± {st['sd']:.2f}"
        best = summarize([r["best"] for r in runs if r["config"] == c])["mean"]
        cells = " | ".join(f"{scores[c][(s, f)]:.2f}" for s in seeds for f in range(folds))
        if c == top:
            diff, p = "-", "-"
        else:
            d = [scores[c][k] - scores[top][k] for k in scores[c]]
            diff, pv = f"{summarize(d)['mean']:+.2f}", paired_p(d)
            p = "n/a" if pv is None else f"{pv:.3f}"
        lines.append(f"| `{c}` | {metric[c]} | {cells} | {st['mean']:.2f}{spread} | {best:.2f} | {diff} | {p} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    args, overrides = parse_args(sys.argv[1:] if argv is None else argv)
    out = args.out or ROOT / "runs" / f"cv-{time.strftime('%Y%m%d-%H%M%S')}"
    (out / "logs").mkdir(parents=True, exist_ok=True)
    plan = [(cfg, s, f) for cfg in args.configs for s in args.seeds for f in range(args.folds)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads)}
    runs: list[dict[str, Any]] = []
    pending, running, failed = list(plan), [], []
    t0 = time.monotonic()
    print(f"cross-validation: {len(plan)} runs ({len(args.configs)} configs x {len(args.seeds)} seeds x {args.folds} "
          f"folds), {args.jobs} at a time, {args.threads} threads each; output {out}", flush=True)
    while pending or running:
        while pending and len(running) < args.jobs:
            cfg, s, f = pending.pop(0)
            cmd = [sys.executable, str(ROOT / "train.py"), str(cfg), "--data.val_split",
                   val_split_arg(args.folds, f, args.by, args.split_seed), "--seed", str(s),
                   "--threads", str(args.threads), *overrides]
            log = out / "logs" / f"{cfg.stem}-seed{s}-fold{f}.log"
            handle = log.open("w")
            proc = subprocess.Popen(cmd, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, env=env)
            running.append((proc, handle, cfg, s, f, log, cmd))
        time.sleep(0.5)
        for item in list(running):
            proc, handle, cfg, s, f, log, cmd = item
            if proc.poll() is None:
                continue
            running.remove(item)
            handle.close()
            text = log.read_text()
            run_dir = next((ln.removeprefix("run_dir: ").strip() for ln in reversed(text.splitlines())
                            if ln.startswith("run_dir: ")), None)
            if proc.returncode != 0 or run_dir is None:
                failed.append(f"{cfg} seed {s} fold {f}: exit status {proc.returncode}, log {log}")
                print(f"FAILED {failed[-1]}", file=sys.stderr, flush=True)
                continue
            metric = coding_metric(Path(run_dir)) if args.metric == "auto" else args.metric
            score = run_score(Path(run_dir), metric, args.last)
            runs.append({"config": str(cfg), "seed": s, "fold": f, "run_dir": run_dir, "command": shlex.join(cmd),
                         **score})
            print(f"{cfg.stem} seed {s} fold {f}: val {metric} last-{args.last} mean {score['score']:.2f} "
                  f"(best {score['best']:.2f}); {len(runs) + len(failed)}/{len(plan)} done, "
                  f"{time.monotonic() - t0:.0f} s", flush=True)
    result = {"kind": "sjframe cross-validation", "folds": args.folds, "seeds": args.seeds, "by": args.by,
              "split_seed": args.split_seed, "last": args.last, "overrides": overrides,
              "configs": [str(c) for c in args.configs], "failed": failed, "runs": runs,
              "command": shlex.join([sys.executable, *sys.argv]) if argv is None else shlex.join(argv)}
    atomic_write_bytes(out / "cv.json", json.dumps(result, indent=1).encode())
    if failed:
        print(f"cross-validation: {len(failed)} run(s) failed; partial results in {out / 'cv.json'}", file=sys.stderr)
        return 1
    lines = [f"# Cross-validation: {args.folds} folds ({args.by or 'speaker where the file names speakers'}, split "
             f"seed {args.split_seed}), seeds {', '.join(map(str, args.seeds))}; score = mean validation value over "
             f"the last {args.last} epochs", "", *table(runs, [str(c) for c in args.configs], args.folds, args.seeds),
             "", f"Command: `{result['command']}`"]
    atomic_write_bytes(out / "cv.md", ("\n".join(lines) + "\n").encode())
    print("\n".join(lines))
    print(f"cv_dir: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
