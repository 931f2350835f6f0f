"""Test window (issue 16 part 5): every seed's best.pt of a multi-seed aggregate, tested again on another window.

``python results/protocol_test_window/retest.py <aggregate dir> --T 80 --T_empty 20`` runs, for each seed's run of
the aggregate, ``test.py <run_dir> --T .. --T_empty .. --eval.plots false`` (the same checkpoint the aggregate
used, best.pt), reads the new report ``reports/test-best-T<T>-E<T_empty>.json`` and prints per seed and as
n / mean ± sd / 95 % t interval (``sjframe.methods.aggregate.summarize``) the aggregate's own values (its test
window) beside the new ones, with the difference of the means; ``--json out.json`` writes them.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
from sjframe.methods.aggregate import summarize  # noqa: E402

METRICS = ("acc_fs", "acc_fs_spike", "acc_fr", "silent_fraction", "n_s", "td50")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("aggregate")
    p.add_argument("--T", type=int, required=True)
    p.add_argument("--T_empty", type=int, required=True)
    p.add_argument("--json")
    args = p.parse_args(argv)
    agg = json.loads((Path(args.aggregate) / "aggregate.json").read_text())
    old = {m: [agg["per_seed"][m][s] for s in map(str, agg["finished_seeds"])] for m in METRICS}
    new: dict[str, list[float]] = {m: [] for m in METRICS}
    for s in map(str, agg["finished_seeds"]):
        run = agg["runs"][s]["run_dir"]
        subprocess.run([sys.executable, str(ROOT / "test.py"), run, "--T", str(args.T), "--T_empty", str(args.T_empty),
                        "--eval.plots", "false"], check=True, stdout=subprocess.DEVNULL)
        report = json.loads((Path(run) / "reports" / f"test-best-T{args.T}-E{args.T_empty}.json").read_text())
        metrics = report.get("metrics", report)
        for m in METRICS:
            new[m].append(float(metrics[m]))
    out = {"aggregate": args.aggregate, "seeds": agg["finished_seeds"], "window": [args.T, args.T_empty],
           "own_window": old, "new_window": new,
           "stats_own": {m: summarize(old[m]) for m in METRICS}, "stats_new": {m: summarize(new[m]) for m in METRICS}}
    for m in METRICS:
        a, b = out["stats_own"][m], out["stats_new"][m]
        print(f"{m}: own window {a['mean']:.4g} ± {a['sd']:.3g} [{a['ci95'][0]:.4g}, {a['ci95'][1]:.4g}]  "
              f"T={args.T}+{args.T_empty}: {b['mean']:.4g} ± {b['sd']:.3g} [{b['ci95'][0]:.4g}, {b['ci95'][1]:.4g}]  "
              f"difference {b['mean'] - a['mean']:+.4g}  per seed {old[m]} -> {new[m]}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
