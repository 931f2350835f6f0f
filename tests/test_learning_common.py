"""The config base and entry decorator shared by the stdp / conversion / spikeprop methods."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from sjframe.core.config import ConfigError
from sjframe.core.rundir import RunDir
from sjframe.core.runtime import (
    MethodConfig,
    load_model_state,
    method_entry,
    open_checkpoint,
    parse_section,
    report_best,
    require_at_least_one,
    start_run,
)
from sjframe.methods import get_method

ROOT = Path(__file__).resolve().parents[1]
SHARED = [f.name for f in dataclasses.fields(MethodConfig)]
TOY_METHODS = ("stdp", "conversion", "spikeprop")


@dataclasses.dataclass(frozen=True)
class _Toy(MethodConfig):
    dataset: str = "toy"
    steps: int = 1


def test_entry_runs_with_the_section_threads_and_restores_them() -> None:
    seen: list[int] = []

    @method_entry("toy", _Toy)
    def train(cfg: dict[str, Any], run: object, resume: bool = False) -> dict[str, Any]:
        """Doc kept."""
        seen.append(torch.get_num_threads())
        if resume:
            raise RuntimeError("boom")
        return {"run": run}

    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    assert train({"method": "toy", "toy": {"threads": other}}, "r") == {"run": "r"}
    assert seen == [other] and torch.get_num_threads() == before
    with pytest.raises(RuntimeError, match="boom"):
        train({"toy": {"threads": other}}, "r", resume=True)
    assert torch.get_num_threads() == before
    train({"toy": {}}, "r")  # threads: null leaves the count alone
    assert seen[-1] == before
    assert train.__doc__ == "Doc kept." and train.__name__ == "train"


def test_entry_rejects_a_bad_section_before_running() -> None:
    calls: list[int] = []

    @method_entry("toy", _Toy)
    def evaluate(cfg: dict[str, Any], run: object, checkpoint: str = "best.pt") -> None:
        calls.append(1)

    with pytest.raises(ConfigError, match=r"toy: unknown key\(s\) \['stepz'\]"):
        evaluate({"toy": {"stepz": 2}}, None)
    with pytest.raises(ConfigError, match="threads must be >= 1"):
        evaluate({"toy": {"threads": 0}}, None)
    with pytest.raises(ConfigError, match="method is 'stdp'"):
        evaluate({"method": "stdp", "toy": {}}, None)
    assert calls == []


def test_require_at_least_one_names_the_field() -> None:
    require_at_least_one(_Toy(steps=2), "steps")  # no error
    with pytest.raises(ValueError, match=r"steps must be >= 1, got 0"):
        require_at_least_one(_Toy(steps=0), "steps")
    with pytest.raises(ConfigError, match=r"stdp: eval_batch_size must be >= 1, got 0"):
        parse_section({"stdp": {"eval_batch_size": 0}}, "stdp", get_method("stdp").CONFIG)


@pytest.mark.parametrize(
    ("name", "defaults"),
    [
        ("stdp", {"dataset": "digits", "test_fraction": 0.2, "val_fraction": 0.1, "device": "auto"}),
        ("conversion", {"dataset": "digits", "test_fraction": 0.2, "val_fraction": 0.1, "device": "auto"}),
        ("spikeprop", {"dataset": "xor", "test_fraction": 0.33, "val_fraction": 0.0, "device": "cpu"}),
    ],
)
def test_method_configs_share_the_base_fields_with_their_own_defaults(name: str, defaults: dict[str, Any]) -> None:
    cls = get_method(name).CONFIG
    assert issubclass(cls, MethodConfig)
    assert [f.name for f in dataclasses.fields(cls)][: len(SHARED)] == SHARED  # resolved configs keep their key order
    conf = parse_section({}, name, cls)
    assert {k: getattr(conf, k) for k in defaults} == defaults
    assert (conf.split_seed, conf.seed, conf.threads) == (0, 0, None)
    with pytest.raises(ConfigError, match=rf"{name}: unknown key\(s\) \['split_sead'\]; valid keys: .*'split_seed'"):
        parse_section({name: {"split_sead": 1}}, name, cls)
    with pytest.raises(ConfigError, match=rf"{name}.dataset: 'mnist' is not one of"):
        parse_section({name: {"dataset": "mnist"}}, name, cls)
    with pytest.raises(ConfigError, match=rf"{name}.threads: 'two' matches none of"):
        parse_section({name: {"threads": "two"}}, name, cls)


def test_shipped_configs_still_load() -> None:
    paths = sorted(p for m in TOY_METHODS for p in (ROOT / "configs").glob(f"{m}_*.yaml"))
    assert len(paths) >= 3
    for path in paths:
        cfg = yaml.safe_load(path.read_text())
        name = cfg["method"]
        conf = parse_section(cfg, name, get_method(name).CONFIG)
        for key, value in cfg.get(name, {}).items():
            if not isinstance(value, dict):
                assert getattr(conf, key) == value, (path.name, key)


def test_run_start_checkpoint_and_model_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = RunDir.create("toy", root=tmp_path)
    cfg = {"toy": {"steps": 3, "device": "cpu"}}
    conf, device = start_run(cfg, "toy", _Toy, run)
    assert conf == _Toy(steps=3, device="cpu") and device == torch.device("cpu")
    written = yaml.safe_load(run.config_path.read_text())
    assert written["method"] == "toy" and written["toy"]["steps"] == 3 and written["toy"]["threads"] is None

    model = torch.nn.Linear(2, 3)
    run.save_checkpoint({"model": model.state_dict(), "epoch": 4}, "best.pt")
    conf, device, state, name = open_checkpoint(cfg, "toy", _Toy, run, "best")
    assert name == "best.pt" and state["epoch"] == 4 and conf.steps == 3
    fresh = torch.nn.Linear(2, 3)
    load_model_state(fresh, state, name, "the toy net")
    assert torch.equal(fresh.weight, model.weight)
    with pytest.raises(ValueError, match=r"(?s)checkpoint best.pt does not match the toy net \(.*size mismatch"):
        load_model_state(torch.nn.Linear(2, 4), state, name, "the toy net")
    with pytest.raises(FileNotFoundError, match="last.pt does not exist"):
        open_checkpoint(cfg, "toy", _Toy, run, "last")

    def evaluate(cfg: dict[str, Any], run: RunDir, checkpoint: str) -> dict[str, Any]:
        return {"checkpoint": checkpoint, "table": "| a |"}

    assert report_best(evaluate, cfg, run) == {"checkpoint": "best.pt", "table": "| a |"}
    assert "| a |" in capsys.readouterr().out
