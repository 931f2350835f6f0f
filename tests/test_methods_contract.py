"""The one Method contract every training method fulfils, and the config / runtime machinery they share."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from sjframe.core.cli_errors import CheckpointError
from sjframe.core.config import ConfigError
from sjframe.core.distributed import DistContext
from sjframe.core.rundir import RunDir
from sjframe.core.runtime import DeviceError, load_weights, require_at_least_one, select_device
from sjframe.methods import METHODS, get_method
from sjframe.methods.base import Capabilities, Method, MethodConfig

ROOT = Path(__file__).resolve().parents[1]
SHARED = [f.name for f in dataclasses.fields(MethodConfig)]
TOY_METHODS = ("stdp", "conversion", "spikeprop")


@dataclasses.dataclass(frozen=True)
class _Toy(MethodConfig):
    dataset: str = "toy"
    steps: int = 1


class _ToyMethod(Method):
    name = "toy"
    settings = _Toy
    section = "toy"

    def __init__(self) -> None:
        self.seen: list[tuple[str, int, Any]] = []

    def fit(self, settings: Any, raw: dict[str, Any], run: RunDir, ctx: DistContext, resume: bool,
            resume_epoch: int | None) -> dict[str, Any]:
        self.seen.append(("fit", torch.get_num_threads(), ctx.device))
        if resume:
            raise RuntimeError("boom")
        run.write_config(self.resolved(raw, settings))
        return {"steps": settings.steps}

    def test(self, settings: Any, raw: dict[str, Any], run: RunDir, ctx: DistContext, checkpoint: str,
             **options: Any) -> dict[str, Any]:
        self.seen.append(("test", torch.get_num_threads(), checkpoint))
        return {"checkpoint": checkpoint, "table": "| a |"}


def test_every_registered_method_exposes_the_contract() -> None:
    for name in METHODS:
        method = get_method(name)
        assert isinstance(method, Method) and method.name == name
        assert dataclasses.is_dataclass(method.settings) and isinstance(method.capabilities, Capabilities)
        assert method.section in (None, name)
        settings = method.parse({"method": name})  # every key has a default
        assert isinstance(method.device_spec(settings), str)
    with pytest.raises(ValueError, match=r"unknown method 'nope'; valid: \["):
        get_method("nope")
    caps = {name: get_method(name).capabilities for name in METHODS}
    assert caps["surrogate"].supports_distributed and caps["exact_time"].keeps_savepoints
    assert all(c.supports_resume for c in caps.values())


def test_methods_run_with_their_threads_and_restore_them(tmp_path: Path) -> None:
    method = _ToyMethod()
    before = torch.get_num_threads()
    other = 1 if before != 1 else 2
    run = RunDir.create("toy", root=tmp_path)
    assert method.train({"method": "toy", "toy": {"threads": other, "device": "cpu"}}, run) == {"steps": 1}
    assert method.seen[-1] == ("fit", other, torch.device("cpu")) and torch.get_num_threads() == before
    written = yaml.safe_load(run.config_path.read_text())
    assert written["method"] == "toy" and written["toy"]["steps"] == 1 and written["toy"]["threads"] == other
    with pytest.raises(RuntimeError, match="boom"):
        method.train({"toy": {"threads": other}}, run, resume=True)
    assert torch.get_num_threads() == before
    assert method.evaluate({"toy": {}}, run)["checkpoint"] == "best"  # the default checkpoint
    assert method.seen[-1] == ("test", before, "best")  # threads: null leaves the count alone
    with pytest.raises(ConfigError, match="keeps no savepoints"):
        method.train({"toy": {}}, run, resume_epoch=1)


def test_a_bad_section_is_rejected_before_running(tmp_path: Path) -> None:
    method = _ToyMethod()
    with pytest.raises(ConfigError, match=r"toy: unknown key\(s\) \['stepz'\]"):
        method.train({"toy": {"stepz": 2}}, RunDir(tmp_path))
    with pytest.raises(ConfigError, match="threads must be >= 1"):
        method.evaluate({"toy": {"threads": 0}}, RunDir(tmp_path))
    with pytest.raises(ConfigError, match="config method is 'stdp'"):
        method.evaluate({"method": "stdp", "toy": {}}, RunDir(tmp_path))
    assert method.seen == []


def test_command_line_overrides_are_typed_by_the_settings() -> None:
    method = get_method("stdp")
    raw = method.apply_overrides({"method": "stdp"}, [("stdp.epochs", ["3"]), ("stdp.network.nu_pre", ["1e-3"]),
                                                      ("stdp.threads", ["null"]), ("name", ["x"])])
    assert raw["stdp"] == {"epochs": 3, "network": {"nu_pre": 1e-3}, "threads": None} and raw["name"] == "x"
    with pytest.raises(ConfigError, match=r"--stdp.epoch: unknown key 'epoch'; valid keys: .*'epochs'"):
        method.apply_overrides({}, [("stdp.epoch", ["3"])])
    with pytest.raises(ConfigError, match="stdp.epochs: expected an integer"):
        method.apply_overrides({}, [("stdp.epochs", ["many"])])
    with pytest.raises(ConfigError, match=r"--train.lr: unknown key 'train'"):
        method.apply_overrides({}, [("train.lr", ["1"])])
    conversion = get_method("conversion")
    assert conversion.apply_overrides({}, [("conversion.time_steps", ["8", "32"])])["conversion"]["time_steps"] == [8, 32]


def test_require_at_least_one_names_the_field() -> None:
    require_at_least_one(_Toy(steps=2), "steps")  # no error
    with pytest.raises(ValueError, match=r"steps must be >= 1, got 0"):
        require_at_least_one(_Toy(steps=0), "steps")
    with pytest.raises(ConfigError, match=r"stdp: eval_batch_size must be >= 1, got 0"):
        get_method("stdp").parse({"stdp": {"eval_batch_size": 0}})


@pytest.mark.parametrize(
    ("name", "defaults"),
    [
        ("stdp", {"dataset": "digits", "test_fraction": 0.2, "val_fraction": 0.1, "device": "auto"}),
        ("conversion", {"dataset": "digits", "test_fraction": 0.2, "val_fraction": 0.1, "device": "auto"}),
        ("spikeprop", {"dataset": "xor", "test_fraction": 0.33, "val_fraction": 0.0, "device": "cpu"}),
    ],
)
def test_toy_settings_share_the_base_fields_with_their_own_defaults(name: str, defaults: dict[str, Any]) -> None:
    method = get_method(name)
    cls = method.settings
    assert issubclass(cls, MethodConfig)
    assert [f.name for f in dataclasses.fields(cls)][: len(SHARED)] == SHARED  # resolved configs keep their key order
    conf = method.parse({})
    assert {k: getattr(conf, k) for k in defaults} == defaults
    assert (conf.split_seed, conf.seed, conf.threads) == (0, 0, None)
    with pytest.raises(ConfigError, match=rf"{name}: unknown key\(s\) \['split_sead'\]; valid keys: .*'split_seed'"):
        method.parse({name: {"split_sead": 1}})
    with pytest.raises(ConfigError, match=rf"{name}.dataset: 'mnist' is not one of"):
        method.parse({name: {"dataset": "mnist"}})
    with pytest.raises(ConfigError, match=rf"{name}.threads: 'two' matches none of"):
        method.parse({name: {"threads": "two"}})


def test_shipped_configs_still_load() -> None:
    paths = sorted(p for m in (*TOY_METHODS, "exact") for p in (ROOT / "configs").glob(f"{m}_*.yaml"))
    assert len(paths) >= 6
    for path in paths:
        cfg = yaml.safe_load(path.read_text())
        method = get_method(cfg["method"])
        conf = method.parse(cfg)
        for key, value in cfg.get(method.section, {}).items():
            if not isinstance(value, dict):
                assert getattr(conf, key) == value, (path.name, key)


def test_checkpoint_lookup_and_model_state(tmp_path: Path) -> None:
    run = RunDir.create("toy", root=tmp_path)
    model = torch.nn.Linear(2, 3)
    run.save_checkpoint({"model": model.state_dict(), "epoch": 4}, "best.pt")
    for spec in ("best", "best.pt", str(run.checkpoints / "best.pt")):
        state, path = run.read_checkpoint(spec)
        assert path.name == "best.pt" and state["epoch"] == 4
    fresh = torch.nn.Linear(2, 3)
    load_weights(fresh, state["model"], "checkpoint best.pt")
    assert torch.equal(fresh.weight, model.weight)
    with pytest.raises(CheckpointError, match=r"checkpoint best.pt does not fit the model: tensor 'weight' has shape"):
        load_weights(torch.nn.Linear(2, 4), state["model"], "checkpoint best.pt")
    with pytest.raises(FileNotFoundError, match=r"last.pt does not exist \(the run has \['best.pt'\]\)"):
        run.read_checkpoint("last")
    run.save_checkpoint({"epoch": 1}, "empty.pt")
    with pytest.raises(CheckpointError, match="holds no model state"):
        run.read_checkpoint("empty")
    report = run.write_report("test-best", {"acc": 0.5}, "| a |")
    assert report["table"] == "| a |" and (run.path / "reports" / "test-best.md").read_text() == "| a |\n"
    assert run.read_log()[-1] == {"event": "test", "acc": 0.5}


def test_one_device_choice() -> None:
    assert select_device("cpu") == torch.device("cpu")
    assert select_device("auto").type in ("cpu", "cuda")
    with pytest.raises(DeviceError, match="stdp.device 'gpu0' is not a valid torch device") as info:
        select_device("gpu0", "stdp.device")
    assert isinstance(info.value, ConfigError) and info.value.status == 2
    if not torch.cuda.is_available():
        with pytest.raises(DeviceError, match=r"device 'cuda' requested but CUDA is not available here .* --device cpu"):
            select_device("cuda")
