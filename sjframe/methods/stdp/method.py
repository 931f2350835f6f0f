"""Method ``stdp``: unsupervised Diehl & Cook (2015) STDP learning, label assignment and inference.

Config section ``stdp`` (:class:`StdpConfig`); the network parameters are the nested ``network``
mapping (:class:`sjframe.methods.stdp.network.DiehlCookParams`). Data: scikit-learn's bundled 8x8 digits
(intensities in [0, 1], 64 inputs), stratified train / val / test splits.

Each epoch presents every training sample once with learning on; then the network (frozen) is run
on the training set to assign labels and on the validation set for the accuracy that picks
``best.pt``. ``last.pt`` is written after every epoch (with the RNG state, so ``resume`` continues
exactly). The final report gives the test accuracy of the best checkpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from tqdm import tqdm

from sjframe.core.config import ConfigError
from sjframe.core.rundir import RunDir
from sjframe.core.runtime import load_weights, markdown_table, require_at_least_one
from sjframe.data.toy import load_digits_split
from sjframe.methods.base import MethodConfig, ToySetMethod
from sjframe.methods.stdp.network import DiehlCookNetwork, DiehlCookParams, assign_labels, predict_from_assignments

__all__ = ["METHOD", "StdpConfig", "StdpMethod"]

SECTION = "stdp"


@dataclass(frozen=True)
class StdpConfig(MethodConfig):
    """The ``stdp`` config section: the shared fields of :class:`~sjframe.methods.base.MethodConfig` and the ones below.

    ``train_subset > 0``: learn from only the first that many training samples.
    """

    dataset: Literal["digits"] = "digits"
    epochs: int = 1
    batch_size: int = 4
    eval_batch_size: int = 256
    train_subset: int = 0
    network: DiehlCookParams = field(default_factory=DiehlCookParams)

    def __post_init__(self) -> None:
        require_at_least_one(self, "epochs", "batch_size", "eval_batch_size")
        if self.train_subset < 0:
            raise ValueError(f"train_subset must be >= 0 (0 = all), got {self.train_subset!r}")



def _data(conf: StdpConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = load_digits_split(split, conf.test_fraction, conf.val_fraction, conf.split_seed)
    x = x.flatten(1)
    if x.shape[1] != conf.network.n_input:
        raise ConfigError(f"stdp.network.n_input is {conf.network.n_input} but the {conf.dataset} inputs have "
                          f"{x.shape[1]} values")
    return x, y


@torch.no_grad()
def _counts(net: DiehlCookNetwork, x: torch.Tensor, batch: int, gen: torch.Generator, desc: str) -> torch.Tensor:
    out = [net.present(x[k:k + batch], learn=False, generator=gen).cpu()
           for k in tqdm(range(0, len(x), batch), desc=desc, leave=False)]
    return torch.cat(out) if out else torch.zeros(0, net.params.n_neurons)


def _accuracy(net: DiehlCookNetwork, x: torch.Tensor, y: torch.Tensor, conf: StdpConfig, gen: torch.Generator,
              desc: str) -> float:
    if len(x) == 0:
        return float("nan")
    counts = _counts(net, x, conf.eval_batch_size, gen, desc)
    pred = predict_from_assignments(counts, net.assignments.cpu(), 10)
    return float((pred == y).float().mean())


def _assign(net: DiehlCookNetwork, x: torch.Tensor, y: torch.Tensor, conf: StdpConfig, gen: torch.Generator) -> None:
    counts = _counts(net, x, conf.eval_batch_size, gen, "assign")
    net.assignments.copy_(assign_labels(counts, y, 10).to(net.assignments.device))


def _train(conf: StdpConfig, run: RunDir, device: torch.device, resume: bool) -> None:
    """Learn the excitatory weights with STDP and assign labels (see the module docstring)."""
    x_tr, y_tr = _data(conf, "train")
    if conf.train_subset:
        x_tr, y_tr = x_tr[:conf.train_subset], y_tr[:conf.train_subset]
    x_va, y_va = _data(conf, "val")
    gen = torch.Generator().manual_seed(conf.seed)
    net = DiehlCookNetwork(conf.network, gen).to(device)
    start, best = 0, -1.0
    if resume:
        ck = run.load_checkpoint("last.pt")
        net.load_state_dict(ck["model"])
        gen.set_state(ck["rng"])
        start, best = ck["epoch"] + 1, ck["best_val"]
    for epoch in range(start, conf.epochs):
        t0 = time.time()
        perm = torch.randperm(len(x_tr), generator=gen)
        total = 0.0
        bar = tqdm(range(0, len(x_tr), conf.batch_size), desc=f"STDP epoch {epoch}", leave=False)
        for k in bar:
            idx = perm[k:k + conf.batch_size]
            total += float(net.present(x_tr[idx], learn=True, generator=gen).sum())
        _assign(net, x_tr, y_tr, conf, gen)
        val_acc = _accuracy(net, x_va, y_va, conf, gen, "val")
        record = {"epoch": epoch, "val_acc": val_acc, "train_spikes_per_sample": total / len(x_tr),
                  "theta_mean": float(net.theta.mean()), "assigned": int((net.assignments >= 0).sum()),
                  "seconds": time.time() - t0}
        run.log(record)
        tqdm.write(f"[stdp] epoch {epoch}: val acc {val_acc:.4f}, {record['seconds']:.1f} s")
        ck = {"model": net.state_dict(), "epoch": epoch, "val_acc": val_acc, "rng": gen.get_state()}
        if val_acc > best or len(x_va) == 0:
            best = val_acc
            run.save_checkpoint({**ck, "best_val": best}, "best.pt")
        run.save_checkpoint({**ck, "best_val": best}, "last.pt")


def _evaluate(conf: StdpConfig, run: RunDir, device: torch.device, checkpoint: str) -> dict[str, Any]:
    """Test accuracy of a saved network (its stored label assignments); writes ``reports/test-<ckpt>.{json,md}``."""
    ck, path = run.read_checkpoint(checkpoint)
    checkpoint = path.name
    net = DiehlCookNetwork(conf.network).to(device)
    load_weights(net, ck["model"], f"checkpoint {checkpoint} (stdp.network)")
    gen = torch.Generator().manual_seed(conf.seed + 1)
    x_te, y_te = _data(conf, "test")
    assignments = net.assignments.cpu()
    report = {
        "method": SECTION, "checkpoint": checkpoint, "epoch": ck.get("epoch"), "rule": conf.network.rule,
        "n_neurons": conf.network.n_neurons, "val_acc": ck.get("val_acc"),
        "test_acc": _accuracy(net, x_te, y_te, conf, gen, "test"),
        "assigned_per_class": torch.bincount(assignments[assignments >= 0], minlength=10).tolist(),
    }
    table = markdown_table(
        ["rule", "neurons", "checkpoint", "epoch", "val acc", "test acc"],
        [[conf.network.rule, conf.network.n_neurons, checkpoint, report["epoch"], report["val_acc"], report["test_acc"]]],
    )
    _save_weight_plot(net, run)
    print(f"[stdp] test accuracy {report['test_acc']:.4f} ({checkpoint}, epoch {report['epoch']})")
    return run.write_report(f"test-{path.stem}", report, table)


class StdpMethod(ToySetMethod):
    """Unsupervised STDP (Diehl & Cook 2015); resumable from ``last.pt``."""

    name = SECTION
    settings = StdpConfig
    section = SECTION
    train_loop = staticmethod(_train)
    test_report = staticmethod(_evaluate)


METHOD = StdpMethod()


def _save_weight_plot(net: DiehlCookNetwork, run: RunDir) -> None:
    """The learned receptive fields (each neuron's 64 weights as an 8x8 tile)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    w = net.weight.detach().cpu().numpy()
    side = int(round(w.shape[1] ** 0.5))
    if side * side != w.shape[1]:
        return
    n = w.shape[0]
    cols = int(n ** 0.5 + 0.999)
    rows = (n + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(cols, rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k < n:
            ax.imshow(w[k].reshape(side, side), cmap="hot_r")
            ax.set_title(str(int(net.assignments[k])), fontsize=6)
    fig.tight_layout()
    fig.savefig(run.plots / "stdp_weights.png", dpi=80)
    plt.close(fig)
