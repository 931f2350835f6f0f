"""FS / FR coding: the first-spike encoder, losses, output decoders and input encoders."""

from sjframe.coding.decode import (
    SILENT,
    first_spike_steps,
    fr_predict,
    fs_predict,
    fs_spike_predict,
    silent_samples,
    spike_counts,
)
from sjframe.coding.encoders import latency_encode, rate_encode
from sjframe.coding.fs import encoded_times, first_spike_times, first_spike_times_nograd, gaussian_window
from sjframe.coding.losses import fr_loss, fs_loss, logits_nll_loss, rate_ce_loss, spike_count_loss

__all__ = [
    "SILENT",
    "encoded_times",
    "first_spike_steps",
    "first_spike_times",
    "first_spike_times_nograd",
    "fr_loss",
    "fr_predict",
    "fs_loss",
    "fs_predict",
    "fs_spike_predict",
    "gaussian_window",
    "latency_encode",
    "logits_nll_loss",
    "rate_ce_loss",
    "rate_encode",
    "silent_samples",
    "spike_count_loss",
    "spike_counts",
]
