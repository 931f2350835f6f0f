"""Evaluation metrics: FS / FR accuracy, silent outputs, spike counts N_s, accuracy-versus-time
curves, td50 / td90, confusion matrices.

Definitions (spec first-spike-coding.md section 4); ``T`` is the evaluation window ``T + T_empty``,
tensors are time-major ``[T, B, ...]``, accuracies and curves are in percent of all samples. The
decoders and the one definition of a *silent* sample (no output spike at any step of the window)
are those of :mod:`sjframe.coding.decode`.

* **N_s** of a layer: ``sum_{t, b, i} S[t, b, i] / (B * n_neurons)``, the average number of spikes
  per neuron per sample over the whole window; the total ``N_s`` sums the hidden and output layers
  (the input is not a layer of ``ModelOutput.layer_spikes``).
* **silent_fraction**: the share (a fraction in ``[0, 1]``, not a percentage) of the samples whose
  output is silent.
* **acc_fs** (the paper's rule, the headline kept for comparison with the paper): full-window
  ``argmin_n t_F`` (:func:`~sjframe.coding.decode.fs_predict`). A silent output still decodes, by
  the rank of its peak potentials as the FS encoder defines, so ``acc_fs`` includes analog readouts
  that cost no spike.
* **acc_fs_spike**: the decision by the first output spike only
  (:func:`~sjframe.coding.decode.fs_spike_predict`): the neuron that spikes first; ties at the same
  first-spike step go to the larger membrane potential ``output.h`` at that step (when the model
  reports ``h``), then to the lowest neuron index; a silent sample is wrong. On a sample that
  spikes the two FS decisions agree except for such ties (the paper's rule takes the lowest index
  there), so ``acc_fs - acc_fs_spike`` is the share of silent samples the paper's rule decodes
  correctly, up to the tie cases.
* **acc_fr**: ``argmax_n`` of the spike counts (:func:`~sjframe.coding.decode.fr_predict`; ties to
  the lowest index); a silent sample makes no rate decision (``fr_predict`` gives ``SILENT = -1``)
  and counts as wrong.
* **FS curve**: ``curve_fs[k] = 100 * #{samples whose first-spike decision is correct and made at
  a step <= k} / #samples`` for the 0-based steps ``k = 0 .. T - 1`` (the decision of
  ``acc_fs_spike``, made at the step of the first output spike: the paper's histogram of
  ``t_F - 1``, cumulated). Its last point equals ``acc_fs_spike``.
* **FR curve**: at every step ``k``, the prediction ``argmax_n sum_{t <= k} S[t, b, n]`` (ties to
  the lowest index) counts as correct when it is the target and its cumulative count is > 0:
  ``curve_fr[k] = 100 * #{correct at k} / #samples``. Its last point equals ``acc_fr``.
* **td(p)**: the first 0-based step ``k`` where ``curve[k] >= p / 100 * max(curve)``; ``None`` if the
  curve is all zero. **Time convention**: a decision at 0-based step ``k`` is reported as ``k``
  steps and ``k * dt`` ms -- the start of the bin in which it was made, i.e. the paper's
  ``t_F - 1`` (so the numbers compare with the published ones and with the 0-based step axis of
  the curve plots); the decision has then seen the input up to ``(k + 1) * dt`` ms. ``td50`` /
  ``td90`` use the FS curve for FS-trained models (``primary="fs"``) and the FR curve otherwise.
* **Confusion matrices** ``confusion_fs`` (first-spike decision) and ``confusion_fr`` (count
  decision): counts ``[C, C + 1]``, row = target class, column = predicted class, the last column
  ``C`` counts the silent samples of each class (``C`` = the number of output neurons).
* **Firing rates**: the spikes per step of the predicted neuron (prediction by the primary
  decoder: ``argmin t_F`` for FS, ``argmax`` counts for FR), and the mean spikes per step of the
  other output neurons, averaged over samples (in Hz as well when ``dt_ms`` is given:
  ``rate * 1000 / dt_ms``).

:class:`EvalAccumulator` keeps only sums and counts, in float64 tensors, so that a distributed
evaluation can all-reduce them (sum) across processes before :meth:`EvalAccumulator.compute`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import torch
from torch import Tensor

from sjframe.coding.decode import SILENT, fr_predict, fs_spike_predict
from sjframe.coding.fs import first_spike_times_nograd
from sjframe.models.base import ModelOutput

__all__ = [
    "EvalAccumulator",
    "confusion_counts",
    "fr_accuracy_curve_counts",
    "fs_accuracy_curve_counts",
    "layer_spike_counts",
    "spike_count",
    "td",
]

PRIMARY = ("fs", "fr")


def _check_spikes(name: str, spikes: Tensor, ndim: int | None = None) -> None:
    if not isinstance(spikes, Tensor):
        raise ValueError(f"{name} must be a tensor, got {type(spikes).__name__}")
    if spikes.dim() < 2 or (ndim is not None and spikes.dim() != ndim):
        raise ValueError(f"{name} must be time-major [T, B, ...], got shape {tuple(spikes.shape)}")
    if spikes.is_floating_point() and bool(torch.isnan(spikes).any()):
        raise ValueError(f"{name} contains NaN values")


def layer_spike_counts(layer_spikes: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """Per layer, ``N_s = sum S / (B * n_neurons)`` (differentiable scalar tensors); spikes ``[T, B, ...]``."""
    out: dict[str, Tensor] = {}
    for name, spikes in layer_spikes.items():
        _check_spikes(f"layer_spikes[{name!r}]", spikes)
        batch, neurons = spikes.shape[1], math.prod(spikes.shape[2:])
        if batch == 0 or neurons == 0:
            raise ValueError(f"layer_spikes[{name!r}] has no samples or no neurons: shape {tuple(spikes.shape)}")
        out[name] = spikes.sum() / (batch * neurons)
    return out


def spike_count(layer_spikes: Mapping[str, Tensor]) -> Tensor:
    """Total ``N_s`` (a differentiable scalar): the sum over layers of :func:`layer_spike_counts`."""
    counts = list(layer_spike_counts(layer_spikes).values())
    if not counts:
        raise ValueError("layer_spikes is empty: no spiking layer to count")
    return torch.stack([c.to(torch.float32) if not c.is_floating_point() else c for c in counts]).sum()


def fs_accuracy_curve_counts(pred: Tensor, step: Tensor, target: Tensor, T: int) -> Tensor:
    """Counts ``[T]`` (float64) of the FS curve of one batch, cumulated over the 0-based steps.

    ``pred`` / ``step`` ``[B]``: the first-spike decision and its 0-based step
    (:func:`~sjframe.coding.decode.fs_spike_predict`; ``SILENT`` / ``T`` for a silent sample).
    ``counts[k] = #{pred == target and step <= k}``, so ``counts[T - 1]`` is the number of samples
    that ``acc_fs_spike`` counts correct.
    """
    ok = (pred == target) & (step < T)
    hist = torch.bincount(step[ok].long(), minlength=T)[:T].to(torch.float64)
    return torch.cumsum(hist, dim=0)


def confusion_counts(pred: Tensor, target: Tensor, num_classes: int) -> Tensor:
    """Counts ``[C, C + 1]`` (float64): row = target, column = prediction, column ``C`` = silent (``SILENT``)."""
    col = torch.where(pred == SILENT, torch.full_like(pred, num_classes), pred)
    flat = target.long() * (num_classes + 1) + col.long()
    counts = torch.bincount(flat, minlength=num_classes * (num_classes + 1))
    return counts.to(torch.float64).view(num_classes, num_classes + 1)


def fr_accuracy_curve_counts(spikes: Tensor, target: Tensor) -> Tensor:
    """Counts ``[T]`` (float64) of the FR curve for one batch: correct by cumulative-count argmax at each step."""
    cum = torch.cumsum(spikes, dim=0)  # [T, B, N]
    best, pred = cum.max(dim=2)  # max returns the first maximal index
    ok = (pred == target.unsqueeze(0)) & (best > 0)
    return ok.sum(dim=1).to(torch.float64)


def td(curve: Tensor | list[float], p: float) -> int | None:
    """First 0-based step where ``curve`` reaches ``p`` percent of its maximum; ``None`` for an all-zero curve."""
    c = torch.as_tensor(curve, dtype=torch.float64)
    if c.dim() != 1 or c.numel() == 0:
        raise ValueError(f"curve must be a non-empty 1-D sequence, got shape {tuple(c.shape)}")
    if not 0 < p <= 100:
        raise ValueError(f"p must be a percentage in (0, 100], got {p!r}")
    peak = float(c.max())
    if not peak > 0:
        return None
    hit = torch.nonzero(c >= p / 100.0 * peak * (1 - 1e-12))
    return int(hit[0, 0])


class EvalAccumulator:
    """Accumulates evaluation metrics batch by batch (see the module docstring for the definitions).

    Args:
        primary: ``"fs"`` (FS-trained: ``acc`` / ``td`` / rates use FS decoding and the FS curve) or
            ``"fr"``.
        dt_ms: the bin width in ms, to report ``td`` and rates in ms / Hz as well (``None``: steps only).

    Use: ``update(output, target, t_F=None, loss=None)`` per batch (``t_F`` is computed from
    ``output.spikes`` / ``output.h`` when not given), then :meth:`compute`. For a distributed run,
    all-reduce (sum) every tensor of :meth:`state_tensors` in place (the order is fixed; every
    process must have seen at least one batch), or gather them and :meth:`load_state_tensors`.
    """

    def __init__(self, primary: str = "fs", dt_ms: float | None = None) -> None:
        if primary not in PRIMARY:
            raise ValueError(f"primary must be one of {PRIMARY}, got {primary!r}")
        if dt_ms is not None and (isinstance(dt_ms, bool) or not isinstance(dt_ms, (int, float)) or not dt_ms > 0):
            raise ValueError(f"dt_ms must be a positive number or None, got {dt_ms!r}")
        self.primary = primary
        self.dt_ms = None if dt_ms is None else float(dt_ms)
        self.T: int | None = None
        self.layer_names: list[str] = []
        self._state: dict[str, Tensor] = {}

    # ------------------------------------------------------------------ state
    def _add(self, key: str, value: Tensor | float, device: torch.device) -> None:
        value = torch.as_tensor(value, dtype=torch.float64, device=device).detach()
        if key in self._state:
            self._state[key] += value.to(self._state[key].device)
        else:
            self._state[key] = value.clone()

    def state_tensors(self) -> dict[str, Tensor]:
        """The live sum / count tensors (float64), keyed in a fixed, sorted order."""
        return {k: self._state[k] for k in sorted(self._state)}

    def load_state_tensors(self, state: Mapping[str, Tensor]) -> None:
        """Replace the sums / counts (e.g. by all-reduced ones); keys must match :meth:`state_tensors`."""
        if set(state) != set(self._state):
            raise ValueError(f"state keys {sorted(state)} do not match the accumulator's {sorted(self._state)}")
        for k, v in state.items():
            if not isinstance(v, Tensor) or v.shape != self._state[k].shape:
                raise ValueError(f"state[{k!r}] must be a tensor of shape {tuple(self._state[k].shape)}")
            self._state[k] = v.detach().to(torch.float64).clone()

    # ----------------------------------------------------------------- update
    def update(self, output: ModelOutput, target: Tensor, t_F: Tensor | None = None,
               loss: Tensor | float | None = None) -> None:
        """Add one batch: ``output`` (a :class:`ModelOutput`), ``target [B]`` class indices."""
        if not isinstance(output, ModelOutput):
            raise ValueError(f"output must be a ModelOutput, got {type(output).__name__}")
        if not isinstance(target, Tensor) or target.dim() != 1 or target.is_floating_point():
            raise ValueError(f"target must be an integer tensor [B], got {target!r}")
        target = target.long()
        B = target.shape[0]
        if output.spikes is None and output.logits is None:
            raise ValueError("output has neither spikes nor logits")
        device = (output.spikes if output.spikes is not None else output.logits).device
        target = target.to(device)
        self._add("n_samples", B, device)
        if loss is not None:
            loss_value = float(loss.detach()) if isinstance(loss, Tensor) else float(loss)
            if not math.isfinite(loss_value):
                raise ValueError(f"loss is not finite: {loss_value}")
            self._add("loss_sum", loss_value * B, device)
            self._add("loss_samples", B, device)
        layers = dict(output.layer_spikes)
        if not layers and output.spikes is not None:
            layers = {"output": output.spikes}
        if layers:
            if not self.layer_names:
                self.layer_names = list(layers)
            elif list(layers) != self.layer_names:
                raise ValueError(f"layer_spikes names {list(layers)} differ from earlier batches' {self.layer_names}")
            for name, spikes in layers.items():
                if not isinstance(spikes, Tensor) or spikes.dim() < 2:
                    _check_spikes(f"layer_spikes[{name!r}]", spikes)  # raises, naming what is wrong
                if spikes.shape[1] != B:
                    raise ValueError(f"layer_spikes[{name!r}] has batch {spikes.shape[1]}, target has {B}")
                neurons = math.prod(spikes.shape[2:])
                if neurons == 0:
                    raise ValueError(f"layer_spikes[{name!r}] has no neurons: shape {tuple(spikes.shape)}")
                # one pass: the sum is NaN iff a spike is NaN. Summed in float32 when that is exact for 0 / 1 spikes
                # (every partial sum an integer below 2^24), else in float64: a float64 sum of float32 values
                # converts each element and took 5x longer (236 vs 48 us for [45, 100, 200], one thread; about
                # 7 % of the default experiment's training time on the cpu backend)
                exact32 = spikes.dtype == torch.float32 and spikes.numel() < 2**24
                total = spikes.detach().sum().double() if exact32 else spikes.detach().sum(dtype=torch.float64)
                if spikes.is_floating_point() and bool(torch.isnan(total)):
                    raise ValueError(f"layer_spikes[{name!r}] contains NaN values")
                self._add(f"n_s_sum/{name}", total / neurons, device)
        if output.logits is not None:
            logits = output.logits
            if logits.dim() != 2 or logits.shape[0] != B:
                raise ValueError(f"logits must be [B, C] with B = {B}, got shape {tuple(logits.shape)}")
            self._add("correct_logits", (logits.argmax(dim=1) == target).sum(), device)
        if output.spikes is not None:
            self._update_spiking(output, target, t_F, device)

    def _update_spiking(self, output: ModelOutput, target: Tensor, t_F: Tensor | None, device: torch.device) -> None:
        spikes = output.spikes.detach()
        _check_spikes("output.spikes", spikes, 3)
        T, B, N = spikes.shape
        if target.shape[0] != B:
            raise ValueError(f"output.spikes has batch {B}, target has {target.shape[0]}")
        if self.T is None:
            self.T = T
        elif T != self.T:
            raise ValueError(f"the window changed between batches: T = {T}, earlier {self.T}")
        if t_F is None:
            if output.h is None:
                raise ValueError("t_F not given and output.h is None: the FS encoder needs the potentials")
            t_F = first_spike_times_nograd(spikes, output.h.detach())
        t_F = t_F.detach()
        if t_F.shape != (B, N):
            raise ValueError(f"t_F must be [B, N] = [{B}, {N}], got shape {tuple(t_F.shape)}")
        if bool((target < 0).any()) or bool((target >= N).any()):
            raise ValueError(f"target holds a class outside [0, {N}) (the output has {N} neurons)")
        pred_fs = torch.argmin(t_F, dim=1)
        pred_spike, step = fs_spike_predict(spikes, None if output.h is None else output.h.detach())
        pred_fr = fr_predict(spikes)
        counts = spikes.sum(dim=0, dtype=torch.float64)  # [B, N]
        self._add("correct_fs", (pred_fs == target).sum(), device)
        self._add("correct_fs_spike", (pred_spike == target).sum(), device)
        self._add("correct_fr", (pred_fr == target).sum(), device)  # a silent output (SILENT) is wrong
        self._add("silent_samples", (pred_fr == SILENT).sum(), device)
        self._add("spiking_samples", B, device)
        self._add("curve_fs_counts", fs_accuracy_curve_counts(pred_spike, step, target, T), device)
        self._add("curve_fr_counts", fr_accuracy_curve_counts(spikes, target), device)
        self._add("confusion_fs_counts", confusion_counts(pred_spike, target, N), device)
        self._add("confusion_fr_counts", confusion_counts(pred_fr, target, N), device)
        # the rates: a silent sample's predicted neuron (argmax of zero counts) has rate 0 either way
        pred = pred_fs if self.primary == "fs" else torch.argmax(counts, dim=1)
        c_pred = counts.gather(1, pred.unsqueeze(1)).squeeze(1)
        others = (counts.sum(dim=1) - c_pred) / (N - 1) if N > 1 else torch.zeros_like(c_pred)
        self._add("rate_pred_sum", (c_pred / T).sum(), device)
        self._add("rate_others_sum", (others / T).sum(), device)

    # ---------------------------------------------------------------- compute
    def compute(self) -> dict:
        """The metrics as plain Python values (percent for accuracies and curves; ``None`` where not defined).

        Keys: ``n_samples``, ``primary`` (the accumulator's ``fs`` / ``fr``, or ``logits`` for a logits readout
        without output spikes), ``loss``, ``acc`` (primary decoding -- ``acc_fs`` or ``acc_fr`` -- or the
        logits' argmax for a non-spiking readout), ``acc_fs`` (the paper's rule), ``acc_fs_spike``
        (first output spike only, silent = wrong), ``acc_fr`` (silent = wrong), ``silent_fraction``
        (fraction in ``[0, 1]``), ``confusion_fs`` / ``confusion_fr`` (``[C][C + 1]`` ints, last
        column silent), ``acc_logits``, ``n_s``, ``n_s_per_layer``,
        ``curve_fs``, ``curve_fr``, ``td50_fs``, ``td90_fs``, ``td50_fr``, ``td90_fr``, ``td50``,
        ``td90`` (primary curve, steps), ``td50_ms``, ``td90_ms``, ``td_curve`` (``"fs"``/``"fr"``),
        ``rate_pred``, ``rate_others`` (spikes per step), ``rate_pred_hz``, ``rate_others_hz``.
        """
        s = {k: v.detach().cpu() for k, v in self._state.items()}
        n = float(s["n_samples"]) if "n_samples" in s else 0.0
        out: dict = {"n_samples": int(n), "primary": self.primary, "T": self.T, "dt_ms": self.dt_ms}
        out["loss"] = float(s["loss_sum"] / s["loss_samples"]) if "loss_sum" in s else None

        def pct(key: str, denom: float) -> float | None:
            return 100.0 * float(s[key]) / denom if key in s and denom > 0 else None

        n_spk = float(s.get("spiking_samples", torch.tensor(0.0)))
        out["acc_fs"] = pct("correct_fs", n_spk)
        out["acc_fs_spike"] = pct("correct_fs_spike", n_spk)
        out["acc_fr"] = pct("correct_fr", n_spk)
        out["silent_fraction"] = float(s["silent_samples"]) / n_spk if "silent_samples" in s and n_spk > 0 else None
        for kind in PRIMARY:
            key = f"confusion_{kind}_counts"
            out[f"confusion_{kind}"] = s[key].round().long().tolist() if key in s else None
        out["acc_logits"] = pct("correct_logits", n)
        if out["acc_logits"] is not None:
            out["acc"] = out["acc_logits"]
            if n_spk == 0:  # a logits readout without output spikes: say so rather than name a spike coding
                out["primary"] = "logits"
        else:
            out["acc"] = out["acc_fs"] if self.primary == "fs" else out["acc_fr"]
        per_layer = {name: float(s[f"n_s_sum/{name}"]) / n for name in self.layer_names if f"n_s_sum/{name}" in s}
        out["n_s_per_layer"] = per_layer if per_layer else None
        out["n_s"] = sum(per_layer.values()) if per_layer else None
        for kind in PRIMARY:
            key = f"curve_{kind}_counts"
            curve = (100.0 * s[key] / n_spk).tolist() if key in s and n_spk > 0 else None
            out[f"curve_{kind}"] = curve
            out[f"td50_{kind}"] = td(curve, 50) if curve else None
            out[f"td90_{kind}"] = td(curve, 90) if curve else None
        out["td_curve"] = self.primary if out[f"curve_{self.primary}"] is not None else None
        out["td50"] = out[f"td50_{self.primary}"]
        out["td90"] = out[f"td90_{self.primary}"]
        for p in ("td50", "td90"):
            out[f"{p}_ms"] = out[p] * self.dt_ms if out[p] is not None and self.dt_ms is not None else None
        for key in ("rate_pred", "rate_others"):
            value = float(s[f"{key}_sum"]) / n_spk if f"{key}_sum" in s and n_spk > 0 else None
            out[key] = value
            out[f"{key}_hz"] = value * 1000.0 / self.dt_ms if value is not None and self.dt_ms is not None else None
        return out
