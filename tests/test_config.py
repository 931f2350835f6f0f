"""Config: YAML -> typed frozen dataclasses, defaults, errors naming the key, command-line overrides."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sjframe.core.config import ConfigError, apply_overrides, load_yaml, parse_cli
from sjframe.methods.surrogate.config import SurrogateConfig, cli_options, config_to_dict, key_type, resolve_config

ROOT = Path(__file__).resolve().parents[1]


def _cli(argv: str, raw: dict | None = None, command: str = "train") -> SurrogateConfig:
    args = parse_cli(argv.split())
    return resolve_config(apply_overrides(raw or {}, args.overrides(cli_options(command)), key_type))


def test_defaults_are_filled_and_frozen():
    cfg = resolve_config({})
    assert cfg.method == "surrogate" and cfg.loss.mode == "first_time"
    assert cfg.model.name == "fcnet" and cfg.model.options["hidden_sizes"] == [256, 256]
    assert cfg.model.options["neuron1"]["tau_m_steps"] == 5.0  # the unit is in the key name
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 3  # type: ignore[misc]


def test_resolved_dict_round_trips():
    cfg = _cli("--train.lr 3e-4 --model.hidden_sizes 32 16 --data.options.encoding latency")
    again = resolve_config(config_to_dict(cfg))
    assert again == cfg
    assert config_to_dict(cfg)["model"]["name"] == "fcnet"


@pytest.mark.parametrize(
    ("raw", "names"),
    [
        ({"trian": {}}, ["trian", "valid keys", "train"]),
        ({"train": {"lrr": 1}}, ["lrr", "lr", "epochs"]),
        ({"loss": {"alpha": 1}}, ["alpha", "alpha0", "alpha1"]),
        ({"model": {"name": "fcnet", "hidden": [3]}}, ["hidden", "hidden_sizes"]),
        ({"model": {"name": "fcnet", "neuron1": {"tau_m": 3}}}, ["tau_m", "tau_m_steps"]),
        ({"model": {"name": "no_such_net"}}, ["no_such_net", "fcnet"]),
    ],
)
def test_unknown_keys_are_named_with_the_valid_ones(raw, names):
    with pytest.raises(ConfigError) as info:
        resolve_config(raw)
    for name in names:
        assert name in str(info.value)


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        ({"train": {"epochs": 2.5}}, "train.epochs"),
        ({"train": {"lr": "fast"}}, "train.lr"),
        ({"train": {"amsgrad": "yes"}}, "train.amsgrad"),
        ({"loss": {"mode": "first_spike"}}, "loss.mode"),
        ({"model": {"name": "fcnet", "hidden_sizes": 256}}, "model.hidden_sizes"),
        ({"data": {"T": 0}}, "data.T"),
        ({"train": {"select_metric": "acc_top5"}}, "train.select_metric"),
        ({"model": {"name": "fcnet", "neuron_type": "izhikevich"}}, "neuron_type"),
    ],
)
def test_wrong_types_and_values_are_named(raw, where):
    with pytest.raises(ConfigError, match=where.replace(".", r"\.")):
        resolve_config(raw)


def test_zero_is_a_value_not_unset():
    cfg = _cli("--T_empty 0 --treg 0 0.02 --train.weight_decay 0 --seed 0", raw={"data": {"T_empty": 20}, "seed": 5})
    assert cfg.data.T_empty == 0
    assert cfg.loss.treg_lambda == 0.0
    assert cfg.train.weight_decay == 0.0
    assert cfg.seed == 0
    assert resolve_config({"data": {"T_empty": 0}}).data.T_empty == 0


def test_seed_003_run_sh_line():
    line = (
        "--path_to_yaml cfg.yaml --log-interval 5 --lr 1e-3 --batch-size 128 --test-batch-size 256 --epochs 80 "
        "--loss_mode first_time --T 100 --T_empty 0 --dt 10 --hidden_size 256 256 --FS 0.2 16 200 "
        "--neuron1 5. 5. 0.5 --neuron2 60. 60. 10 --treg 0.01 0.02"
    )
    args = parse_cli(line.split(), special=("--path_to_yaml",))
    assert args.special["--path_to_yaml"] == ["cfg.yaml"]
    cfg = resolve_config(apply_overrides({}, args.overrides(cli_options("train")), key_type))
    assert cfg.train.log_interval == 5 and cfg.train.lr == 1e-3
    assert cfg.train.batch_size == 128 and cfg.train.test_batch_size == 256 and cfg.train.epochs == 80
    assert cfg.loss.mode == "first_time"
    assert (cfg.data.T, cfg.data.T_empty, cfg.data.dt) == (100, 0, 10.0)
    assert cfg.model.options["hidden_sizes"] == [256, 256]
    assert (cfg.loss.alpha0, cfg.loss.D, cfg.loss.A) == (0.2, 16, 200.0)
    n1, n2 = cfg.model.options["neuron1"], cfg.model.options["neuron2"]
    assert (n1["tau_m_steps"], n1["tau_s_steps"], n1["theta"]) == (5.0, 5.0, 0.5)
    assert (n2["tau_m_steps"], n2["tau_s_steps"], n2["theta"]) == (60.0, 60.0, 10.0)
    assert (cfg.loss.treg_lambda, cfg.loss.treg_beta0) == (0.01, 0.02)


def test_flags_and_generic_overrides():
    cfg = _cli("--FR 15 --load_pt_file w.pt --best_model --model.surrogate {name: arctan, alpha: 3} "
               "--model.layer_overrides.output.gradient sparse --train.grad_clip none --train.scheduler cosine "
               "--data.test_T=120")
    assert cfg.loss.alpha1 == 15.0
    assert cfg.train.init_checkpoint == "w.pt"
    assert cfg.eval.checkpoint == "best"
    assert cfg.model.options["surrogate"] == {"name": "arctan", "alpha": 3}
    assert cfg.model.options["layer_overrides"] == {"output": {"gradient": "sparse"}}
    assert cfg.train.grad_clip is None and cfg.train.scheduler == "cosine"
    assert cfg.data.test_T == 120


def test_test_flags_set_the_test_window():
    cfg = _cli("--T 250 --T_empty 0", raw={"data": {"T": 80, "T_empty": 20}}, command="test")
    assert (cfg.data.T, cfg.data.T_empty) == (80, 20)
    assert cfg.data.window("test") == (250, 0)
    assert cfg.data.window("val") == (80, 20)
    assert cfg.data.dataset_options("test")["T"] == 250


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ("--train.lrr 1", "lrr"),
        ("--train.lr abc", "train.lr"),
        ("--model.hidden_sizes 12 x", r"hidden_sizes\[1\]"),
        ("--data.T 1.5", "data.T"),
        ("--FS 0.2 16", "--FS takes 3 values"),
        ("--frobnicate 1", "--frobnicate"),
        ("--train.lr.x 1", "not a section"),
        ("--best_model yes", "takes no value"),
        ("--lr", "needs a value"),
    ],
)
def test_command_line_errors(argv, message):
    with pytest.raises(ConfigError, match=message):
        _cli(argv)


def test_yaml_loading(tmp_path):
    good = tmp_path / "a.yaml"
    good.write_text("train:\n  lr: 1e-3\n  epochs: 0\n")
    assert load_yaml(good) == {"train": {"lr": 1e-3, "epochs": 0}}
    with pytest.raises(ConfigError, match="train.epochs"):  # 0 is kept, and then rejected by the range check
        resolve_config(load_yaml(good))
    with pytest.raises(FileNotFoundError, match="missing.yaml"):
        load_yaml(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_yaml(bad)
    scalar = tmp_path / "scalar.yaml"
    scalar.write_text("42\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_yaml(scalar)


def test_shipped_configs_resolve():
    files = sorted((ROOT / "configs").glob("*.yaml"))
    surrogate = [f for f in files if load_yaml(f).get("method", "surrogate") == "surrogate"]
    assert any(f.name == "default.yaml" for f in surrogate)
    for f in surrogate:
        cfg = resolve_config(load_yaml(f))
        assert cfg.train.epochs >= 1, f
