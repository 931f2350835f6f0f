"""The config base and entry decorator shared by the stdp / conversion / spikeprop methods."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from sjframe.configtools import ConfigError
from sjframe.learning.common import MethodConfig, method_entry, parse_section, require_at_least_one
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
