"""ANN-to-SNN conversion: threshold balancing by max activation / percentile (Diehl 2015) and spike-norm (Sengupta 2019).

Pipeline:

1. :func:`build_ann` makes a ReLU network **without biases** (``mlp``: Flatten-[FC-ReLU]*-FC;
   ``cnn``: the seed's 12C5-AP2-64C5-AP2-FC, 5x5 convolutions with padding 2 so that 8x8 inputs fit),
   trained by :func:`train_ann` (Adam, cross-entropy).
2. :func:`convert` appends a ReLU to the output (so the output layer spikes too and the class is
   read from spike counts) and runs SpikingJelly's ``ann2snn.Converter`` with its
   ``RateCodingRecipe``: every ``ReLU`` becomes ``VoltageScaler(1/lambda) -> IFNode(v_th = 1) ->
   VoltageScaler(lambda)``. With binary spikes this is an IF neuron of threshold
   ``lambda_l / lambda_{l-1}`` on the unscaled weights: Diehl's layer-wise weight / threshold
   balancing, with ``lambda_l`` the maximum (``balancing="max"``) or the ``percentile``-th
   percentile (``balancing="percentile"``) of layer ``l``'s ReLU activations on the calibration
   data (SpikingJelly's ``VoltageHook``, over all activations of the batch; several calibration
   batches are averaged with momentum, so pass the calibration set as one batch for the exact
   statistic).
3. ``balancing="spike_norm"`` (Sengupta 2019) ignores the ANN activations: layer by layer
   (``l = 1..L``), it runs the SNN (layers ``< l`` already balanced) on encoded calibration inputs
   for ``spike_norm_steps`` steps and sets ``lambda_l`` to the maximum input current that layer
   ``l``'s neurons received (times ``spike_norm_scale``), i.e. the binary-spike threshold
   ``theta_l = max_t,b,n (W_l s_{l-1})``.
4. :func:`simulate` runs the SNN for ``T_max`` steps with signed-Bernoulli input spikes
   (``s = sign(x) * [u < |x|]``) or constant current (``x`` every step), counts output spikes and
   returns the accuracy after each requested number of steps.

Neurons (SpikingJelly ``IFNode``): ``v += I``; spike when ``v >= 1``; reset by subtraction
(``reset="subtract"``, default) or to zero (``reset="zero"``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from spikingjelly.activation_based import functional as sj_functional
from spikingjelly.activation_based import neuron as sj_neuron
from spikingjelly.activation_based.ann2snn import Converter, RateCodingRecipe
from spikingjelly.activation_based.ann2snn.modules import VoltageScaler
from torch import nn
from tqdm import tqdm

__all__ = [
    "ScalerPair",
    "build_ann",
    "convert",
    "encode_step",
    "evaluate_ann",
    "scaler_pairs",
    "simulate",
    "spike_counts",
    "spike_norm",
    "train_ann_epoch",
]

Balancing = Literal["max", "percentile", "spike_norm"]
Encoding = Literal["bernoulli", "constant"]


def build_ann(
    arch: str, input_shape: tuple[int, ...], num_classes: int, hidden: Sequence[int] = (128,),
    channels: Sequence[int] = (12, 64),
) -> nn.Sequential:
    """A bias-free ReLU network for inputs ``[B, *input_shape]``.

    ``arch="mlp"``: Flatten -> (Linear(h) -> ReLU) for h in ``hidden`` -> Linear(num_classes).
    ``arch="cnn"``: (Conv5x5(c, padding 2) -> ReLU -> AvgPool2) for c in ``channels`` -> Flatten ->
    Linear(num_classes); needs ``input_shape = (C, H, W)`` with H, W divisible by 2**len(channels).
    """
    if arch == "mlp":
        layers: list[nn.Module] = [nn.Flatten()]
        width = math.prod(input_shape)
        for h in hidden:
            layers += [nn.Linear(width, h, bias=False), nn.ReLU()]
            width = h
        layers.append(nn.Linear(width, num_classes, bias=False))
        return nn.Sequential(*layers)
    if arch == "cnn":
        if len(input_shape) != 3:
            raise ValueError(f"arch 'cnn' needs input_shape (C, H, W), got {input_shape!r}")
        c_in, h, w = input_shape
        factor = 2 ** len(channels)
        if h % factor or w % factor:
            raise ValueError(f"arch 'cnn': H and W must be divisible by {factor}, got {input_shape!r}")
        layers = []
        for c in channels:
            layers += [nn.Conv2d(c_in, c, 5, padding=2, bias=False), nn.ReLU(), nn.AvgPool2d(2)]
            c_in = c
        layers += [nn.Flatten(), nn.Linear(c_in * (h // factor) * (w // factor), num_classes, bias=False)]
        return nn.Sequential(*layers)
    raise ValueError(f"unknown arch {arch!r}; valid: ['cnn', 'mlp']")


def train_ann_epoch(
    ann: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, batch_size: int,
    generator: torch.Generator | None = None,
) -> float:
    """One epoch of cross-entropy training on ``x [N, ...]``, ``y [N]`` (shuffled); returns the mean loss."""
    if len(x) != len(y) or len(x) == 0:
        raise ValueError(f"x and y must be non-empty and of equal length, got {len(x)} and {len(y)}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    device = next(ann.parameters()).device
    ann.train()
    perm = torch.randperm(len(x), generator=generator)
    total = 0.0
    for k in range(0, len(x), batch_size):
        idx = perm[k:k + batch_size]
        xb, yb = x[idx].to(device), y[idx].to(device)
        loss = F.cross_entropy(ann(xb), yb)
        if not torch.isfinite(loss):
            raise FloatingPointError("ANN training loss is not finite; lower the learning rate")
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        total += float(loss.detach()) * len(idx)
    ann.eval()
    return total / len(x)


@torch.no_grad()
def evaluate_ann(ann: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024) -> float:
    """Accuracy of ``argmax ann(x)``."""
    ann.eval()
    device = next(ann.parameters()).device
    correct = 0
    for k in range(0, len(x), batch_size):
        correct += int((ann(x[k:k + batch_size].to(device)).argmax(1).cpu() == y[k:k + batch_size]).sum())
    return correct / max(len(x), 1)


def _neuron_factory(reset: str):
    if reset == "subtract":
        return lambda scale: sj_neuron.IFNode(v_threshold=1.0, v_reset=None)
    if reset == "zero":
        return lambda scale: sj_neuron.IFNode(v_threshold=1.0, v_reset=0.0)
    raise ValueError(f"reset must be 'subtract' or 'zero', got {reset!r}")


class ScalerPair:
    """The two ``VoltageScaler`` of one converted layer: ``pre.scale = 1/lambda``, ``post.scale = lambda``."""

    def __init__(self, name: str, pre: VoltageScaler, post: VoltageScaler) -> None:
        self.name, self.pre, self.post = name, pre, post

    @property
    def scale(self) -> float:
        return float(self.post.scale)

    def set_scale(self, value: float) -> None:
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"layer {self.name}: scale must be a positive finite number, got {value!r}")
        self.pre.scale.fill_(1.0 / value)
        self.post.scale.fill_(value)


def scaler_pairs(snn: torch.fx.GraphModule) -> list[ScalerPair]:
    """The converted layers of ``snn`` in execution order."""
    modules = dict(snn.named_modules())
    pairs = []
    for node in snn.graph.nodes:
        if node.op == "call_module" and isinstance(node.target, str) and node.target.endswith(".scaler0"):
            prefix = node.target[: -len(".scaler0")]
            pairs.append(ScalerPair(prefix, modules[f"{prefix}.scaler0"], modules[f"{prefix}.scaler1"]))
    return pairs


def convert(
    ann: nn.Module, calib_x: torch.Tensor, balancing: Balancing = "max", percentile: float = 99.9,
    reset: str = "subtract", encoding: Encoding = "bernoulli", spike_norm_steps: int = 256,
    spike_norm_scale: float = 1.0, generator: torch.Generator | None = None,
) -> torch.fx.GraphModule:
    """Convert a bias-free ReLU ``ann`` into an IF-neuron SNN balanced on ``calib_x [N, ...]``.

    The output layer is made spiking too (a ReLU is appended before conversion). Returns the
    SpikingJelly fx ``GraphModule`` in single-step mode (one call per time step).
    """
    if balancing not in ("max", "percentile", "spike_norm"):
        raise ValueError(f"balancing must be 'max', 'percentile' or 'spike_norm', got {balancing!r}")
    if not 0.0 < percentile <= 100.0:
        raise ValueError(f"percentile must be in (0, 100], got {percentile!r}")
    for m in ann.modules():
        if getattr(m, "bias", None) is not None:
            raise ValueError(f"conversion needs a bias-free ANN; {type(m).__name__} has a bias")
    if not torch.isfinite(calib_x).all():
        raise ValueError("calib_x contains NaN or inf")
    device = next(ann.parameters()).device
    wrapped = nn.Sequential(ann, nn.ReLU()).eval()
    mode = f"{percentile}%" if balancing == "percentile" else "Max"
    recipe = RateCodingRecipe(dataloader=[calib_x.to(device)], mode=mode, fuse_flag=False,
                              neuron_factory=_neuron_factory(reset))
    snn = Converter(recipe, device=device).convert(wrapped)
    snn.eval()
    if balancing == "spike_norm":
        spike_norm(snn, calib_x.to(device), spike_norm_steps, encoding, spike_norm_scale, generator)
    return snn


def encode_step(x: torch.Tensor, encoding: Encoding, generator: torch.Generator | None = None) -> torch.Tensor:
    """One input step: signed Bernoulli spikes ``sign(x) [u < |x|]`` or the constant current ``x``."""
    if encoding == "constant":
        return x
    if encoding == "bernoulli":
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return torch.sign(x) * (u < x.abs()).to(x.dtype)
    raise ValueError(f"encoding must be 'bernoulli' or 'constant', got {encoding!r}")


@torch.no_grad()
def spike_norm(
    snn: torch.fx.GraphModule, calib_x: torch.Tensor, steps: int, encoding: Encoding = "bernoulli",
    scale_factor: float = 1.0, generator: torch.Generator | None = None,
) -> list[float]:
    """Sengupta's spike-norm, layer by layer in place; returns the per-layer scales ``lambda_l``."""
    if steps < 1:
        raise ValueError(f"spike_norm_steps must be >= 1, got {steps!r}")
    if not scale_factor > 0:
        raise ValueError(f"spike_norm_scale must be positive, got {scale_factor!r}")
    pairs = scaler_pairs(snn)
    for pair in pairs:  # layers not yet balanced must not silence the run: start from a huge scale
        pair.set_scale(1.0e30)
    scales = []
    for pair in tqdm(pairs, desc="spike-norm", leave=False):
        seen = {"max": 0.0}

        def hook(module: nn.Module, args: tuple, seen: dict = seen) -> None:
            seen["max"] = max(seen["max"], float(args[0].max()))

        handle = pair.pre.register_forward_pre_hook(hook)
        try:
            sj_functional.reset_net(snn)
            for _ in range(steps):
                snn(encode_step(calib_x, encoding, generator))
        finally:
            handle.remove()
        value = seen["max"] * scale_factor
        if value <= 0:
            raise ValueError(f"spike-norm: layer {pair.name} received no positive input; cannot set its threshold")
        pair.set_scale(value)
        scales.append(value)
    sj_functional.reset_net(snn)
    return scales


