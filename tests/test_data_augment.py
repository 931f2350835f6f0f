"""``augment: {channel_shift, time_shift}``: random integer shifts of the training frames only."""

from __future__ import annotations

import pytest
import torch

from sjframe.data import build_dataset
from sjframe.data.frames import _shift, parse_augment
from sjframe.data.writers import random_dataset_files


def test_shift_moves_and_zero_fills():
    x = torch.arange(1.0, 13.0).view(3, 4)
    assert torch.equal(_shift(x, 1, 1), torch.tensor([[0.0, 1, 2, 3], [0, 5, 6, 7], [0, 9, 10, 11]]))
    assert torch.equal(_shift(x, -2, 1), torch.tensor([[3.0, 4, 0, 0], [7, 8, 0, 0], [11, 12, 0, 0]]))
    assert torch.equal(_shift(x, 1, 0), torch.cat([torch.zeros(1, 4), x[:2]]))
    assert torch.equal(_shift(x, 5, 1), torch.zeros(3, 4))
    assert _shift(x, 0, 0) is x


def test_train_split_only_and_shifted_copies(tmp_path):
    root = random_dataset_files("spoken_digits", tmp_path, n_train=12, n_test=4)
    common = {"root": str(root), "T": 20, "T_empty": 5, "dt": 50.0, "val_split": {"fraction": 0.25, "by": "random"}}
    plain = build_dataset("spoken_digits", "train", **common)
    aug = {"channel_shift": 3, "time_shift": 2}
    train = build_dataset("spoken_digits", "train", **common, augment=aug)
    assert (train.channel_shift, train.time_shift) == (3, 2)
    for split in ("val", "test"):
        ds = build_dataset("spoken_digits", split, **common, augment=aug)
        assert (ds.channel_shift, ds.time_shift) == (0, 0)
        torch.manual_seed(1)
        a = ds[0][0]
        torch.manual_seed(2)
        assert torch.equal(a, ds[0][0])
    x0 = plain[0][0]
    torch.manual_seed(0)
    seen = set()
    for _ in range(30):
        x, y = train[0]
        assert x.shape == x0.shape and y == plain[0][1]
        assert x.sum() <= x0.sum()  # what leaves the window is dropped, nothing is added
        hit = [(c, r) for c in range(-3, 4) for r in range(-2, 3) if torch.equal(x, _shift(_shift(x0, c, 1), r, 0))]
        assert hit
        seen.add(hit[0])
    assert len(seen) > 3
    torch.manual_seed(7)
    a = train[3][0]
    torch.manual_seed(7)
    assert torch.equal(a, train[3][0])  # the draws come from torch's global generator


def test_bad_augment_values():
    assert parse_augment(None) == {"channel_shift": 0, "time_shift": 0}
    assert parse_augment({"time_shift": 2}) == {"channel_shift": 0, "time_shift": 2}
    with pytest.raises(ValueError, match="unknown augment key"):
        parse_augment({"freq_shift": 1})
    with pytest.raises(ValueError, match="channel_shift must be >= 0"):
        parse_augment({"channel_shift": -1})
    with pytest.raises(ValueError, match="augment must be a mapping"):
        parse_augment(3)


@pytest.mark.slow
def test_recipe_config_one_training_step(tmp_path):
    """configs/spoken_digits_adlif_fs_aug.yaml (augment, cosine, select on the validation loss) trains one step."""
    from pathlib import Path

    from sjframe.core.config import load_yaml
    from sjframe.methods.surrogate.config import resolve_config
    from sjframe.methods.surrogate.engine import Trainer

    raw = load_yaml(Path(__file__).resolve().parents[1] / "configs" / "spoken_digits_adlif_fs_aug.yaml")
    root = random_dataset_files("spoken_digits", tmp_path / "sd", n_train=10, n_test=4, events=400, seed=3)
    raw["data"].update({"root": str(root), "T": 16, "T_empty": 2, "val_split": {"fraction": 0.2, "by": "random"}})
    raw["data"]["options"] = {"augment": raw["data"]["options"]["augment"]}  # random files: no variant / classes
    raw["train"].update({"epochs": 1, "batch_size": 2, "test_batch_size": 2, "max_batches": 1, "progress": False})
    raw["threads"] = 1
    raw["runs_root"] = str(tmp_path / "runs")
    cfg = resolve_config(raw)
    trainer = Trainer(cfg, None)
    assert trainer.data.train.channel_shift == 40 and trainer.data.val.channel_shift == 0
    summary = trainer.fit()
    assert torch.isfinite(torch.tensor(summary["last"]["train_loss"]))
