"""Method ``spikeprop``: SpikeProp (Bohte 2002) on XOR or Iris.

Config section ``spikeprop`` (:class:`SpikePropConfig`).

* ``dataset: xor``: the four patterns; bit 1 -> input spike at ``xor_times[1]``, bit 0 -> at
  ``xor_times[0]`` (Bohte: 0 and 6 ms), plus the reference spikes; one output neuron with target
  ``target_correct`` (early) for ``a xor b = 1`` and ``target_wrong`` (late) for 0; predicted 1 when
  it fires before the midpoint of the two targets. "Solved" = all four patterns right.
* ``dataset: iris``: scikit-learn's bundled Iris; each feature coded by ``n_fields`` Gaussian
  receptive fields (ranges from the training split), plus the reference spikes; one output neuron
  per class, target ``target_correct`` for the true class and ``target_wrong`` for the others;
  predicted class = the earliest output spike (silent = never).

Training: mini-batch gradient descent on Bohte's squared spike-time error (exact gradients,
:mod:`sjframe.methods.spikeprop.network`); after each step, neurons silent on more than ``max_silent`` of the
batch get ``bump`` added to their incoming weights. ``last.pt`` every epoch (``resume`` continues),
``best.pt`` by validation accuracy (the training accuracy when there is no validation split).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from tqdm import tqdm

from sjframe.core.rundir import RunDir
from sjframe.core.runtime import load_weights, markdown_table, require_at_least_one
from sjframe.data.toy import load_iris_split, xor_patterns
from sjframe.methods.base import MethodConfig, ToySetMethod
from sjframe.methods.spikeprop.network import SpikePropNet, bump_silent, gaussian_rf_encode, spike_time_loss

__all__ = ["METHOD", "SpikePropConfig", "SpikePropMethod"]

SECTION = "spikeprop"


@dataclass(frozen=True)
class SpikePropConfig(MethodConfig):
    """The ``spikeprop`` config section (times in ms).

    The fields of :class:`~sjframe.methods.base.MethodConfig` (``dataset``, ``test_fraction``,
    ``val_fraction`` and ``device`` redeclared with other defaults) and the ones below.
    """

    dataset: Literal["xor", "iris"] = "xor"
    test_fraction: float = 0.33
    val_fraction: float = 0.0
    device: str = "cpu"
    hidden: list[int] = field(default_factory=lambda: [5])
    n_terminals: int = 16
    delay_min: float = 1.0
    delay_max: float = 16.0
    tau: float = 7.0
    theta: float = 1.0
    t_max: float = 50.0
    dt: float = 0.1
    refine_iters: int = 20
    min_slope: float = 0.1
    w_init: list[float] = field(default_factory=lambda: [0.0, 0.1])
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: float = 0.01
    epochs: int = 300
    batch_size: int = 4
    bump: float = 0.01
    max_silent: float = 0.0
    reference_times: list[float] = field(default_factory=lambda: [0.0])
    xor_times: list[float] = field(default_factory=lambda: [6.0, 0.0])
    n_fields: int = 12
    gamma: float = 1.5
    t_code: float = 10.0
    min_response: float = 0.1
    target_correct: float = 10.0
    target_wrong: float = 16.0
    log_every: int = 10

    def __post_init__(self) -> None:
        if any(h < 1 for h in self.hidden):
            raise ValueError(f"hidden sizes must be >= 1, got {self.hidden!r}")
        if self.n_terminals < 1 or self.delay_max < self.delay_min or self.delay_min < 0:
            raise ValueError("need n_terminals >= 1 and 0 <= delay_min <= delay_max")
        require_at_least_one(self, "epochs", "batch_size", "log_every")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")
        if len(self.w_init) != 2 or self.w_init[0] > self.w_init[1]:
            raise ValueError(f"w_init must be [low, high] with low <= high, got {self.w_init!r}")
        if len(self.xor_times) != 2:
            raise ValueError(f"xor_times must be [time of bit 0, time of bit 1], got {self.xor_times!r}")
        if not self.target_correct < self.target_wrong <= self.t_max:
            raise ValueError("need target_correct < target_wrong <= t_max")



def _delays(conf: SpikePropConfig) -> list[float]:
    return torch.linspace(conf.delay_min, conf.delay_max, conf.n_terminals, dtype=torch.float64).tolist()


def _encode(conf: SpikePropConfig, x: torch.Tensor, x_range: tuple[torch.Tensor, torch.Tensor] | None) -> torch.Tensor:
    if conf.dataset == "xor":
        early_late = torch.tensor(conf.xor_times, dtype=torch.float64)
        t = early_late[x.long()]
    else:
        t = gaussian_rf_encode(x, x_range[0], x_range[1], conf.n_fields, conf.gamma, conf.t_code, conf.min_response)
    ref = torch.tensor(conf.reference_times, dtype=torch.float64).expand(len(x), -1)
    return torch.cat([t, ref], 1)


def _splits(conf: SpikePropConfig) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Encoded input times and labels per split (``xor``: the four patterns are train and test)."""
    if conf.dataset == "xor":
        x, y = xor_patterns()
        t = _encode(conf, x, None)
        return {"train": (t, y), "val": (t[:0], y[:0]), "test": (t, y)}
    raw = {s: load_iris_split(s, conf.test_fraction, conf.val_fraction, conf.split_seed) for s in ("train", "val", "test")}
    x_range = (raw["train"][0].min(0).values, raw["train"][0].max(0).values)
    return {s: (_encode(conf, x, x_range), y) for s, (x, y) in raw.items()}


