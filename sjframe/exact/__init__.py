"""Exact first-spike-time learning (fastAndDeep, seed 001): analytic LIF spike times and their exact gradients.

* :mod:`sjframe.exact.lambertw`  principal-branch Lambert W in torch (CPU / GPU, vectorised).
* :mod:`sjframe.exact.spiketime` spike times of current-based LIF neurons (tau_m = tau_s via Lambert W,
  tau_m = 2 tau_s in closed form), causal-set search, exact gradients, per-sample clipping.
* :mod:`sjframe.exact.network`   layers with bias spikes and feed-forward networks.
* :mod:`sjframe.exact.loss`      the loss, prediction (earliest label spike) and weight bumping.
* :mod:`sjframe.exact.encoding`  Yin-Yang / MNIST / 16x16 MNIST spike-time encodings.
* :mod:`sjframe.exact.plots`     figures of a run.

The training method is :mod:`sjframe.methods.exact_time` (``method: exact_time`` in a config).
"""

from sjframe.exact.lambertw import lambertw0
from sjframe.exact.loss import WeightBumper, exact_time_loss, predict
from sjframe.exact.network import ExactLayer, ExactTimeNet
from sjframe.exact.spiketime import NEURONS, spike_times

__all__ = ["NEURONS", "ExactLayer", "ExactTimeNet", "WeightBumper", "exact_time_loss", "lambertw0", "predict", "spike_times"]
