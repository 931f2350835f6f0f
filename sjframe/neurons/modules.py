"""SpikingJelly modules of the sjframe neurons: thin wrappers around the functional cores.

Every module subclasses SpikingJelly's ``base.MemoryModule``, so ``functional.reset_net``,
``functional.set_step_mode``, monitors and ``to_functional_forward`` work. States persist across
calls until ``reset()``. ``step_mode='m'`` takes ``[T, B, *F]``; ``step_mode='s'`` takes
``[B, *F]`` (one step of the same equations). With ``store_h_seq=True`` the module keeps the
pre-reset potential of its last call in ``self.h_seq`` (``[T, B, *F]``; ``[1, B, *F]`` in
single-step mode) for the first-spike decoder.

Time constants are in **steps** (a decay ``exp(-1/tau)``); convert from ms with
:func:`sjframe.neurons.params.tau_steps`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from spikingjelly.activation_based import base
from torch import nn

from sjframe.neurons import backends
from sjframe.neurons.functional import (
    AdLIFState,
    CuLIFState,
    LIFState,
    NeuronOutput,
    adlif_multi_step,
    culif_multi_step,
    lif_multi_step,
)
from sjframe.neurons.fused import fused_adlif, fused_culif, fused_lif
from sjframe.neurons.params import check_tau, decay, inverse_sigmoid_decay
from sjframe.spike import GradientSpec, make_spike_fn
from sjframe.spike.surrogate import Surrogate, surrogate_from_config

__all__ = ["LIF", "AdLIF", "CuLIF", "PCuLIF", "SJNeuron"]


def _feature_shape(num_neurons: int | tuple[int, ...] | None, name: str) -> tuple[int, ...]:
    if num_neurons is None:
        raise ValueError(f"{name} needs num_neurons (the feature size, e.g. 256 or (C, H, W))")
    shape = (num_neurons,) if isinstance(num_neurons, int) else tuple(num_neurons)
    if not shape or any((not isinstance(n, int)) or n < 1 for n in shape):
        raise ValueError(f"{name}: num_neurons must be a positive int or tuple of them, got {num_neurons!r}")
    return shape


class SJNeuron(base.MemoryModule):
    """Common part: surrogate, gradient mode, backend, threshold, reset flags, h_seq storage.

    Args:
        theta: firing threshold (> 0).
        surrogate: name, ``{"name": ..., **params}`` or :class:`Surrogate` (default fast_sigmoid, rho=5).
        gradient: ``dense`` | ``sparse`` | ``localzo`` or a mapping / :class:`GradientSpec`.
        detach_reset: if True (default) the reset does not carry gradient.
        step_mode: ``'m'`` (input ``[T, B, ...]``) or ``'s'`` (input ``[B, ...]``).
        backend: ``'torch'`` (reference) or ``'cupy'`` (fused CUDA kernels; needs CUDA + CuPy).
        store_h_seq: keep the pre-reset potential sequence of the last call in ``self.h_seq``.
    """

    kind = "base"
    state_names: tuple[str, ...] = ()

    def __init__(
        self,
        theta: float = 1.0,
        surrogate: str | dict[str, Any] | Surrogate | None = None,
        gradient: str | dict[str, Any] | GradientSpec | None = None,
        detach_reset: bool = True,
        step_mode: str = "m",
        backend: str = "torch",
        store_h_seq: bool = False,
    ) -> None:
        super().__init__()
        if not (isinstance(theta, (int, float)) and math.isfinite(theta) and theta > 0):
            raise ValueError(f"{type(self).__name__}: theta must be a positive finite number, got {theta!r}")
        if not isinstance(detach_reset, bool):
            raise ValueError(f"detach_reset must be a bool, got {detach_reset!r}")
        self.theta = float(theta)
        self.surrogate = surrogate_from_config(surrogate)
        self.gradient = GradientSpec.from_config(gradient)
        self.detach_reset = detach_reset
        self.step_mode = step_mode
        backends.check_backend(backend, type(self).__name__)
        self.backend = backend
        self.store_h_seq = store_h_seq
        self.h_seq: torch.Tensor | None = None
        for name in self.state_names:
            self.register_memory(name, 0.0)

    def supported_backends(self) -> tuple[str, ...]:
        return backends.BACKENDS

    # ---------------------------------------------------------------- SpikingJelly hooks
    def materialize_states(self, inputs: tuple, states: tuple, step_mode: str) -> tuple:
        x = inputs[0]
        like = x[0] if step_mode == "m" else x
        out = []
        for name, s in zip(self.state_names, states, strict=True):
            if isinstance(s, torch.Tensor):
                if s.shape != like.shape:
                    raise ValueError(
                        f"{type(self).__name__}: stored state {name} has shape {tuple(s.shape)} but the input "
                        f"step has shape {tuple(like.shape)}; call functional.reset_net(model) between batches"
                    )
                out.append(s)
            else:
                out.append(torch.full_like(like, float(s)))
        return tuple(out)

    def _run(self, x_seq: torch.Tensor, states: tuple) -> NeuronOutput:
        raise NotImplementedError

    def multi_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs: Any) -> tuple:
        out = self._run(inputs[0], states)
        return (out.spikes,), tuple(out.state)

    def single_step_functional_forward(self, inputs: tuple, states: tuple, **kwargs: Any) -> tuple:
        out = self._run(inputs[0].unsqueeze(0), states)
        return (out.spikes[0],), tuple(out.state)

    def _forward_and_store(self, x_seq: torch.Tensor, step_mode: str) -> NeuronOutput:
        states = self.materialize_states((x_seq,), tuple(self._memories.values()), step_mode)
        out = self._run(x_seq if step_mode == "m" else x_seq.unsqueeze(0), states)
        for name, value in zip(self.state_names, out.state, strict=True):
            self._memories[name] = value
        self.h_seq = out.h_seq if self.store_h_seq else None
        return out

    def multi_step_forward(self, x_seq: torch.Tensor) -> torch.Tensor:
        if x_seq.dim() < 2:
            raise ValueError(f"{type(self).__name__} (step_mode='m') expects [T, B, ...], got shape {tuple(x_seq.shape)}")
        return self._forward_and_store(x_seq, "m").spikes

    def single_step_forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._forward_and_store(x, "s").spikes[0]

    def reset(self) -> None:
        super().reset()
        self.h_seq = None

    def spike_fn(self, smooth: bool = False):  # noqa: ANN201 - a callable u -> H(u)
        """Torch reference spike function of this layer (surrogate + gradient mode)."""
        return make_spike_fn(self.surrogate, self.gradient, smooth=smooth)

    @property
    def uses_fused_torch(self) -> bool:
        """True when the torch backend runs the fused (hand-written backward) path.

        That is the case for a detached reset with the ``dense`` or ``sparse`` gradient (the
        surrogate, band-truncated for ``sparse``); otherwise the autograd reference loop runs.
        """
        return self.detach_reset and self.gradient.mode in ("dense", "sparse")

    @property
    def effective_surrogate(self) -> Surrogate:
        """The surrogate the backward differentiates (truncated to the band for ``sparse``)."""
        return self.gradient.surrogate_for(self.surrogate)

    def extra_repr(self) -> str:
        return (
            f"theta={self.theta}, surrogate={self.surrogate.name}{self.surrogate.values}, "
            f"gradient={self.gradient.mode}, detach_reset={self.detach_reset}, "
            f"step_mode={self.step_mode}, backend={self.backend}"
        )


class CuLIF(SJNeuron):
    """Current-based LIF with fixed decays ``lam = exp(-1/tau_m)``, ``gam = exp(-1/tau_s)``.

    Args:
        tau_m: membrane time constant in steps (> 0).
        tau_s: synaptic time constant in steps (> 0).
        (others: see :class:`SJNeuron`)
    """

    kind = "culif"
    state_names = ("v", "i")

    def __init__(self, tau_m: float = 5.0, tau_s: float = 5.0, theta: float = 1.0, **kwargs: Any) -> None:
        super().__init__(theta=theta, **kwargs)
        self.tau_m = check_tau(tau_m, "tau_m")
        self.tau_s = check_tau(tau_s, "tau_s")

    def decays(self) -> tuple[float | torch.Tensor, float | torch.Tensor]:
        return decay(self.tau_m), decay(self.tau_s)

    def _run(self, x_seq: torch.Tensor, states: tuple) -> NeuronOutput:
        lam, gam = self.decays()
        if self.backend == "cupy":
            return backends.cupy_culif(self, x_seq, CuLIFState(*states), lam, gam)
        if self.uses_fused_torch:
            return fused_culif(x_seq, CuLIFState(*states), lam, gam, self.theta, self.effective_surrogate)
        return culif_multi_step(x_seq, CuLIFState(*states), lam, gam, self.theta, self.spike_fn(), self.detach_reset)

    def extra_repr(self) -> str:
        return f"tau_m={self.tau_m} steps, tau_s={self.tau_s} steps, " + super().extra_repr()


class PCuLIF(CuLIF):
    """Parametric CuLIF: ``lam = sigmoid(w_m)``, ``gam = sigmoid(w_s)`` trainable.

    Raw parameters start at ``-log(exp(1/tau) - 1)`` so that ``sigmoid`` gives ``exp(-1/tau)``
    (needs ``tau > 1`` step... any ``tau > 0`` works numerically; the spec's use is ``tau > 1``).

    Args:
        per_neuron: one decay pair per neuron (needs ``num_neurons``) instead of one per layer.
        num_neurons: feature shape ``F`` of the layer (int or tuple), for ``per_neuron``.
    """

    kind = "pculif"

    def __init__(
        self,
        tau_m: float = 5.0,
        tau_s: float = 5.0,
        theta: float = 1.0,
        per_neuron: bool = False,
        num_neurons: int | tuple[int, ...] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(tau_m=tau_m, tau_s=tau_s, theta=theta, **kwargs)
        shape = _feature_shape(num_neurons, "PCuLIF(per_neuron=True)") if per_neuron else ()
        self.per_neuron = per_neuron
        self.w_m = nn.Parameter(torch.full(shape, inverse_sigmoid_decay(self.tau_m)))
        self.w_s = nn.Parameter(torch.full(shape, inverse_sigmoid_decay(self.tau_s)))

    def decays(self) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.sigmoid(self.w_m), torch.sigmoid(self.w_s)

    def extra_repr(self) -> str:
        return f"per_neuron={self.per_neuron}, " + super().extra_repr()


class AdLIF(SJNeuron):
    """Adaptive LIF with per-neuron trainable ``alpha, beta`` (decays) and ``a, b`` in [0, 1].

    Args:
        num_neurons: feature shape ``F`` (int or tuple).
        tau_m: membrane time constant in steps: ``alpha = sigmoid(w_m)`` starts at ``exp(-1/tau_m)``.
        tau_w: adaptation time constant in steps (default 100): ``beta`` starts at ``exp(-1/tau_w)``.
        a, b: initialised U(0, 1); clamped to [0, 1] before every forward (in place, no gradient).
    """

    kind = "adlif"
    state_names = ("v", "w", "h", "s")

    def __init__(
        self,
        num_neurons: int | tuple[int, ...] | None = None,
        tau_m: float = 5.0,
        tau_w: float = 100.0,
        theta: float = 1.0,
        **kwargs: Any,
    ) -> None:
        super().__init__(theta=theta, **kwargs)
        shape = _feature_shape(num_neurons, "AdLIF")
        self.tau_m = check_tau(tau_m, "tau_m")
        self.tau_w = check_tau(tau_w, "tau_w")
        self.w_m = nn.Parameter(torch.full(shape, inverse_sigmoid_decay(self.tau_m)))
        self.w_w = nn.Parameter(torch.full(shape, inverse_sigmoid_decay(self.tau_w)))
        self.a = nn.Parameter(torch.rand(shape))
        self.b = nn.Parameter(torch.rand(shape))

    def clamp_parameters(self) -> None:
        """Keep ``a, b`` in [0, 1] (the original clamps before every forward).

        Only writes when a value is out of range, so that repeated single-step calls within one
        sequence (recurrent layers) do not modify parameters already saved by autograd.
        """
        with torch.no_grad():
            for p in (self.a, self.b):
                if bool((p < 0.0).any()) or bool((p > 1.0).any()):
                    p.clamp_(0.0, 1.0)

    def _run(self, x_seq: torch.Tensor, states: tuple) -> NeuronOutput:
        self.clamp_parameters()
        alpha, beta = torch.sigmoid(self.w_m), torch.sigmoid(self.w_w)
        if self.backend == "cupy":
            return backends.cupy_adlif(self, x_seq, AdLIFState(*states), alpha, beta, self.a, self.b)
        if self.uses_fused_torch:
            return fused_adlif(x_seq, AdLIFState(*states), alpha, beta, self.a, self.b, self.theta,
                               self.effective_surrogate)
        return adlif_multi_step(
            x_seq, AdLIFState(*states), alpha, beta, self.a, self.b, self.theta, self.spike_fn(), self.detach_reset
        )

    def extra_repr(self) -> str:
        return f"tau_m={self.tau_m} steps (init), tau_w={self.tau_w} steps (init), " + super().extra_repr()


class LIF(SJNeuron):
    """LIF of S3GD / LocalZO: ``beta = exp(-1/tau_m)``, subtractive reset, one-step lag.

    Args:
        tau_m: membrane time constant in steps (``beta = exp(-dt / tau_mem)`` with tau_mem in ms
            is ``tau_m = tau_mem / dt`` steps).
    """

    kind = "lif"
    state_names = ("h", "x")

    def __init__(self, tau_m: float = 10.0, theta: float = 1.0, **kwargs: Any) -> None:
        super().__init__(theta=theta, **kwargs)
        self.tau_m = check_tau(tau_m, "tau_m")

    def _run(self, x_seq: torch.Tensor, states: tuple) -> NeuronOutput:
        beta = decay(self.tau_m)
        if self.backend == "cupy":
            return backends.cupy_lif(self, x_seq, LIFState(*states), beta)
        if self.uses_fused_torch:
            return fused_lif(x_seq, LIFState(*states), beta, self.theta, self.effective_surrogate)
        return lif_multi_step(x_seq, LIFState(*states), beta, self.theta, self.spike_fn(), self.detach_reset)

    def extra_repr(self) -> str:
        return f"tau_m={self.tau_m} steps, " + super().extra_repr()