def _num_outputs(conf: SpikePropConfig) -> int:
    return 1 if conf.dataset == "xor" else 3


def _targets(conf: SpikePropConfig, y: torch.Tensor) -> torch.Tensor:
    if conf.dataset == "xor":
        return torch.where(y[:, None] == 1, conf.target_correct, conf.target_wrong).to(torch.float64)
    t = torch.full((len(y), 3), conf.target_wrong, dtype=torch.float64)
    t[torch.arange(len(y)), y] = conf.target_correct
    return t


def _predict(conf: SpikePropConfig, t_out: torch.Tensor) -> torch.Tensor:
    if conf.dataset == "xor":
        return (t_out[:, 0] < 0.5 * (conf.target_correct + conf.target_wrong)).long()
    return t_out.argmin(1)   # inf (silent) never wins unless all are silent


def _net(conf: SpikePropConfig, n_in: int, device: torch.device, gen: torch.Generator | None) -> SpikePropNet:
    sizes = [n_in, *conf.hidden, _num_outputs(conf)]
    return SpikePropNet(sizes, _delays(conf), tau=conf.tau, theta=conf.theta, t_max=conf.t_max, dt=conf.dt,
                        refine_iters=conf.refine_iters, min_slope=conf.min_slope, w_init=tuple(conf.w_init),
                        generator=gen).to(device)


