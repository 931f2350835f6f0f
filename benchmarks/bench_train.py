#!/usr/bin/env python
"""End-to-end training time of one config on two (or more) backends, alternated in one run.

Each round runs ``train.py <config> --model.backend <b> --threads <n> [overrides]`` once per backend (in a
fresh process, the order alternating between rounds so that a drift of the machine's load hits both), and
``--test`` also runs ``test.py`` on each run. Before the rounds, each backend trains one batch (not timed):
that builds (or loads from the disk cache) the CPU kernels and warms the file cache. Printed per run: wall
and CPU seconds of ``train.py`` (the whole command: start-up, data, training, validation, checkpoints),
epochs, the best validation value of the run's selection metric and, with ``--test``, the test accuracies;
then per backend the median over rounds and the speed-up of each backend over the first one (ratio of
medians, wall and CPU). Example (README, "The CPU backend")::

    nice -n 10 .venv/bin/python benchmarks/bench_train.py configs/default.yaml --epochs 5 --rounds 2
    nice -n 10 .venv/bin/python benchmarks/bench_train.py configs/default.yaml --rounds 1 --test   # full length
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cpu_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _run(cmd: list[str]) -> tuple[str, float, float]:
    """Run ``cmd`` (cwd: the repository); return its stdout, wall seconds and CPU seconds (user + system)."""
    cpu0, t0 = _cpu_children(), time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t0, _cpu_children() - cpu0
    if done.returncode != 0:
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["(no output)"]
        raise SystemExit(f"bench_train.py: error: {' '.join(cmd)} exited with status {done.returncode}: {tail[0]}")
    return done.stdout, wall, cpu


def _run_dir(stdout: str) -> Path:
    lines = [line for line in stdout.splitlines() if line.startswith("run_dir: ")]
    if not lines:
        raise SystemExit("bench_train.py: error: train.py printed no 'run_dir: <path>' line")
    return Path(lines[-1].split(": ", 1)[1].strip())


def _summary(stdout: str) -> dict:
    """train.py's summary line (JSON: epochs, best {metric, value, epoch}, ...)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith("{") and '"best"' in line:
            return json.loads(line)
    return {}


def _test_record(run: Path) -> dict:
    """The last ``test`` record of the run's metrics.jsonl (written by test.py)."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    tests = [r for r in records if r.get("event") == "test"]
    return tests[-1] if tests else {}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("config", help="the experiment's YAML config")
    p.add_argument("--backends", nargs="+", default=["torch", "cpu"], help="model.backend values (default torch cpu)")
    p.add_argument("--epochs", type=int, default=None, help="train.epochs (default: the config's)")
    p.add_argument("--rounds", type=int, default=2, help="runs per backend, alternated (default 2)")
    p.add_argument("--threads", type=int, default=1, help="--threads of every run (default 1)")
    p.add_argument("--test", action="store_true", help="also run test.py on each run and print its accuracies")
    p.epilog = "Further train.py overrides go after --, e.g. -- --seed 1 --train.batch_size 64"
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    args = p.parse_args(argv[:argv.index("--")] if "--" in argv else argv)
    if args.rounds < 1 or args.threads < 1:
        p.error("--rounds and --threads must be at least 1")
    epochs = [] if args.epochs is None else ["--train.epochs", str(args.epochs), "--train.cosine_t_max", str(args.epochs)]
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="sjframe-bench-train-") as tmp:
        base = [py, "train.py", args.config, "--runs_root", tmp, "--threads", str(args.threads),
                "--train.progress", "false", *extra]
        for b in args.backends:  # warm-up: kernel build / cache load, file cache
            _run([*base, "--model.backend", b, "--train.epochs", "1", "--train.max_batches", "1",
                  "--train.cosine_t_max", "1"])
        rows: list[dict] = []
        for r in range(args.rounds):
            order = args.backends if r % 2 == 0 else list(reversed(args.backends))
            for b in order:
                out, wall, cpu = _run([*base, *epochs, "--model.backend", b])
                run = _run_dir(out)
                summary = _summary(out)
                best_info = summary.get("best") or {}
                n, metric, best = summary.get("epochs"), f"val_{best_info.get('metric')}", best_info.get("value")
                row = {"backend": b, "round": r, "wall": wall, "cpu": cpu, "epochs": n, "metric": metric, "best": best}
                if args.test:
                    _run([py, "test.py", str(run), "--eval.plots", "false", "--threads", str(args.threads)])
                    report = _test_record(run)
                    row["test"] = {k: report.get(k) for k in ("acc_fs", "acc_fs_spike", "acc_fr", "acc")}
                rows.append(row)
                print(f"round {r} {b:>6}: {wall:7.1f} s wall {cpu:7.1f} s CPU, {n} epochs, best {metric} {best}"
                      + (f", test {row['test']}" if args.test else ""), flush=True)
    print(f"\n{args.config}, {args.threads} thread(s), {args.rounds} round(s), overrides: {' '.join(epochs + extra) or '-'}")
    print("| backend | wall s (median) | CPU s (median) | speed-up wall | speed-up CPU | best validation per round |"
          + (" test acc_fs / acc_fs_spike / acc_fr per round |" if args.test else ""))
    print("|---|---:|---:|---:|---:|---|" + ("---|" if args.test else ""))
    med = {b: (statistics.median(r["wall"] for r in rows if r["backend"] == b),
               statistics.median(r["cpu"] for r in rows if r["backend"] == b)) for b in args.backends}
    ref = med[args.backends[0]]
    for b in args.backends:
        mine = [r for r in rows if r["backend"] == b]
        vals = " / ".join("-" if r["best"] is None else f"{r['best']:.2f}" for r in mine)
        line = (f"| {b} | {med[b][0]:.1f} | {med[b][1]:.1f} | {ref[0] / med[b][0]:.2f}x | {ref[1] / med[b][1]:.2f}x "
                f"| {vals} |")
        if args.test:
            line += " " + "; ".join(" / ".join("-" if r["test"].get(k) is None else f"{r['test'][k]:.2f}"
                                               for k in ("acc_fs", "acc_fs_spike", "acc_fr")) for r in mine) + " |"
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
