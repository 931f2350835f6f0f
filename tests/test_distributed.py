"""Distributed data-parallel training (sjframe.methods.surrogate.distributed): 2 CPU processes with gloo vs one process.

The 2-process test spawns two workers (``torch.multiprocessing``) that open the process group from
torchrun's environment variables (the path ``train.py`` takes under torchrun) on a small SHD data
set in the real file layout, and checks: the weights after 8 steps match a single-process run with
the same global batch, the validation metrics of given weights equal the single-process ones on
the same 13 samples (odd, so one shard is shorter: nothing counted twice), rank 0 alone writes one
run directory with one ``last.pt`` / ``best.pt``, and an interrupted 2-process run resumed under 2
processes continues bit for bit (with dropout, so the per-rank RNG states matter).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from sjframe.core import distributed as core_dist
from sjframe.core.rundir import RunDir
from sjframe.data.writers import random_dataset_files
from sjframe.methods.surrogate import distributed, sharding
from sjframe.methods.surrogate.config import resolve_config
from sjframe.methods.surrogate.engine import Trainer
from sjframe.methods.surrogate.evaluation import evaluate_run
from sjframe.methods.surrogate.metrics import EvalAccumulator
from sjframe.models.base import ModelOutput

ROOT = Path(__file__).resolve().parents[1]
N_TRAIN_FILE, N_TEST = 45, 11  # val_fraction 0.29 -> 13 validation, 32 training samples


@pytest.fixture(scope="module")
def shd_root(tmp_path_factory) -> Path:
    return random_dataset_files("shd", tmp_path_factory.mktemp("shd"), n_train=N_TRAIN_FILE, n_test=N_TEST,
                                events=300, seed=3)


def tiny(root: Path, **sections) -> dict:
    """No dropout, no BatchNorm: a model whose 2-process training equals the single-process one."""
    raw = {
        "threads": 1,
        "device": "cpu",
        "data": {"name": "shd", "root": str(root), "T": 10, "T_empty": 2, "dt": 50.0, "val_fraction": 0.29},
        "model": {"name": "fcnet", "hidden_sizes": [16], "dropout": 0.0, "batchnorm": False,
                  "neuron1": {"tau_m_steps": 3, "tau_s_steps": 3, "theta": 0.1},
                  "neuron2": {"tau_m_steps": 3, "tau_s_steps": 3, "theta": 0.1}},
        "train": {"epochs": 2, "batch_size": 8, "test_batch_size": 4, "lr": 1e-2, "progress": False,
                  "dist_backend": "gloo"},
        "loss": {"D": 4, "A": 50.0},
        "eval": {"raster_samples": 2},
    }
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values} if isinstance(values, dict) else values
    return raw


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _without_torchrun_env(monkeypatch) -> None:
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(key, raising=False)


# --------------------------------------------------------------------------------------------- pieces
def test_train_shards_give_the_single_process_batches():
    """Step i of all ranks together sees exactly the batch i of the single-process engine's own loader."""
    from types import SimpleNamespace

    from torch.utils.data import DataLoader

    ds = [(torch.full((1, 1), float(i)), i) for i in range(32)]  # y = the sample's index
    cfg = resolve_config({"seed": 7, "train": {"batch_size": 8}})
    engine_self = SimpleNamespace(cfg=cfg, device=torch.device("cpu"))
    B, W = 8, 2
    orders = []
    for epoch in (1, 2):
        single = [y for _, y in Trainer._loader(engine_self, ds, train=True, epoch=epoch)]
        shards = []
        for rank in range(W):
            sampler = sharding.ShardSampler(ds, W, rank, shuffle=True, seed=7)
            sampler.set_epoch(epoch)
            shards.append([y for _, y in DataLoader(ds, batch_size=B // W, sampler=sampler)])
        assert len(shards[0]) == len(shards[1]) == len(single) == 4
        for i, batch in enumerate(single):
            together = torch.cat([shards[r][i] for r in range(W)])
            assert sorted(together.tolist()) == sorted(batch.tolist())
        orders.append(torch.cat(single).tolist())
        assert orders[-1] == sharding.engine_permutation(32, 7, epoch)
    assert orders[0] != orders[1] and sorted(orders[0]) == list(range(32))


def test_train_shards_pad_and_eval_shards_do_not():
    ds = list(range(7))
    train = [list(sharding.ShardSampler(ds, 3, r, shuffle=True, seed=0)) for r in range(3)]
    assert [len(s) for s in train] == [3, 3, 3]  # padded to 9: every rank runs the same number of steps
    flat = sum(train, [])
    assert set(flat) == set(range(7)) and len(flat) == 9
    evals = [list(sharding.ShardSampler(ds, 3, r, shuffle=False, pad=False)) for r in range(3)]
    assert evals == [[0, 3, 6], [1, 4], [2, 5]]
    assert [len(sharding.ShardSampler(ds, 3, r, shuffle=False, pad=False)) for r in range(3)] == [3, 2, 2]
    with pytest.raises(ValueError, match="shuffle without padding"):
        sharding.ShardSampler(ds, 3, 0, shuffle=True, pad=False)


def test_interleave_restores_the_original_order():
    items = torch.arange(11 * 2).reshape(11, 2)
    parts = [items[r::3] for r in range(3)]
    torch.testing.assert_close(core_dist.interleave(parts), items)
    spikes = torch.rand(4, 5, 3)  # rasters: samples on dim 1
    torch.testing.assert_close(core_dist.interleave([spikes[:, r::2] for r in range(2)], dim=1), spikes)
    with pytest.raises(ValueError, match="round-robin"):
        core_dist.interleave([items[:3], items[3:]])


def test_global_batch_must_divide_and_other_boundary_errors():
    assert sharding.per_rank_batch(128, 4) == 32
    with pytest.raises(ValueError, match="train.batch_size 10 is the global batch.*divisible by the number of processes 4"):
        sharding.per_rank_batch(10, 4)
    with pytest.raises(ValueError, match="nccl needs CUDA"):
        core_dist.resolve_backend("nccl", torch.device("cpu"))
    with pytest.raises(ValueError, match="dist_backend must be one of"):
        core_dist.resolve_backend("mpi", torch.device("cpu"))
    assert core_dist.resolve_backend("auto", torch.device("cpu")) == "gloo"
    with pytest.raises(ValueError, match="pins every process to one GPU"):
        core_dist.rank_device("cuda:0", 1, 2)
    assert core_dist.rank_device("cpu", 1, 2) == torch.device("cpu")
    assert core_dist.rank_seed(0, 1) != core_dist.rank_seed(0, 2) != core_dist.rank_seed(1, 1)
    with pytest.raises(ValueError, match="compile_backend 'nope' unknown"):
        distributed.apply_compile(torch.nn.Linear(2, 2), resolve_config({"train": {"compile": True,
                                                                                 "compile_backend": "nope"}}))


def test_torchrun_environment_is_read_and_checked(monkeypatch):
    _without_torchrun_env(monkeypatch)
    assert core_dist.env_world() == (0, 1, 0)
    with core_dist.launch("gloo", "cpu") as ctx:  # no torchrun: no process group
        assert not ctx.is_distributed and ctx.is_main and ctx.world_size == 1
        assert not torch.distributed.is_initialized()
        assert ctx.broadcast_object("x") == "x" and ctx.all_true(False) is False
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "5")
    with pytest.raises(ValueError, match="inconsistent torchrun environment"):
        core_dist.env_world()
    monkeypatch.setenv("RANK", "1")
    with pytest.raises(RuntimeError, match="no process group is open"):
        core_dist.current_context("cpu")
    with pytest.raises(ValueError, match="nccl needs CUDA"):
        core_dist.check_launch("nccl", "cpu")


def test_single_process_trainer_is_unchanged(shd_root, monkeypatch):
    _without_torchrun_env(monkeypatch)
    cfg = resolve_config(tiny(shd_root))
    trainer = distributed.make_trainer(cfg, None)
    assert type(trainer) is Trainer and trainer.forward_module is trainer.model


def test_sync_bn_needs_cuda_and_keeps_the_optimizer_parameters(shd_root):
    cfg = resolve_config(tiny(shd_root, model={"batchnorm": True}, train={"sync_bn": True}))
    ctx = core_dist.DistContext(rank=0, world_size=2, local_rank=0, device=torch.device("cpu"), backend="gloo")
    with pytest.raises(ValueError, match="sync_bn needs CUDA"):
        distributed.DistributedTrainer(cfg, None, ctx)
    # the conversion DistributedTrainer does on GPUs keeps the parameters the optimiser holds
    trainer = Trainer(cfg, None)
    params = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    converted = torch.nn.SyncBatchNorm.convert_sync_batchnorm(trainer.model)
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in converted.modules())
    assert {id(p) for p in converted.parameters()} == params
    assert set(converted.state_dict()) == set(Trainer(cfg, None).model.state_dict())


def test_reduce_accumulator_is_a_no_op_in_one_process():
    acc = EvalAccumulator(primary="fr")
    spikes = (torch.rand(5, 3, 4) > 0.5).float()
    acc.update(ModelOutput(spikes=spikes, h=torch.rand(5, 3, 4), layer_spikes={"output": spikes}), torch.tensor([0, 1, 2]))
    before = acc.compute()
    core_dist.DistContext().reduce_accumulator(acc)
    assert acc.compute() == before


# --------------------------------------------------------------------------------------------- 2 processes
class _Interrupt(Exception):
    pass


def _summary(trainer: Trainer) -> dict:
    return {"history": trainer.history, "model": {k: v.clone() for k, v in trainer.model.state_dict().items()}}


def _same_metrics(got: dict, expected: dict) -> None:
    """Counts, accuracies, curves, td50/td90 equal; float sums to 1e-12; the loss (float32 batch means) to 1e-6."""
    assert set(got) == set(expected)
    for key, value in expected.items():
        if key == "loss":
            assert got[key] == pytest.approx(value, rel=1e-6), key
        elif isinstance(value, (float, dict)):  # dict: N_s per layer
            assert got[key] == pytest.approx(value, rel=1e-12), key
        else:
            assert got[key] == value, key


def _worker(rank: int, world: int, port: int, job: dict) -> None:
    """One of the 2 processes: the environment torchrun would set, then everything the test checks."""
    os.environ.update({"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
                       "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)})
    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT))
    import test as test_cli
    import train as train_cli

    out: dict = {}
    with core_dist.launch("gloo", "cpu") as ctx:
        assert ctx.is_distributed and ctx.rank == rank and ctx.world_size == world
        # 0. the collectives: a flag false on one rank is false everywhere; accumulators that differ are an error
        out["all_true"] = (ctx.all_true(True), ctx.all_true(rank == 0))
        acc = EvalAccumulator(primary="fr")
        spikes = torch.ones(4, 2, 3)
        acc.update(ModelOutput(spikes=spikes, h=spikes, layer_spikes={}), torch.tensor([0, 1]),
                   loss=1.0 if rank == 1 else None)
        try:
            ctx.reduce_accumulator(acc)
        except ValueError as exc:
            out["mismatch"] = str(exc)
        # 1. the same config as the single-process reference, 2 epochs x 4 steps of global batch 8
        run = core_dist.create_run_dir("ddp", job["runs"], ctx)
        trainer = distributed.make_trainer(resolve_config(job["exact"]), run)
        assert isinstance(trainer, distributed.DistributedTrainer) and trainer.local_batch == 4
        trainer.fit()
        out["exact"] = _summary(trainer) | {"run": str(run.path)}
        # 2. the reference weights evaluated on the whole validation set, sharded 7 + 6
        trainer.model.load_state_dict(torch.load(job["ref_ckpt"], weights_only=False)["model"])
        out["ref_val"] = trainer.evaluate(trainer.data.val)
        # 3. exact resume under 2 processes (dropout: the per-rank RNG states matter)
        cfg = resolve_config(job["dropout"])
        straight = distributed.make_trainer(cfg, core_dist.create_run_dir("straight", job["runs"], ctx))
        straight.fit()
        out["straight"] = _summary(straight)
        resumed_run = core_dist.create_run_dir("resumed", job["runs"], ctx)

        def stop_after_one(epoch: int, record: dict) -> None:
            if epoch == 1:
                raise _Interrupt

        try:
            distributed.make_trainer(cfg, resumed_run, callbacks=[stop_after_one]).fit()
        except _Interrupt:
            pass
        out["interrupted_epoch"] = torch.load(resumed_run.checkpoints / "last.pt", weights_only=False)["epoch"]
        resumed = distributed.make_trainer(cfg, resumed_run)
        resumed.fit(resume=True)
        out["resumed"] = _summary(resumed) | {"run": str(resumed_run.path)}
        # 4. the command lines, as torchrun runs them
        out["train_rc"] = train_cli.main([job["config_file"], "--runs_root", job["cli_runs"]])
        cli_run = ctx.broadcast_object(str(next(Path(job["cli_runs"]).iterdir())) if ctx.is_main else None)
        out["test_rc"] = test_cli.main([cli_run, "--checkpoint", "last"])
        out["cli_run"] = cli_run
    torch.save(out, Path(job["out"]) / f"rank{rank}.pt")


@pytest.mark.slow
def test_two_processes_match_one_process(shd_root, tmp_path, monkeypatch):
    _without_torchrun_env(monkeypatch)
    exact = tiny(shd_root)
    dropout = tiny(shd_root, model={"dropout": 0.3}, train={"scheduler": "cosine", "cosine_t_max": 2})
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(tiny(shd_root, train={"epochs": 1})))

    # the single-process reference (no process group)
    ref_run = RunDir.create("single", root=tmp_path / "single")
    ref = Trainer(resolve_config(exact), ref_run)
    ref.fit()
    assert len(ref.data.train) == 32 and len(ref.data.val) == 13
    ref_val = ref.evaluate(ref.data.val)

    job = {"runs": str(tmp_path / "runs"), "cli_runs": str(tmp_path / "cli"), "out": str(tmp_path),
           "exact": exact, "dropout": dropout, "config_file": str(config_file),
           "ref_ckpt": str(ref_run.checkpoints / "last.pt")}
    torch.multiprocessing.spawn(_worker, args=(2, _free_port(), job), nprocs=2, join=True)
    rank0 = torch.load(tmp_path / "rank0.pt", weights_only=False)
    rank1 = torch.load(tmp_path / "rank1.pt", weights_only=False)

    for got in (rank0, rank1):
        assert got["all_true"] == (True, False)
        assert "the ranks' metric accumulators differ" in got["mismatch"]

    # weights after 8 steps of global batch 8 = the single-process ones (float tolerance: summation order)
    for key, value in ref.model.state_dict().items():
        torch.testing.assert_close(rank0["exact"]["model"][key], value, rtol=1e-4, atol=1e-5, msg=key)
        assert torch.equal(rank0["exact"]["model"][key], rank1["exact"]["model"][key]), key
    for mine, theirs in zip(rank0["exact"]["history"], ref.history, strict=True):
        for key in ("epoch", "train_acc_fs", "train_acc_fr", "val_acc_fs", "val_acc_fr", "val_td50", "val_td90"):
            assert mine[key] == theirs[key], key
        for key in ("train_loss", "val_loss", "train_n_s", "val_n_s"):
            assert mine[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-6), key

    # metrics of the same weights on the same 13 validation samples: equal on both ranks and to one process
    for got in (rank0["ref_val"], rank1["ref_val"]):
        assert got["n_samples"] == 13
        _same_metrics(got, ref_val)

    # rank 0 alone wrote: one run directory per run, one last.pt / best.pt, each epoch logged once
    run = Path(rank0["exact"]["run"])
    assert sorted(p.name for p in (tmp_path / "runs").iterdir()) == sorted(
        [run.name, Path(rank0["resumed"]["run"]).name, *(p.name for p in (tmp_path / "runs").glob("straight-*"))])
    assert len(list((tmp_path / "runs").iterdir())) == 3
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert [r["epoch"] for r in RunDir.open(run).read_log()] == [1, 2]
    state = torch.load(run / "checkpoints" / "last.pt", weights_only=False)
    assert state["world_size"] == 2 and len(state["rng_per_rank"]) == 2
    assert not torch.equal(state["rng_per_rank"][0]["torch"], state["rng_per_rank"][1]["torch"])
    assert torch.equal(state["rng"]["torch"], state["rng_per_rank"][0]["torch"])

    # resume under 2 processes continues exactly
    assert rank0["interrupted_epoch"] == 1
    assert rank0["resumed"]["history"] == rank0["straight"]["history"]
    assert len(rank0["straight"]["history"]) == 2
    for key, value in rank0["straight"]["model"].items():
        assert torch.equal(rank0["resumed"]["model"][key], value), key
    resumed_log = [r for r in RunDir.open(rank0["resumed"]["run"]).read_log() if "epoch" in r]
    assert [r["epoch"] for r in resumed_log] == [1, 2]

    # the command lines: one run directory, one checkpoint pair, the test report of the whole test set
    assert rank0["train_rc"] == rank1["train_rc"] == 0 and rank0["test_rc"] == rank1["test_rc"] == 0
    cli_run = Path(rank0["cli_run"])
    assert [p.name for p in (tmp_path / "cli").iterdir()] == [cli_run.name]
    assert sorted(p.name for p in (cli_run / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    reports = sorted(p for p in (cli_run / "reports").glob("*.json") if "-confusion_" not in p.name)
    assert len(reports) == 1
    ddp_report = json.loads(reports[0].read_text())
    assert [r["event"] for r in RunDir.open(cli_run).read_log() if "event" in r] == ["test"]
    raw = RunDir.open(cli_run).read_config()
    raw["eval"]["plots"] = False
    single = evaluate_run(raw, RunDir.open(cli_run), "last")
    assert ddp_report["metrics"]["n_samples"] == N_TEST == single["metrics"]["n_samples"]
    _same_metrics(ddp_report["metrics"], single["metrics"])
    rasters = sorted(p.name for p in (cli_run / "plots").rglob("raster-*.png"))
    assert len(rasters) == 2 * 2  # 2 samples x (hidden1, output), gathered from both ranks


# --------------------------------------------------------------------------------------------- torch.compile
@pytest.mark.slow
def test_compiled_training_step_equals_eager(shd_root, monkeypatch):
    """``train.compile`` (aot_eager backend: dynamo + AOT autograd, no C++ build) gives eager's loss and step."""
    _without_torchrun_env(monkeypatch)
    raw = tiny(shd_root, train={"epochs": 1, "max_batches": 1})
    eager = distributed.make_trainer(resolve_config(raw), None)
    eager_summary = eager.fit()
    raw["train"].update({"compile": True, "compile_backend": "aot_eager"})
    compiled = distributed.make_trainer(resolve_config(raw), None)
    assert compiled.forward_module is not compiled.model
    compiled_summary = compiled.fit()
    assert compiled_summary["last"]["train_loss"] == pytest.approx(eager_summary["last"]["train_loss"], rel=1e-6)
    for key, value in eager.model.state_dict().items():
        torch.testing.assert_close(compiled.model.state_dict()[key], value, rtol=1e-5, atol=1e-6, msg=key)


# --------------------------------------------------------------------------------------------- torchrun
@pytest.mark.slow
def test_torchrun_command_line(shd_root, tmp_path):
    """The real entry point: ``torchrun --nproc_per_node 2 train.py`` trains into one run directory."""
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed next to the Python interpreter")
    config_file = tmp_path / "tiny.yaml"
    config_file.write_text(yaml.safe_dump(tiny(shd_root, train={"epochs": 1})))
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env["OMP_NUM_THREADS"] = "1"
    proc = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", "--rdzv_backend", "c10d", "--rdzv_endpoint", f"127.0.0.1:{_free_port()}",
         "train.py", str(config_file), "--runs_root", str(tmp_path / "runs")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((tmp_path / "runs").iterdir())
    assert len(runs) == 1
    assert proc.stdout.count("run_dir:") == 1 and proc.stdout.strip().endswith(f"run_dir: {runs[0]}")
    assert sorted(p.name for p in (runs[0] / "checkpoints").iterdir()) == ["best.pt", "last.pt"]
    assert [r["epoch"] for r in RunDir.open(runs[0]).read_log()] == [1]
