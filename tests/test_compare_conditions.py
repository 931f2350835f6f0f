"""scripts/compare_conditions.py: the change of each model's accuracy from one data condition to another."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import compare_conditions  # noqa: E402

_compare = compare_conditions.compare


def _aggregate(folder: Path, config: str, metric_values: dict[str, list[float]]) -> None:
    from sjframe.methods.aggregate import summarize

    folder.mkdir(parents=True)
    per_seed = {m: {str(i): v for i, v in enumerate(vs)} for m, vs in metric_values.items()}
    stats = {m: summarize(vs) for m, vs in metric_values.items()}
    (folder / "aggregate.json").write_text(json.dumps({
        "status": "complete", "config": config, "method": "surrogate", "finished_seeds": [0, 1, 2],
        "runs": {}, "per_seed": per_seed, "stats": stats}))  # fmt: skip


@pytest.fixture
def results(tmp_path: Path) -> Path:
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "snn.yaml").write_text(
        "data: {name: toy}\nmodel: {name: fcnet, neuron_type: adlif, hidden_sizes: [8]}\nloss: {mode: first_time}\n"
    )
    (tmp_path / "configs" / "mlp.yaml").write_text("data: {name: toy}\nmodel: {name: mlp}\nloss: {mode: logits_nll}\n")
    res = tmp_path / "results"
    # the SNN's headline is acc_fs (FS-trained), the baseline's acc; acc_fr of the SNN must be ignored
    _aggregate(res / "snn_clean", "configs/snn.yaml", {"acc_fs": [80.0, 82.0, 84.0], "acc_fr": [10.0, 10.0, 11.0]})
    _aggregate(res / "snn_noisy", "configs/snn.yaml", {"acc_fs": [79.0, 81.0, 80.0], "acc_fr": [90.0, 91.0, 92.0]})
    _aggregate(res / "mlp_clean", "configs/mlp.yaml", {"acc": [78.0, 79.0, 80.0]})
    _aggregate(res / "mlp_noisy", "configs/mlp.yaml", {"acc": [70.0, 72.0, 71.0]})
    return tmp_path


def test_changes_match_welch_by_hand(results: Path) -> None:
    from scipy import stats

    res = results / "results"
    rows = compare_conditions.compare(
        [(res / "snn_clean", res / "snn_noisy"), (res / "mlp_clean", res / "mlp_noisy")], root=results
    )
    snn, mlp = rows
    assert snn["metric"] == "acc_fs" and mlp["metric"] == "acc"
    assert snn["model"].endswith(", FS") and "non-spiking" in mlp["model"]
    assert snn["change"]["diff"] == pytest.approx(80.0 - 82.0) and mlp["change"]["diff"] == pytest.approx(71.0 - 79.0)
    assert mlp["relative_change_pct"] == pytest.approx(-800.0 / 79.0)
    # Welch by hand for the MLP: both sd = 1, n = 3: se = sqrt(1/3 + 1/3), df = 4
    se = (2 / 3) ** 0.5
    half = stats.t.ppf(0.975, 4) * se
    assert mlp["change"]["low"] == pytest.approx(-8.0 - half) and mlp["change"]["high"] == pytest.approx(-8.0 + half)
    assert mlp["change"]["df"] == pytest.approx(4.0)
    assert mlp["change"]["p"] == pytest.approx(2 * stats.t.sf(8.0 / se, 4))
    welch = stats.ttest_ind(snn["hard"], snn["base"], equal_var=False)  # scipy's Welch test agrees on the SNN's
    assert snn["change"]["p"] == pytest.approx(welch.pvalue) and snn["change"]["df"] == pytest.approx(welch.df)
    assert (snn["change"]["low"], snn["change"]["high"]) == pytest.approx(tuple(welch.confidence_interval(0.95)))
    # difference in differences, MLP vs the SNN (first row): (71 - 79) - (80 - 82) = -6; variance: the SNN's two
    # groups have sd 2 and 1, the MLP's sd 1 and 1 (n = 3 each): 4/3 + 1/3 + 1/3 + 1/3 = 7/3
    did = mlp["vs_first"]
    terms = [1 / 3, 1 / 3, 4 / 3, 1 / 3]
    df = (7 / 3) ** 2 / sum(t**2 / 2 for t in terms)
    assert "vs_first" not in snn and did["diff"] == pytest.approx(-6.0) and did["df"] == pytest.approx(df)
    assert did["high"] - did["diff"] == pytest.approx(stats.t.ppf(0.975, df) * (7 / 3) ** 0.5)
    assert did["p"] == pytest.approx(2 * stats.t.sf(6.0 / (7 / 3) ** 0.5, df))
    text = compare_conditions.table(rows, "clean", "noisy")
    assert "(reference)" in text and "| -6.00 [" in text
    assert "| acc | 79.00 ± 1.00 (n = 3) | 71.00 ± 1.00 (n = 3) | -8.00 [" in text


def test_cli_writes_table_json_and_plot(results: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    # main() reads the configs under the repository root: point it at the fixture's
    def compare_here(pairs: list, root: Path = results, labels: list | None = None) -> list:
        return _compare(pairs, results, labels)

    monkeypatch.setattr(compare_conditions, "compare", compare_here)
    res, out = results / "results", results / "out"
    argv = ["--pair", str(res / "snn_clean"), str(res / "snn_noisy"), "--pair", str(res / "mlp_clean"),
            str(res / "mlp_noisy"), "--labels", "as shipped", "binary frames", "--out", str(out)]  # fmt: skip
    assert compare_conditions.main(argv) == 0
    printed = capsys.readouterr().out
    assert (out / "compare.md").read_text().startswith(printed) and "Command:" in (out / "compare.md").read_text()
    saved = json.loads((out / "compare.json").read_text())
    assert [r["hard"] for r in saved["rows"]] == [[79.0, 81.0, 80.0], [70.0, 72.0, 71.0]]
    assert (out / "compare.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [r["model"].split(": ")[1] for r in saved["rows"]] == ["as shipped", "binary frames"]
    assert "--labels 'as shipped' 'binary frames'" in saved["command"]
    with pytest.raises(ValueError, match="1 labels for 2 pairs"):
        compare_conditions.compare([(res / "snn_clean", res / "snn_noisy")] * 2, root=results, labels=["x"])


def test_clear_errors(results: Path, capsys) -> None:
    res = results / "results"
    with pytest.raises(FileNotFoundError, match="no aggregate.json"):
        compare_conditions.compare([(res / "snn_clean", res / "missing")], root=results)
    with pytest.raises(ValueError, match="not the same model"):
        compare_conditions.compare([(res / "snn_clean", res / "mlp_noisy")], root=results)
    _aggregate(res / "one_seed", "configs/mlp.yaml", {"acc": [70.0]})
    with pytest.raises(ValueError, match="1 finished seed"):
        compare_conditions.compare([(res / "mlp_clean", res / "one_seed")], root=results)
    assert compare_conditions.main(["--pair", str(res / "x"), str(res / "y")]) == 2
    assert "no aggregate.json" in capsys.readouterr().err


@pytest.mark.parametrize("folder", sorted(p.name for p in (ROOT / "results").glob("compare_*")))
def test_committed_comparisons_are_reproduced_by_their_command(
    folder: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each committed ``results/compare_*/compare.md`` is what its recorded command gives from the committed aggregates."""
    committed = ROOT / "results" / folder
    argv = shlex.split(json.loads((committed / "compare.json").read_text())["command"])[2:]
    argv[argv.index("--out") + 1] = str(tmp_path / folder)
    monkeypatch.chdir(ROOT)  # the recorded pairs are relative to the repository root
    assert compare_conditions.main(argv) == 0
    table = (tmp_path / folder / "compare.md").read_text().split("\nCommand:")[0]
    assert table == (committed / "compare.md").read_text().split("\nCommand:")[0]