@torch.no_grad()
def spike_counts(
    snn: nn.Module, x: torch.Tensor, time_steps: Sequence[int], encoding: Encoding = "bernoulli",
    batch_size: int = 512, generator: torch.Generator | None = None, progress: bool = True,
) -> dict[int, torch.Tensor]:
    """Output spike counts ``[N, C]`` after each number of steps in ``time_steps`` (``x [N, ...]``: ANN inputs)."""
    checkpoints = sorted(set(int(t) for t in time_steps))
    if not checkpoints or checkpoints[0] < 1:
        raise ValueError(f"time_steps must be positive integers, got {list(time_steps)!r}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    pairs = scaler_pairs(snn) if isinstance(snn, torch.fx.GraphModule) else []
    out_scale = pairs[-1].scale if pairs else 1.0   # the output layer's spikes leave it scaled by lambda_L
    device = next((b.device for b in snn.buffers()), torch.device("cpu"))
    out: dict[int, list[torch.Tensor]] = {t: [] for t in checkpoints}
    last = checkpoints[-1]
    for k in tqdm(range(0, len(x), batch_size), desc="SNN", disable=not progress, leave=False):
        xb = x[k:k + batch_size].to(device)
        sj_functional.reset_net(snn)
        counts = None
        for t in range(1, last + 1):
            s = snn(encode_step(xb, encoding, generator))
            counts = s if counts is None else counts + s
            if t in out:
                out[t].append((counts / out_scale).round().cpu())
        sj_functional.reset_net(snn)
    return {t: torch.cat(v) for t, v in out.items()}


def simulate(
    snn: nn.Module, x: torch.Tensor, y: torch.Tensor, time_steps: Sequence[int], encoding: Encoding = "bernoulli",
    batch_size: int = 512, generator: torch.Generator | None = None, progress: bool = True,
) -> dict[int, float]:
    """Accuracy (argmax of output spike counts; ties go to the lowest class index) after each of ``time_steps``."""
    if len(x) != len(y):
        raise ValueError(f"x and y differ in length: {len(x)} and {len(y)}")
    counts = spike_counts(snn, x, time_steps, encoding, batch_size, generator, progress)
    return {t: float((c.argmax(1) == y.cpu()).float().mean()) if len(y) else float("nan") for t, c in counts.items()}
