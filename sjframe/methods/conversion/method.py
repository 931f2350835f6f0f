"""Method ``conversion``: train a bias-free ReLU ANN, convert it to IF neurons, compare accuracies.

Config section ``conversion`` (:class:`ConversionConfig`). Data: scikit-learn's bundled 8x8 digits
(``[N, 1, 8, 8]`` in [0, 1]), stratified train / val / test splits.

``train``: trains the ANN (Adam, cross-entropy), keeping ``best.pt`` by validation accuracy and
``last.pt`` each epoch (``resume`` continues from ``last.pt``), then calls :func:`evaluate`.
``evaluate``: loads the ANN, converts it once per entry of ``balancing`` (``max``, ``percentile``,
``spike_norm``; see :mod:`sjframe.methods.conversion.convert`), runs each SNN on the test set for
``max(time_steps)`` steps and reports the SNN accuracy after every entry of ``time_steps`` beside
the ANN's test accuracy: ``reports/test-<checkpoint>.json`` and the markdown table ``.md``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch

from sjframe.core.rundir import RunDir
from sjframe.core.runtime import load_weights, markdown_table, require_at_least_one
from sjframe.data.toy import load_digits_split
from sjframe.methods.base import MethodConfig, ToySetMethod
from sjframe.methods.conversion.convert import build_ann, convert, evaluate_ann, scaler_pairs, simulate, train_ann_epoch

__all__ = ["METHOD", "ConversionConfig", "ConversionMethod"]

SECTION = "conversion"
BALANCINGS = ("max", "percentile", "spike_norm")


@dataclass(frozen=True)
class ConversionConfig(MethodConfig):
    """The ``conversion`` config section: the fields of :class:`~sjframe.methods.base.MethodConfig` and the ones below."""

    dataset: Literal["digits"] = "digits"
    arch: Literal["cnn", "mlp"] = "cnn"
    hidden: list[int] = field(default_factory=lambda: [128])
    channels: list[int] = field(default_factory=lambda: [12, 64])
    epochs: int = 30
    lr: float = 1.0e-3
    weight_decay: float = 0.0
    batch_size: int = 32
    balancing: list[str] = field(default_factory=lambda: list(BALANCINGS))
    percentile: float = 99.9
    reset: Literal["subtract", "zero"] = "subtract"
    encoding: Literal["bernoulli", "constant"] = "bernoulli"
    time_steps: list[int] = field(default_factory=lambda: [8, 16, 32, 64, 128, 256])
    calib_samples: int = 0
    spike_norm_samples: int = 256
    spike_norm_steps: int = 256
    spike_norm_scale: float = 1.0
    eval_batch_size: int = 512

    def __post_init__(self) -> None:
        unknown = [b for b in self.balancing if b not in BALANCINGS]
        if unknown or not self.balancing:
            raise ValueError(f"balancing must be a non-empty list of {list(BALANCINGS)}, got {self.balancing!r}")
        if not self.time_steps or any(t < 1 for t in self.time_steps):
            raise ValueError(f"time_steps must be a non-empty list of positive integers, got {self.time_steps!r}")
        require_at_least_one(self, "epochs", "batch_size", "spike_norm_samples", "spike_norm_steps",
                                    "eval_batch_size")
        if self.calib_samples < 0:
            raise ValueError(f"calib_samples must be >= 0 (0 = the whole training split), got {self.calib_samples!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be positive, got {self.lr!r}")



def _data(conf: ConversionConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    return load_digits_split(split, conf.test_fraction, conf.val_fraction, conf.split_seed)


def _ann(conf: ConversionConfig, device: torch.device) -> torch.nn.Module:
    return build_ann(conf.arch, (1, 8, 8), 10, conf.hidden, conf.channels).to(device)


def _train(conf: ConversionConfig, run: RunDir, device: torch.device, resume: bool) -> None:
    """Train the ANN, then convert and evaluate (see the module docstring); ``threads`` applies while it runs."""
    x_tr, y_tr = _data(conf, "train")
    x_va, y_va = _data(conf, "val")
    torch.manual_seed(conf.seed)
    gen = torch.Generator().manual_seed(conf.seed)
    ann = _ann(conf, device)
    opt = torch.optim.Adam(ann.parameters(), lr=conf.lr, weight_decay=conf.weight_decay)
    start, best = 0, -1.0
    if resume:
        ck = run.load_checkpoint("last.pt")
        ann.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        gen.set_state(ck["rng"])
        start, best = ck["epoch"] + 1, ck["best_val"]
    for epoch in range(start, conf.epochs):
        t0 = time.time()
        loss = train_ann_epoch(ann, opt, x_tr, y_tr, conf.batch_size, gen)
        val_acc = evaluate_ann(ann, x_va, y_va) if len(x_va) else float("nan")
        run.log({"epoch": epoch, "train_loss": loss, "val_acc": val_acc, "seconds": time.time() - t0})
        ck = {"model": ann.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "val_acc": val_acc,
              "rng": gen.get_state()}
        if val_acc > best or len(x_va) == 0:
            best = val_acc
            run.save_checkpoint({**ck, "best_val": best}, "best.pt")
        run.save_checkpoint({**ck, "best_val": best}, "last.pt")
    print(f"[conversion] ANN trained: best val acc {best:.4f}")


def _evaluate(conf: ConversionConfig, run: RunDir, device: torch.device, checkpoint: str) -> dict[str, Any]:
    """Convert the saved ANN with every balancing and tabulate SNN accuracy against time steps."""
    ck, path = run.read_checkpoint(checkpoint)
    checkpoint = path.name
    ann = _ann(conf, device)
    load_weights(ann, ck["model"], f"checkpoint {checkpoint} (the configured ANN)")
    ann.eval()
    x_tr, _ = _data(conf, "train")
    x_te, y_te = _data(conf, "test")
    ann_acc = evaluate_ann(ann, x_te, y_te)
    gen = torch.Generator(device=device).manual_seed(conf.seed + 1)
    steps = sorted(set(conf.time_steps))
    results: dict[str, dict[int, float]] = {}
    scales: dict[str, list[float]] = {}
    for balancing in conf.balancing:
        calib = x_tr if conf.calib_samples == 0 else x_tr[:conf.calib_samples]
        if balancing == "spike_norm":
            calib = x_tr[:conf.spike_norm_samples]
        snn = convert(ann, calib, balancing, conf.percentile, conf.reset, conf.encoding, conf.spike_norm_steps,
                      conf.spike_norm_scale, gen)
        scales[balancing] = [p.scale for p in scaler_pairs(snn)]
        results[balancing] = simulate(snn, x_te, y_te, steps, conf.encoding, conf.eval_batch_size, gen)
        print(f"[conversion] {balancing}: " + ", ".join(f"T={t}: {a:.4f}" for t, a in results[balancing].items()))
    header = ["T"] + [f"SNN {b}" for b in conf.balancing] + ["ANN"]
    rows = [[t] + [results[b][t] for b in conf.balancing] + [ann_acc] for t in steps]
    table = (f"Test accuracy on {conf.dataset} ({conf.arch} ANN, {conf.encoding} input, reset {conf.reset}): "
             f"SNN after T steps vs the ANN\n\n" + markdown_table(header, rows))
    report = {
        "method": SECTION, "checkpoint": checkpoint, "epoch": ck.get("epoch"), "ann_test_acc": ann_acc,
        "snn_test_acc": {b: {str(t): a for t, a in r.items()} for b, r in results.items()},
        "layer_scales": scales, "encoding": conf.encoding, "reset": conf.reset,
    }
    return run.write_report(f"test-{path.stem}", report, table)


class ConversionMethod(ToySetMethod):
    """ANN-to-SNN conversion; resumable from ``last.pt``."""

    name = SECTION
    settings = ConversionConfig
    section = SECTION
    train_loop = staticmethod(_train)
    test_report = staticmethod(_evaluate)


METHOD = ConversionMethod()
