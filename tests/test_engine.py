"""Engine: one training step per neuron type and loss mode, exact resume, NaN stop, best on validation, test window."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from sjframe.coding import losses
from sjframe.core import runtime
from sjframe.core.rundir import RunDir
from sjframe.data.writers import random_dataset_files
from sjframe.methods.surrogate.config import resolve_config
from sjframe.methods.surrogate.engine import NonFiniteLossError, Trainer
from sjframe.methods.surrogate.evaluation import compute_loss, evaluate_run
from sjframe.models.base import ModelOutput
from tests.conftest import requires_cuda


@pytest.fixture(scope="module")
def shd_root(tmp_path_factory) -> Path:
    """A small SHD data set in the real file layout (random events, 20 classes)."""
    return random_dataset_files("shd", tmp_path_factory.mktemp("shd"), n_train=40, n_test=12, events=300, seed=1)


def tiny(root: Path, **sections) -> dict:
    raw = {
        "threads": 1,
        "data": {"name": "shd", "root": str(root), "T": 10, "T_empty": 2, "dt": 50.0, "val_fraction": 0.25},
        "model": {"name": "fcnet", "hidden_sizes": [16], "dropout": 0.2,
                  "neuron1": {"tau_m_steps": 3, "tau_s_steps": 3, "theta": 0.1},
                  "neuron2": {"tau_m_steps": 3, "tau_s_steps": 3, "theta": 0.1}},
        "train": {"epochs": 3, "batch_size": 8, "test_batch_size": 16, "lr": 1e-2, "progress": False},
        "loss": {"D": 4, "A": 50.0},
    }
    for section, values in sections.items():
        raw[section] = {**raw.get(section, {}), **values} if isinstance(values, dict) else values
    return raw


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("neuron_type", ["culif", "pculif", "pculif_neuron", "adlif", "lif"])
def test_one_training_step_every_neuron_type(shd_root, neuron_type):
    cfg = resolve_config(tiny(shd_root, model={"neuron_type": neuron_type}, train={"epochs": 1, "max_batches": 1}))
    trainer = Trainer(cfg, None)
    before = _params(trainer.model)
    summary = trainer.fit()
    after = trainer.model.state_dict()
    changed = [k for k in before if k.endswith("weight") and not torch.equal(before[k], after[k])]
    assert "fcs.0.weight" in changed and "out_fc.weight" in changed
    record = summary["last"]
    assert record["epoch"] == 1 and torch.isfinite(torch.tensor(record["train_loss"]))
    assert record["val_acc_fs"] is not None and record["val_acc_fr"] is not None


@pytest.mark.parametrize("mode", ["firing_rate", "rate_ce"])
def test_other_loss_modes_train(shd_root, mode):
    cfg = resolve_config(tiny(shd_root, loss={"mode": mode}, train={"epochs": 1, "max_batches": 2}))
    summary = Trainer(cfg, None).fit()
    assert summary["best"]["metric"] == "acc_fr"
    assert summary["last"]["train_loss"] > 0


def test_logits_loss_needs_logits(shd_root):
    cfg = resolve_config(tiny(shd_root, loss={"mode": "logits_nll"}, train={"epochs": 1, "max_batches": 1}))
    with pytest.raises(ValueError, match="logits_nll.*needs logits"):
        Trainer(cfg, None).fit()


def test_compute_loss_adds_spike_count_and_model_regularizer(shd_root):
    class WithRegularizer(torch.nn.Module):
        def regularizer(self, output: ModelOutput) -> torch.Tensor:
            return output.spikes.sum() * 0 + 0.5

    spikes = (torch.rand(6, 2, 3) > 0.5).float()
    out = ModelOutput(spikes=spikes, h=torch.rand(6, 2, 3), layer_spikes={"output": spikes})
    y = torch.tensor([0, 2])
    base = resolve_config({"loss": {"mode": "firing_rate"}})
    plain, t_F = compute_loss(base, torch.nn.Module(), out, y)
    assert t_F.shape == (2, 3)
    reg = resolve_config({"loss": {"mode": "firing_rate", "regularizer_weight": 2.0}})
    torch.testing.assert_close(compute_loss(reg, WithRegularizer(), out, y)[0], plain + 1.0)
    n_s = float(spikes.sum()) / (2 * 3)
    counted = resolve_config({"loss": {"mode": "firing_rate", "spike_count_lambda": 0.5, "spike_count_target": 1.0}})
    torch.testing.assert_close(compute_loss(counted, torch.nn.Module(), out, y)[0],
                               plain + 0.5 * abs(n_s - 1.0), rtol=1e-5, atol=1e-6)


class _Interrupt(Exception):
    pass


def test_resume_continues_exactly(shd_root, tmp_path):
    raw = tiny(shd_root, train={"epochs": 3, "max_batches": 2, "scheduler": "cosine", "cosine_t_max": 2})
    cfg = resolve_config(raw)
    straight = RunDir.create("straight", root=tmp_path)
    ref = Trainer(cfg, straight)
    ref.fit()

    run = RunDir.create("resumed", root=tmp_path)

    def stop_after_one(epoch: int, record: dict) -> None:
        if epoch == 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        Trainer(cfg, run, callbacks=[stop_after_one]).fit()
    assert torch.load(run.checkpoints / "last.pt", weights_only=False)["epoch"] == 1
    resumed = Trainer(resolve_config(run.read_config()), run)
    resumed.fit(resume=True)

    assert resumed.history == ref.history  # every metric of every epoch, bit for bit
    for key, value in ref.model.state_dict().items():
        assert torch.equal(value, resumed.model.state_dict()[key]), key
    assert [r for r in run.read_log() if "epoch" in r] == [r for r in straight.read_log() if "epoch" in r]
    assert len(ref.history) == 3 and ref.history[1] != ref.history[2]


def test_resume_reads_the_checkpoint_onto_the_cpu(shd_root, tmp_path):
    """Resuming on a GPU must not map the checkpoint to the training device: its RNG states have to stay
    CPU ByteTensors (torch.set_rng_state rejects others). A trainer whose device is ``meta`` stands in
    for CUDA (no GPU needed): a checkpoint mapped there could restore neither the weights nor the RNG."""
    cfg = resolve_config(tiny(shd_root, train={"epochs": 1, "max_batches": 1}))
    run = RunDir.create("to_cpu", root=tmp_path)
    Trainer(cfg, run).fit()
    saved = torch.load(run.checkpoints / "last.pt", weights_only=False)
    resumed = Trainer(cfg, run)
    resumed.device = torch.device("meta")
    torch.manual_seed(123)
    resumed.fit(resume=True)  # every epoch is done: only the state is restored
    assert resumed.epoch == 1 and resumed.history == saved["history"]
    assert torch.equal(torch.get_rng_state(), saved["rng"]["torch"])
    for key, value in saved["model"].items():
        assert torch.equal(resumed.model.state_dict()[key], value), key


@requires_cuda
def test_resume_on_cuda(shd_root, tmp_path):
    raw = tiny(shd_root, device="cuda", train={"epochs": 2, "max_batches": 2})
    ref = Trainer(resolve_config(raw), None)
    ref.fit()
    run = RunDir.create("cuda", root=tmp_path)

    def stop_after_one(epoch: int, record: dict) -> None:
        if epoch == 1:
            raise _Interrupt

    with pytest.raises(_Interrupt):
        Trainer(resolve_config(raw), run, callbacks=[stop_after_one]).fit()
    resumed = Trainer(resolve_config(run.read_config()), run)
    resumed.fit(resume=True)
    assert resumed.epoch == 2 and len(resumed.history) == 2
    for key, value in ref.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[key], value, msg=key)


def test_nan_loss_stops_with_clear_error_and_keeps_last_good_checkpoint(shd_root, tmp_path, monkeypatch):
    cfg = resolve_config(tiny(shd_root, train={"epochs": 3, "max_batches": 2}))
    run = RunDir.create("nan", root=tmp_path)
    digests: dict[int, str] = {}

    def remember(epoch: int, record: dict) -> None:
        digests[epoch] = hashlib.sha256((run.checkpoints / "last.pt").read_bytes()).hexdigest()

    real = losses.fs_loss
    calls = {"n": 0}

    def nan_in_epoch_two(*args, **kwargs):
        loss = real(*args, **kwargs)
        if not torch.is_grad_enabled():  # validation batches
            return loss
        calls["n"] += 1
        return loss * float("nan") if calls["n"] == 4 else loss  # epoch 2, batch 2 (2 training batches per epoch)

    monkeypatch.setattr(losses, "fs_loss", nan_in_epoch_two)
    with pytest.raises(NonFiniteLossError, match=r"non-finite loss \(nan\) at epoch 2, batch 1") as info:
        Trainer(cfg, run, callbacks=[remember]).fit()
    assert "last.pt" in str(info.value) and "epoch 1" in str(info.value)
    assert hashlib.sha256((run.checkpoints / "last.pt").read_bytes()).hexdigest() == digests[1]
    state = run.load_checkpoint("last.pt")
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert (run.checkpoints / "best.pt").is_file()
    events = [r for r in run.read_log() if r.get("event") == "non_finite_loss"]
    assert events and events[0]["epoch"] == 2


def test_best_checkpoint_is_chosen_on_validation(shd_root, tmp_path):
    run = RunDir.create("best", root=tmp_path)
    trainer = Trainer(resolve_config(tiny(shd_root, train={"epochs": 3})), run)
    trainer.fit()
    values = [r["val_acc_fs"] for r in trainer.history]
    best_epoch = values.index(max(values)) + 1
    best = run.load_checkpoint("best.pt")
    assert best["epoch"] == best_epoch == trainer.best["epoch"]
    assert not any(k.startswith("test") for r in trainer.history for k in r)  # the test split is never looked at
    assert (run.plots / "training_curves.png").stat().st_size > 0
    assert resolve_config(run.read_config()) == trainer.cfg


def test_evaluation_uses_the_test_window(shd_root, tmp_path):
    run = RunDir.create("window", root=tmp_path)
    raw = tiny(shd_root, train={"epochs": 1, "max_batches": 1}, eval={"raster_samples": 1})
    Trainer(resolve_config(raw), run).fit()
    raw["data"].update({"test_T": 20, "test_T_empty": 0})
    report = evaluate_run(raw, run, "best")
    assert (report["T"], report["T_empty"], report["metrics"]["T"]) == (20, 0, 20)
    assert report["metrics"]["n_samples"] == 12
    saved = json.loads((run.path / "reports" / "test-best-T20-E0.json").read_text())
    assert saved["metrics"]["acc_fs"] == report["metrics"]["acc_fs"]
    text = (run.path / "reports" / "test-best-T20-E0.txt").read_text()
    assert "FS accuracy" in text and "FR accuracy" in text and "td50" in text and "N_s hidden1" in text
    plots = {Path(p).name for p in report["plots"]}
    assert {"raster-output-sample0.png", "raster-hidden1-sample0.png", "first_spike_patterns.png"} <= plots


def test_corrupt_checkpoint_is_a_clear_error(shd_root, tmp_path):
    run = RunDir.create("corrupt", root=tmp_path)
    raw = tiny(shd_root, train={"epochs": 1, "max_batches": 1})
    Trainer(resolve_config(raw), run).fit()
    (run.checkpoints / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match="last.pt could not be read"):
        Trainer(resolve_config(raw), run).fit(resume=True)
    with pytest.raises(FileNotFoundError, match="nothing.pt"):
        evaluate_run(raw, run, "nothing")


def test_multistep_schedule(shd_root):
    cfg = resolve_config(tiny(shd_root, train={"epochs": 3, "max_batches": 1, "scheduler": "multistep",
                                               "milestones": [1, 2], "gamma": 0.5}))
    trainer = Trainer(cfg, None)
    trainer.fit()
    assert [r["lr"] for r in trainer.history] == pytest.approx([1e-2, 5e-3, 2.5e-3])


@pytest.mark.parametrize(("saved", "visible"), [(4, 2), (1, 2), (2, 2)])
def test_cuda_rng_states_restore_on_a_different_gpu_count(monkeypatch, saved, visible):
    """A checkpoint written with ``saved`` visible GPUs resumes with ``visible`` GPUs: the states of the
    devices both have are restored, none past the last visible device (no GPU needed: torch.cuda mocked)."""
    state = runtime.rng_state()  # the CPU states, taken before torch.cuda is mocked
    state["cuda"] = [torch.full((4,), i, dtype=torch.uint8) for i in range(saved)]
    restored = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: visible)

    def set_state(state, index):
        assert index < visible, f"restored the state of device {index} with {visible} visible"
        restored[index] = state

    monkeypatch.setattr(torch.cuda, "set_rng_state", set_state)
    runtime.set_rng_state(state)
    assert sorted(restored) == list(range(min(saved, visible)))
    assert all(int(restored[i][0]) == i for i in restored)


def test_rng_state_of_a_cpu_run_does_not_initialise_cuda(monkeypatch):
    """On a GPU machine a CPU run (CUDA never initialised) saves no CUDA states: reading them would
    initialise CUDA and open a context on the GPU (torch.cuda mocked: no GPU needed)."""
    def refuse() -> list:
        raise AssertionError("CUDA RNG states read in a process that never used CUDA")

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", refuse)
    assert "cuda" not in runtime.rng_state()
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_rng_state_all", lambda: [torch.zeros(4, dtype=torch.uint8)])
    assert len(runtime.rng_state()["cuda"]) == 1


def test_nan_inside_the_forward_pass_stops_with_the_last_good_checkpoint(shd_root, tmp_path):
    cfg = resolve_config(tiny(shd_root, train={"epochs": 3, "max_batches": 2}))
    run = RunDir.create("nan_forward", root=tmp_path)

    def poison(epoch: int, record: dict) -> None:  # after epoch 1's checkpoint: a weight of the hidden layer is NaN
        with torch.no_grad():
            trainer.model.fcs[0].weight[0, 0] = float("nan")

    trainer = Trainer(cfg, run, callbacks=[poison])
    with pytest.raises(NonFiniteLossError, match=r"NaN / inf in the forward pass \(fcs\.0.*at epoch 2, batch 0"
                                                 r".*Last good checkpoint: .*last\.pt \(epoch 1\)"):
        trainer.fit()
    assert run.load_checkpoint("last.pt")["epoch"] == 1
    events = [r for r in run.read_log() if r.get("event") == "non_finite_activation"]
    assert events and events[0]["epoch"] == 2 and events[0]["batch"] == 0 and "fcs.0" in events[0]["tensors"]


def test_nan_in_a_hidden_layer_is_found_without_grad_clip(shd_root, tmp_path):
    # the per-batch check looks at the outputs, the loss and the gradients only; a NaN weight of the first layer
    # silences its neurons (no NaN reaches the outputs) but makes the gradients NaN; the batch is then run again
    # with hooks to name the layer; the optimiser has not stepped (the parameters are those before the batch)
    cfg = resolve_config(tiny(shd_root, train={"epochs": 1, "max_batches": 2, "grad_clip": None}))
    assert cfg.train.grad_clip is None
    trainer = Trainer(cfg, RunDir.create("nan_hidden", root=tmp_path))
    with torch.no_grad():
        trainer.model.fcs[0].weight[0, 0] = float("nan")
    before = {k: v.detach().clone() for k, v in trainer.model.named_parameters()}
    with pytest.raises(NonFiniteLossError, match=r"NaN / inf in the forward pass \(fcs\.0.*at epoch 1, batch 0"):
        trainer.train_epoch(1)
    for key, value in trainer.model.named_parameters():
        torch.testing.assert_close(value.detach(), before[key], equal_nan=True, rtol=0, atol=0, msg=key)


def test_the_diagnosis_rerun_restores_batchnorm_statistics_and_rng(shd_root):
    trainer = Trainer(resolve_config(tiny(shd_root, model={"batchnorm": True})), None)
    assert any("running_mean" in k for k in trainer.model.state_dict())
    trainer.model.train()
    x = torch.rand(12, 4, *trainer.input_shape)
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    rng = torch.get_rng_state()
    assert trainer._diagnose(x) == []
    assert torch.equal(torch.get_rng_state(), rng)
    for key, value in trainer.model.state_dict().items():
        assert torch.equal(value, before[key]), key


def test_huge_but_finite_gradients_are_not_reported_as_non_finite(shd_root):
    # the max-abs norm cannot overflow where a 2-norm would (1e30 squared is inf in float32)
    trainer = Trainer(resolve_config(tiny(shd_root, train={"grad_clip": None})), None)
    for p in trainer.model.parameters():
        p.grad = torch.full_like(p, 1e30)
    assert trainer._grads_finite(None)
    next(iter(trainer.model.parameters())).grad[0] = float("inf")
    assert not trainer._grads_finite(None)
    assert not trainer._grads_finite(torch.tensor(float("nan")))
