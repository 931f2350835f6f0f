"""scripts/results_table.py: rows from aggregates, and the README's generated section is current."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import results_table  # noqa: E402


def _stat(values: list[float]) -> dict:
    from sjframe.methods.aggregate import summarize

    return summarize(values)


def _aggregate(folder: Path, config: str, method: str, stats: dict, argv: list[str], times: list[float]) -> None:
    folder.mkdir(parents=True)
    runs = {str(i): {"elapsed_s": t} for i, t in enumerate(times)}
    (folder / "aggregate.json").write_text(json.dumps({
        "status": "complete", "config": config, "method": method, "finished_seeds": list(range(len(times))),
        "runs": runs, "stats": stats}))
    (folder / "environment.json").write_text(json.dumps({"argv": argv}))


def test_rows_from_hand_built_aggregates(tmp_path):
    root = tmp_path
    (root / "configs").mkdir()
    (root / "configs" / "snn.yaml").write_text(
        "data: {name: toy}\nmodel: {name: fcnet, neuron_type: adlif, hidden_sizes: [8, 8]}\nloss: {mode: first_time}\n")
    (root / "configs" / "snn_fr.yaml").write_text(
        "data: {name: toy}\nmodel: {name: fcnet, hidden_sizes: [8]}\nloss: {mode: firing_rate}\n")
    (root / "configs" / "base.yaml").write_text("data: {name: toy}\nmodel: {name: mlp}\nloss: {mode: logits_nll}\n")
    (root / "configs" / "stdp.yaml").write_text("stdp: {dataset: other}\n")
    results = root / "results"
    _aggregate(results / "snn-3seeds", "configs/snn.yaml", "surrogate",
               {"acc_fs": _stat([70.0, 80.0, 75.0]), "acc_fs_spike": _stat([60.0, 65.0, 70.0]),
                "acc_fr": _stat([50.0, 50.0, 50.0]), "silent_fraction": _stat([0.1, 0.2, 0.3]),
                "n_s": _stat([2.0, 3.0, 4.0]), "td50_ms": _stat([100.0, 110.0, 120.0])},
               ["train.py", "configs/snn.yaml", "--seeds", "0", "1", "2", "--jobs", "1", "--threads", "1",
                "--runs_root", "/somewhere", "--protocol", "paper"], [10.0, 30.0, 20.0])
    (results / "snn-3seeds" / "README.md").write_text("a note\n")
    _aggregate(results / "fr-2seeds", "configs/snn_fr.yaml", "surrogate",
               {"acc_fs": _stat([40.0, 42.0]), "acc_fr": _stat([45.0, 47.0])},
               ["train.py", "configs/snn_fr.yaml", "--seeds", "0", "1"], [5.0, 7.0])
    _aggregate(results / "base-2seeds", "configs/base.yaml", "surrogate", {"acc": _stat([90.0, 92.0])},
               ["train.py", "configs/base.yaml", "--seeds", "0", "1"], [1.0, 2.0])
    _aggregate(results / "stdp-2seeds", "configs/stdp.yaml", "stdp", {"test_acc": _stat([0.5, 0.7])},
               ["train.py", "configs/stdp.yaml", "--seeds", "0", "1", "--stdp.threads", "1"], [3.0, 3.0])
    (results / "no_aggregate").mkdir()
    rows = results_table.rows(results, root)
    assert [r["name"] for r in rows] == ["stdp-2seeds", "base-2seeds", "snn-3seeds", "fr-2seeds"]  # task, then acc
    stdp, base, snn, fr = rows
    # mean 75, sd 5, t(0.975, 2) = 4.3027: half width 4.3027 * 5 / sqrt(3) = 12.42
    assert snn["acc"] == "75.00 ± 5.00" and snn["ci"] == "[62.58, 87.42]" and snn["metric"] == "acc_fs"
    assert snn["acc_fs_spike"] == "65.00 ± 5.00" and snn["silent"] == "20.0 ± 10.0" and snn["td50"] == "110 ± 10 ms"
    assert snn["time"] == "20 s" and snn["n"] == "3" and snn["coding"] == "FS" and snn["model"] == "fcnet adlif 8-8"
    assert snn["config"] == "`snn` `--protocol paper` (see `results/snn-3seeds/README.md`)"
    assert snn["command"] == ("`.venv/bin/python train.py configs/snn.yaml --seeds 0 1 2 --jobs 1 --threads 1 "
                              "--protocol paper`")
    assert fr["metric"] == "acc_fr" and fr["acc"] == "46.00 ± 1.41" and fr["coding"] == "FR"
    assert base["metric"] == "acc" and base["model"] == "mlp (non-spiking)" and base["acc_fs_spike"] == "-"
    assert stdp["task"] == "other" and stdp["acc"] == "60.00 ± 14.14" and stdp["config"] == "`stdp` `--stdp.threads 1`"
    text = results_table.section(results, root)
    assert sum(line.startswith("|") for line in text.splitlines()) == 1 + 1 + 4  # header, separator, 4 aggregates


def test_replace_section_and_check(tmp_path, capsys):
    assert results_table.replace_section("a\n<!-- results:begin -->\nold\n<!-- results:end -->\nb", "new\n") == \
        "a\n<!-- results:begin -->\nnew\n<!-- results:end -->\nb"
    with pytest.raises(ValueError, match="one <!-- results:begin -->"):
        results_table.replace_section("no markers", "x")
    page = tmp_path / "page.md"
    page.write_text("top\n<!-- results:begin -->\nstale\n<!-- results:end -->\n")
    assert results_table.main(["--check", str(page)]) == 1
    assert "stale" in capsys.readouterr().err
    assert results_table.main(["--write", str(page)]) == 0
    assert results_table.main(["--check", str(page)]) == 0
    assert results_table.main(["--check", str(tmp_path / "missing.md")]) == 2


def test_the_readme_section_is_current():
    assert results_table.main(["--check", str(ROOT / "README.md")]) == 0, \
        "run .venv/bin/python scripts/results_table.py --write README.md"


def test_task_names_the_data_set_version_from_the_config_or_the_command():
    cfg = {"data": {"name": "spoken_digits", "options": {"variant": "small", "num_classes": 10}}}
    assert results_table._task(cfg) == "spoken_digits (small, 10 classes)"
    argv = ["train.py", "c.yaml", "--data.options", "{variant: full, num_classes: 20, augment: {time_shift: 10}}",
            "--seeds", "0", "1"]
    assert results_table._task(cfg, argv) == "spoken_digits (full, 20 classes)"
    assert results_table._task({"data": {"name": "yinyang"}}, argv[:2]) == "yinyang"
