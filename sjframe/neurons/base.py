"""The common part of the sjframe neurons: output type, input checks, backends, the SpikingJelly module base.

Shape convention: ``x_seq`` is time-major ``[T, B, *F]`` (``F`` the feature shape of the layer,
e.g. ``(N,)`` or ``(C, H, W)``); states are ``[B, *F]``; per-neuron parameters broadcast against
``F`` (shape ``F`` or scalar). Time is counted in steps; ``theta`` is the threshold; spikes are
``s_t = H(h_t - theta)`` through ``spike_fn`` (which carries the surrogate / gradient mode).

Every neuron's functional core returns :class:`NeuronOutput` ``(spike_seq [T, B, *F], state_last,
h_seq [T, B, *F])`` where ``h_seq`` is the pre-reset membrane potential (the FS decoder ranks silent
neurons by it).

Every module subclasses :class:`SJNeuron` (a SpikingJelly ``base.MemoryModule``), so
``functional.reset_net``, ``functional.set_step_mode``, monitors and ``to_functional_forward`` work.
States persist across calls until ``reset()``. ``step_mode='m'`` takes ``[T, B, *F]``;
``step_mode='s'`` takes ``[B, *F]`` (one step of the same equations). With ``store_h_seq=True`` the
module keeps the pre-reset potential of its last call in ``self.h_seq`` (``[T, B, *F]``; ``[1, B,
*F]`` in single-step mode) for the first-spike decoder.

Backends: ``torch`` (reference and fused paths), ``cupy`` (the kernels of :mod:`cupy_neurons` on CUDA
tensors, through CuPy), ``cpu`` (the same kernel text built for the CPU: multi-threaded, vectorised, on CPU
tensors) and ``auto`` (``cupy`` on CUDA tensors, ``cpu`` on CPU tensors, chosen per call). Asking for a
kernel backend where it cannot run raises an error naming what is missing; there is no silent fallback to
torch.

Time constants are in **steps** (a decay ``exp(-1/tau)``); convert from ms with
:func:`sjframe.neurons.params.tau_steps`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
from spikingjelly.activation_based import base

from sjframe.spike import GradientSpec, make_spike_fn
from sjframe.spike import localzo as lz
from sjframe.spike.surrogate import Surrogate, surrogate_from_config

__all__ = [
    "BACKENDS",
    "NeuronConfig",
    "NeuronOutput",
    "SJNeuron",
    "check_backend",
    "check_input",
    "check_state",
    "cpu_unavailable_reason",
    "cupy_unavailable_reason",
    "kernel_backend",
    "feature_shape",
    "run_kernel",
    "zero_states",
]

BACKENDS = ("torch", "cupy", "cpu", "auto")


class NeuronOutput(NamedTuple):
    spikes: torch.Tensor
    state: tuple[torch.Tensor, ...]
    h_seq: torch.Tensor


@dataclass(frozen=True)
class NeuronConfig:
    """Config of one group of neuron layers (``neuron1``: feature layers, ``neuron2``: decision layers).

    The keys every neuron has; each neuron's config class extends it with its own (time constants
    in steps, e.g. ``tau_m_steps``) and is registered with the neuron
    (:func:`sjframe.neurons.registry.register_neuron`).

    Attributes:
        theta: firing threshold (> 0).
        surrogate: surrogate of this group (``None``: the model's), a name or ``{name, **params}``.
        gradient: gradient mode of this group (``None``: the model's), ``dense | sparse | localzo``
            or ``{mode, **params}``.
    """

    theta: float = 1.0
    surrogate: str | dict[str, Any] | None = None
    gradient: str | dict[str, Any] | None = None

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if (f.name == "theta" or f.name.startswith("tau_")) and not (math.isfinite(value) and value > 0):
                raise ValueError(f"{f.name} must be a positive finite number, got {value!r}")


# ---------------------------------------------------------------------------------------- checks
def check_input(x_seq: torch.Tensor, name: str = "x_seq") -> None:
    if not isinstance(x_seq, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x_seq).__name__}")
    if x_seq.dim() < 2:
        raise ValueError(f"{name} must be time-major [T, B, ...] with at least 2 dims, got shape {tuple(x_seq.shape)}")
    if not x_seq.is_floating_point():
        raise ValueError(f"{name} must be a floating-point tensor, got dtype {x_seq.dtype}")


def check_state(state: tuple[torch.Tensor, ...], like: torch.Tensor, names: tuple[str, ...]) -> None:
    for name, s in zip(names, state, strict=True):
        if s.shape != like.shape:
            raise ValueError(f"state {name} has shape {tuple(s.shape)}, expected {tuple(like.shape)} (= x_seq[0])")


def zero_states(x_seq: torch.Tensor, n: int) -> tuple[torch.Tensor, ...]:
    return tuple(torch.zeros_like(x_seq[0]) for _ in range(n))


def feature_shape(num_neurons: int | tuple[int, ...] | None, name: str) -> tuple[int, ...]:
    if num_neurons is None:
        raise ValueError(f"{name} needs num_neurons (the feature size, e.g. 256 or (C, H, W))")
    shape = (num_neurons,) if isinstance(num_neurons, int) else tuple(num_neurons)
    if not shape or any((not isinstance(n, int)) or n < 1 for n in shape):
        raise ValueError(f"{name}: num_neurons must be a positive int or tuple of them, got {num_neurons!r}")
    return shape


# ---------------------------------------------------------------------------------------- backends
def cupy_unavailable_reason() -> str | None:
    """None if the cupy backend can run here, else a sentence saying what is missing."""
    if not torch.cuda.is_available():
        return "CUDA is not available (torch.cuda.is_available() is False: no GPU or no CUDA driver)"
    try:
        import cupy  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the install
        return f"CuPy is not installed ({exc}); install cupy-cuda13x (see requirements.txt)"
    return None


def cpu_unavailable_reason() -> str | None:
    """None if the cpu backend can build its kernels here (a host C++ compiler), else a sentence saying why not."""
    from cupy_neurons.build import host_compiler_missing  # local import: only the kernel backends need it

    return host_compiler_missing()


def check_backend(backend: str, who: str) -> None:
    """Unknown names raise ``ValueError``; ``cupy`` / ``cpu`` where they cannot run a one-line ``RuntimeError``
    (``auto`` is checked per call, for the device of its input)."""
    if backend not in BACKENDS:
        raise ValueError(f"{who}: unknown backend {backend!r}; valid: {list(BACKENDS)}")
    reason = {"cupy": cupy_unavailable_reason, "cpu": cpu_unavailable_reason}.get(backend, lambda: None)()
    if reason is not None:
        raise RuntimeError(f"{who}: backend='{backend}' cannot run here: {reason}. Use backend='torch'.")


def _require_cuda(module: Any, x_seq: Any) -> None:
    if isinstance(x_seq, torch.Tensor) and x_seq.device.type != "cuda":
        raise ValueError(f"{type(module).__name__}(backend='cupy'): x_seq must be a CUDA tensor, got device "
                         f"{x_seq.device}; move the model and data to the GPU or use backend='torch'")


def _require_cpu(module: Any, x_seq: Any) -> None:
    if isinstance(x_seq, torch.Tensor) and x_seq.device.type != "cpu":
        raise ValueError(f"{type(module).__name__}(backend='cpu'): x_seq must be a CPU tensor, got device "
                         f"{x_seq.device}; use backend='cupy' or 'auto' on a GPU")


def kernel_backend(backend: str, x_seq: torch.Tensor, who: str) -> str:
    """The backend a call runs: ``torch``, ``cupy`` or ``cpu`` (``auto`` resolved by ``x_seq``'s device).

    ``auto`` picks ``cupy`` for a CUDA tensor and ``cpu`` for a CPU tensor and checks that it can run (a
    ``RuntimeError`` naming what is missing otherwise, no fallback); ``cupy`` / ``cpu`` require a tensor on
    their device (``ValueError``).
    """
    if backend == "auto":
        device = x_seq.device.type if isinstance(x_seq, torch.Tensor) else "cpu"
        if device not in ("cuda", "cpu"):
            raise ValueError(f"{who}(backend='auto'): no kernel backend for tensors on {x_seq.device}; use "
                             "backend='torch'")
        backend = "cupy" if device == "cuda" else "cpu"
        check_backend(backend, f"{who}(backend='auto')")
    return backend


def kernel_gradient_args(surrogate: Any, gradient: Any, generator: Any, x_seq: torch.Tensor,
                         who: str) -> tuple[str, dict[str, Any]]:
    """The surrogate C expression and the ops' LocalZO keyword arguments of a gradient mode.

    Gradient modes, all through the fused kernels (every neuron, every dtype):

    * ``dense``: the surrogate ``g(u)``, ``u = h - theta``;
    * ``sparse`` (S3GD): the surrogate truncated to ``|u| < b_th`` (masked-dense, as the torch
      reference cores; the truly sparse backward is :mod:`sjframe.layers.sparse_linear_lif`);
    * ``localzo``: the LocalZO estimate, its noise from Philox inside the backward kernel. One 64-bit
      key per time step is drawn here from ``generator`` (None: torch's global RNG) exactly as the
      torch reference draws them with ``rng: philox`` (:func:`sjframe.spike.localzo.draw_key`, once
      per step, in step order; here all ``T`` at once by :func:`~sjframe.spike.localzo.draw_keys`,
      the same keys without a device synchronisation), and element ``n`` of step ``t`` uses counter
      ``n`` and key ``t``: given the same seed the kernels and ``backend='torch'`` with ``rng:
      philox`` produce the same noise bit for bit. The kernels always use Philox: ``rng: torch``
      (``torch.rand``) has no kernel twin, so on this backend it is read as ``philox`` (same law,
      another random stream). The noise is not stored: the backward kernel regenerates it from the
      ``T`` keys.
    """
    if gradient is None:
        gradient = GradientSpec()
    if not isinstance(gradient, GradientSpec):
        raise ValueError(f"{who}: gradient must be a sjframe.spike.GradientSpec or None, got "
                         f"{type(gradient).__name__}")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise ValueError(f"{who}: generator must be a torch.Generator or None, got {type(generator).__name__}")
    if gradient.mode != "localzo":
        if not isinstance(surrogate, Surrogate):
            raise ValueError(f"{who}: surrogate must be a sjframe.spike.surrogate.Surrogate, got "
                             f"{type(surrogate).__name__}")
        return gradient.surrogate_for(surrogate).cuda_expr("u"), {}
    # the T keys in one draw, no device synchronisation (draw_keys: bit for bit T draw_key calls); the table cached
    # on the device (no copy per call)
    keys = lz.draw_keys(generator, x_seq.shape[0], x_seq.device)
    table = lz.device_table(gradient.distribution, gradient.delta, gradient.k, x_seq.device)
    zo = {"zo_keys": keys, "zo_table": table, "zo_dist": lz.DIST_CODES[gradient.distribution],
          "zo_samples": int(gradient.samples), "zo_delta": float(gradient.delta)}
    return "0.0f", zo


def run_kernel(name: str, x_seq: torch.Tensor, state: Any, params: dict[str, Any], theta: float,
               surrogate: Surrogate | None, detach_reset: bool = True, gradient: GradientSpec | None = None,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, tuple[torch.Tensor, ...], torch.Tensor]:
    """Neuron kernel ``name`` of :mod:`cupy_neurons` with a surrogate and a gradient mode.

    ``gradient``: dense (None), sparse (the surrogate truncated to the band: masked-dense) or
    localzo (see :func:`kernel_gradient_args`; ``surrogate`` may be None then). Returns the kernel
    entry's ``(spikes, final states, h_seq)``; each neuron's folder wraps them in its state type.
    """
    from cupy_neurons.neurons import run_neuron  # local import: only the cupy backend needs the kernels

    expr, zo = kernel_gradient_args(surrogate, gradient, generator, x_seq, f"{name} kernel")
    return run_neuron(name, x_seq, state, params, theta, expr, detach_reset, zo)


# ---------------------------------------------------------------------------------------- module
class SJNeuron(base.MemoryModule):
    """Common part: surrogate, gradient mode, backend, threshold, reset flags, h_seq storage.

    Args:
        theta: firing threshold (> 0).
        surrogate: name, ``{"name": ..., **params}`` or :class:`Surrogate` (default fast_sigmoid, rho=5).
        gradient: ``dense`` | ``sparse`` | ``localzo`` or a mapping / :class:`GradientSpec`.
        detach_reset: if True (default) the reset does not carry gradient.
        step_mode: ``'m'`` (input ``[T, B, ...]``) or ``'s'`` (input ``[B, ...]``).
        backend: ``'torch'`` (reference), ``'cupy'`` (fused CUDA kernels; needs CUDA + CuPy), ``'cpu'`` (the
            same kernels built for the CPU; needs a C++ compiler) or ``'auto'`` (``cupy`` on CUDA inputs, ``cpu``
            on CPU inputs).
        store_h_seq: keep the pre-reset potential sequence of the last call in ``self.h_seq``.
    """

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
        check_backend(backend, type(self).__name__)
        self.backend = backend
        self.store_h_seq = store_h_seq
        self.h_seq: torch.Tensor | None = None
        for name in self.state_names:
            self.register_memory(name, 0.0)

    def supported_backends(self) -> tuple[str, ...]:
        return BACKENDS

    @classmethod
    def from_config(cls, config: NeuronConfig, shape: int | tuple[int, ...], **common: Any) -> SJNeuron:
        """The layer of feature shape ``shape`` from its neuron group config (the registry calls this).

        ``common``: the module options every neuron takes (surrogate, gradient, backend, store_h_seq,
        step_mode) plus the fixed options of the registration (e.g. ``per_neuron``).
        """
        raise NotImplementedError(f"{cls.__name__} does not define from_config")

    def clamp_decays(self, low: float, high: float) -> None:
        """Clamp this layer's trainable decays to ``[low, high]`` (a no-op for a neuron without any).

        The recurrent FCNet calls it on its hidden layers after every optimiser step.
        """

    def check_kernel_input(self, x_seq: torch.Tensor) -> None:
        """``backend='cupy'``: ``x_seq`` must be a CUDA tensor; ``'cpu'``: a CPU tensor (``ValueError`` naming the
        layer otherwise)."""
        if self.backend == "cpu":
            _require_cpu(self, x_seq)
        else:
            _require_cuda(self, x_seq)

    def uses_kernels(self, x_seq: torch.Tensor) -> bool:
        """Whether this call runs the :mod:`cupy_neurons` kernels (backend ``cupy``, ``cpu``, or ``auto``), after
        checking that they can run on ``x_seq``'s device (:func:`kernel_backend`)."""
        backend = kernel_backend(self.backend, x_seq, type(self).__name__)
        if backend == "torch":
            return False
        if backend == "cupy":
            _require_cuda(self, x_seq)
        else:
            _require_cpu(self, x_seq)
        return True

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
