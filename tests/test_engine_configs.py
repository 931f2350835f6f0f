"""Every paper Table 1 config builds its model and runs one training step on a small file in its data set's format.

The files are written by the data package's writers (the real HDF5 layouts, random events); the
window is shortened to ``T_in = max(D, 8)`` steps and the batch to 2 samples so that the paper-sized
models run on a CPU in seconds. Everything else (model, neurons, loss, optimiser) is the config's.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from sjframe.core.config import load_yaml
from sjframe.data.writers import random_dataset_files
from sjframe.methods.surrogate.config import resolve_config
from sjframe.methods.surrogate.engine import Trainer

ROOT = Path(__file__).resolve().parents[1]
PAPER = sorted(p for p in (ROOT / "configs").glob("*.yaml")
               if p.stem.split("_")[0] in ("shd", "ntidigits", "dvsgesture", "dvsplane"))


def test_every_table_1_row_has_a_config():
    names = {p.stem for p in PAPER}
    for ds in ("shd", "ntidigits", "dvsgesture", "dvsplane"):
        assert {f"{ds}_culif_mu1", f"{ds}_culif_mu4", f"{ds}_culif_mu12"} <= names
    assert {"shd_adlif", "ntidigits_adlif", "ntidigits_culif_mu8", "dvsplane_culif_mu8"} <= names


def test_paper_hyper_parameters():
    shd = resolve_config(load_yaml(ROOT / "configs" / "shd_culif_mu12.yaml"))
    assert (shd.data.dt, shd.data.T, shd.data.T_empty, shd.data.window("test")) == (10.0, 80, 20, (100, 0))
    n1, n2 = shd.model.options["neuron1"], shd.model.options["neuron2"]
    assert (n1["tau_m_steps"], n1["theta"], n2["tau_m_steps"], n2["theta"]) == (5.0, 5.0, 60.0, 10.0)
    assert (shd.loss.alpha0, shd.loss.D, shd.loss.A, shd.loss.alpha1) == (0.2, 16, 200.0, 20.0)
    assert (shd.train.lr, shd.train.epochs, shd.train.batch_size, shd.train.grad_clip) == (1e-3, 80, 128, 10.0)
    gesture = resolve_config(load_yaml(ROOT / "configs" / "dvsgesture_culif_mu12.yaml"))
    assert gesture.data.window("train") == (120, 40) and gesture.data.window("test") == (250, 0)
    assert gesture.model.options["neuron2"]["tau_m_steps"] == 60.0
    plane = resolve_config(load_yaml(ROOT / "configs" / "dvsplane_culif_mu8.yaml"))
    assert plane.data.window("test") == (120, 0) and plane.model.options["neuron2"]["tau_s_steps"] == 40.0
    adlif = resolve_config(load_yaml(ROOT / "configs" / "ntidigits_adlif.yaml"))
    assert adlif.model.options["neuron_type"] == "adlif" and adlif.data.dt == 5.0


@pytest.fixture(scope="module")
def data_roots(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("paper_data")
    return {name: random_dataset_files(name, base / name, n_train=10, n_test=4, events=400, seed=3)
            for name in ("shd", "ntidigits", "dvsgesture", "dvsplane")}


@pytest.mark.slow
@pytest.mark.parametrize("path", PAPER, ids=[p.stem for p in PAPER])
def test_one_training_step(path, data_roots):
    raw = load_yaml(path)
    T_in = max(raw["loss"]["D"], 8)
    raw["data"].update({"root": str(data_roots[raw["data"]["name"]]), "T": T_in - 2, "T_empty": 2,
                        "val_fraction": 0.2})
    raw["train"].update({"epochs": 1, "batch_size": 2, "test_batch_size": 2, "max_batches": 1, "progress": False})
    raw["threads"] = 1
    cfg = resolve_config(raw)
    trainer = Trainer(cfg, None)
    trainer.data.val = torch.utils.data.Subset(trainer.data.val, [0])  # one validation sample is enough here
    before = {k: v.clone() for k, v in trainer.model.state_dict().items()}
    summary = trainer.fit()
    assert torch.isfinite(torch.tensor(summary["last"]["train_loss"]))
    changed = [k for k, v in trainer.model.state_dict().items() if k.endswith("weight") and not torch.equal(v, before[k])]
    assert changed, "no weight changed after one step"
