"""Silent rule (issue 16 part 5): how much each decoder's silent rule moves accuracy, from multi-seed aggregates.

``python results/protocol_silent_rule/silent_rule.py <aggregate dir> ... [--json out.json]``, no new run:

* FS: the paper's rule (``acc_fs``: a silent output decodes by its peak potentials) minus the first-spike-only rule
  (``acc_fs_spike``: silent = wrong), per seed, from the aggregate's per-seed values;
* FR: the original code's ``argmax`` of all-zero counts is class 0, so its FR accuracy is sjframe's ``acc_fr`` plus
  the silent samples whose target is class 0, per seed, from the test report's ``-confusion_fr.json`` (row =
  target, last column = silent).

Each as per-seed values and n / mean / sd / 95 % t interval (``sjframe.methods.aggregate.summarize``), in points.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from sjframe.methods.aggregate import summarize  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("aggregates", nargs="+")
    p.add_argument("--json")
    args = p.parse_args(argv)
    out = {}
    for d in args.aggregates:
        a = json.loads((Path(d) / "aggregate.json").read_text())
        fs, fr = [], []
        for s in map(str, a["finished_seeds"]):
            report = Path(a["runs"][s]["report"])
            c = json.loads(report.with_name(report.stem + "-confusion_fr.json").read_text())
            fr.append(100.0 * c["counts"][0][-1] / c["n_samples"])
            fs.append(a["per_seed"]["acc_fs"][s] - a["per_seed"]["acc_fs_spike"][s])
        out[Path(d).name] = {"seeds": a["finished_seeds"], "fs_paper_minus_spike": fs, "fr_original_minus_sjframe": fr,
                             "stats_fs": summarize(fs), "stats_fr": summarize(fr)}
        for key, label in (("fs", "FS: acc_fs - acc_fs_spike"), ("fr", "FR: original (silent -> class 0) - acc_fr")):
            st = out[Path(d).name][f"stats_{key}"]
            values = fs if key == "fs" else fr
            print(f"{Path(d).name}  {label}: {st['mean']:+.2f} ± {st['sd']:.2f} [{st['ci95'][0]:.2f}, "
                  f"{st['ci95'][1]:.2f}] points; per seed {', '.join(f'{v:.2f}' for v in values)}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