@torch.no_grad()
def _measure(conf: SpikePropConfig, net: SpikePropNet, t_in: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    if len(y) == 0:
        return {"acc": float("nan"), "loss": float("nan"), "silent_out": float("nan")}
    device = net.layers[0].weight.device
    t_out = net(t_in.to(device))[-1].cpu()
    return {"acc": float((_predict(conf, t_out) == y).float().mean()),
            "loss": float(spike_time_loss(t_out, _targets(conf, y))),
            "silent_out": float((~torch.isfinite(t_out)).float().mean())}


def _train(conf: SpikePropConfig, run: RunDir, device: torch.device, resume: bool) -> None:
    """Train with SpikeProp; logs loss / accuracy, keeps best and last checkpoints, then evaluates."""
    data = _splits(conf)
    t_tr, y_tr = data["train"]
    target_tr = _targets(conf, y_tr)
    gen = torch.Generator().manual_seed(conf.seed)
    net = _net(conf, t_tr.shape[1], device, gen)
    params = list(net.parameters())
    opt = torch.optim.SGD(params, lr=conf.lr) if conf.optimizer == "sgd" else torch.optim.Adam(params, lr=conf.lr)
    start, best = 0, -1.0
    if resume:
        ck = run.load_checkpoint("last.pt")
        net.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        gen.set_state(ck["rng"])
        start, best = ck["epoch"] + 1, ck["best"]
    t0 = time.time()
    for epoch in tqdm(range(start, conf.epochs), desc="SpikeProp", initial=start, total=conf.epochs):
        perm = torch.randperm(len(y_tr), generator=gen)
        total = 0.0
        for k in range(0, len(y_tr), conf.batch_size):
            idx = perm[k:k + conf.batch_size]
            times = net(t_tr[idx].to(device))
            loss = spike_time_loss(times[-1], target_tr[idx].to(device))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"SpikeProp loss is not finite at epoch {epoch}; lower lr or raise min_slope")
            opt.zero_grad()
            loss.backward()
            opt.step()
            for layer, t in zip(net.layers, times):
                bump_silent(layer, t.detach(), conf.bump, conf.max_silent)
            total += float(loss.detach()) * len(idx)
        has_val = len(data["val"][1]) > 0
        if epoch % conf.log_every == 0 or epoch == conf.epochs - 1 or has_val:
            tr = _measure(conf, net, t_tr, y_tr)
            va = _measure(conf, net, *data["val"]) if has_val else tr
            run.log({"epoch": epoch, "train_loss": total / len(y_tr), "train_acc": tr["acc"],
                     "val_acc": va["acc"], "silent_out": tr["silent_out"], "seconds": time.time() - t0})
            score = va["acc"] - 1e-6 * tr["loss"]   # ties broken by the lower training loss
            if score > best:
                best = score
                run.save_checkpoint({"model": net.state_dict(), "epoch": epoch, "val_acc": va["acc"]}, "best.pt")
        run.save_checkpoint({"model": net.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch,
                             "rng": gen.get_state(), "best": best}, "last.pt")


def _evaluate(conf: SpikePropConfig, run: RunDir, device: torch.device, checkpoint: str) -> dict[str, Any]:
    """Train / test accuracy and loss of a saved network, and its output spike times on the test split."""
    ck, path = run.read_checkpoint(checkpoint)
    checkpoint = path.name
    data = _splits(conf)
    net = _net(conf, data["train"][0].shape[1], device, None)
    load_weights(net, ck["model"], f"checkpoint {checkpoint} (the configured network)")
    tr = _measure(conf, net, *data["train"])
    te = _measure(conf, net, *data["test"])
    with torch.no_grad():
        t_out = net(data["test"][0].to(device))[-1].cpu()
    report = {"method": SECTION, "dataset": conf.dataset, "checkpoint": checkpoint, "epoch": ck.get("epoch"),
              "train_acc": tr["acc"], "train_loss": tr["loss"], "test_acc": te["acc"], "test_loss": te["loss"],
              "test_silent_outputs": te["silent_out"]}
    if conf.dataset == "xor":
        report["solved"] = te["acc"] == 1.0
        report["output_times"] = [None if not math.isfinite(v) else round(v, 4) for v in t_out[:, 0].tolist()]
    table = markdown_table(["data set", "checkpoint", "epoch", "train acc", "test acc", "test loss"],
                           [[conf.dataset, checkpoint, report["epoch"], tr["acc"], te["acc"], te["loss"]]])
    if conf.dataset == "xor":
        table += f"\noutput spike times (ms) of the patterns 00, 01, 10, 11: {report['output_times']}\n"
    return run.write_report(f"test-{path.stem}", report, table)


class SpikePropMethod(ToySetMethod):
    """SpikeProp; resumable from ``last.pt``."""

    name = SECTION
    settings = SpikePropConfig
    section = SECTION
    train_loop = staticmethod(_train)
    test_report = staticmethod(_evaluate)


METHOD = SpikePropMethod()
