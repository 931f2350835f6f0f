"""Exact first-spike-time learning (fastAndDeep, seed 001): analytic LIF spike times and their exact gradients.

* :mod:`sjframe.methods.exact_time.lambertw`  principal-branch Lambert W in torch (CPU / GPU, vectorised).
* :mod:`sjframe.methods.exact_time.spiketime` spike times of current-based LIF neurons (tau_m = tau_s via Lambert W,
  tau_m = 2 tau_s in closed form), causal-set search, exact gradients, per-sample clipping.
* :mod:`sjframe.methods.exact_time.network`   layers with bias spikes and feed-forward networks.
* :mod:`sjframe.methods.exact_time.loss`      the loss, prediction (earliest label spike) and weight bumping.
* :mod:`sjframe.methods.exact_time.encoding`  Yin-Yang / MNIST / 16x16 MNIST spike-time encodings.
* :mod:`sjframe.methods.exact_time.plots`     figures of a run.

* :mod:`sjframe.methods.exact_time.settings`  the ``exact_time:`` config section.

The method (``method: exact_time`` in a config) is ``METHOD`` of :mod:`sjframe.methods.exact_time.method`.
"""

from sjframe.methods.exact_time.lambertw import lambertw0
from sjframe.methods.exact_time.loss import WeightBumper, exact_time_loss, predict
from sjframe.methods.exact_time.network import ExactLayer, ExactTimeNet
from sjframe.methods.exact_time.spiketime import NEURONS, spike_times

__all__ = ["NEURONS", "ExactLayer", "ExactTimeNet", "WeightBumper", "exact_time_loss", "lambertw0", "predict", "spike_times"]
