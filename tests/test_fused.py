"""The fused torch backend equals the autograd reference: outputs, states and every gradient."""

from __future__ import annotations

import pytest
import torch

from sjframe.neurons.adlif import AdLIF, AdLIFState, adlif_multi_step
from sjframe.neurons.adlif.fused import fused_adlif
from sjframe.neurons.culif import CuLIF, CuLIFState, PCuLIF, culif_multi_step
from sjframe.neurons.culif.fused import fused_culif
from sjframe.neurons.lif import LIF, LIFState, lif_multi_step
from sjframe.neurons.lif.fused import fused_lif
from sjframe.spike import make_spike_fn
from sjframe.spike.surrogate import get_surrogate

SURROGATES = [get_surrogate("fast_sigmoid"), get_surrogate("arctan"), get_surrogate("fast_sigmoid", rho=100.0, band=0.2)]
SHAPES = [(1, 1, 1), (7, 3, 5), (13, 2, 3, 4)]


def _weighted_loss(tensors: list[torch.Tensor], gen: torch.Generator) -> torch.Tensor:
    """Random-weighted sum over every output (so every output's gradient path is exercised)."""
    return sum((t * torch.randn(t.shape, generator=gen, dtype=t.dtype)).sum() for t in tensors)


def _compare(ref_fn, fused_fn, inputs: list[torch.Tensor]) -> None:  # noqa: ANN001
    ref_in = [t.clone().requires_grad_() for t in inputs]
    fus_in = [t.clone().requires_grad_() for t in inputs]
    ref_out = ref_fn(*ref_in)
    fus_out = fused_fn(*fus_in)
    for r, f in zip(ref_out, fus_out):
        torch.testing.assert_close(f, r)
    ref_grads = torch.autograd.grad(_weighted_loss(ref_out, torch.Generator().manual_seed(5)), ref_in)
    fus_grads = torch.autograd.grad(_weighted_loss(fus_out, torch.Generator().manual_seed(5)), fus_in)
    for k, (r, f) in enumerate(zip(ref_grads, fus_grads)):
        torch.testing.assert_close(f, r, msg=lambda m, k=k: f"gradient of input {k}: {m}")


def _inputs(shape: tuple[int, ...], n_state: int, n_param: int, per_neuron: bool) -> list[torch.Tensor]:
    T, B, *F = shape
    x = torch.randn(T, B, *F, dtype=torch.float64) * 1.5 + 0.4
    states = [torch.randn(B, *F, dtype=torch.float64) * 0.5 for _ in range(n_state)]
    pshape = tuple(F) if per_neuron else ()
    params = [torch.rand(pshape, dtype=torch.float64) * 0.8 + 0.1 for _ in range(n_param)]
    return [x, *states, *params]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sur", SURROGATES, ids=lambda s: f"{s.name}{s.band}")
@pytest.mark.parametrize("per_neuron", [False, True])
def test_culif(shape, sur, per_neuron) -> None:  # noqa: ANN001
    theta = 0.4
    spike_fn = make_spike_fn(sur)

    def ref(x, v0, i0, lam, gam):  # noqa: ANN001, ANN202
        o = culif_multi_step(x, CuLIFState(v0, i0), lam, gam, theta, spike_fn)
        return [o.spikes, o.h_seq, *o.state]

    def fus(x, v0, i0, lam, gam):  # noqa: ANN001, ANN202
        o = fused_culif(x, CuLIFState(v0, i0), lam, gam, theta, sur)
        return [o.spikes, o.h_seq, *o.state]

    _compare(ref, fus, _inputs(shape, 2, 2, per_neuron))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sur", SURROGATES[:2], ids=lambda s: s.name)
def test_adlif(shape, sur) -> None:  # noqa: ANN001
    theta = 0.4
    spike_fn = make_spike_fn(sur)
    inputs = _inputs(shape, 4, 4, True)
    inputs[4] = (inputs[4] > 0.5).to(torch.float64)  # the carried spike state is 0/1

    def ref(x, v, w, h, s, al, be, a, b):  # noqa: ANN001, ANN202
        o = adlif_multi_step(x, AdLIFState(v, w, h, s), al, be, a, b, theta, spike_fn)
        return [o.spikes, o.h_seq, *o.state]

    def fus(x, v, w, h, s, al, be, a, b):  # noqa: ANN001, ANN202
        o = fused_adlif(x, AdLIFState(v, w, h, s), al, be, a, b, theta, sur)
        return [o.spikes, o.h_seq, *o.state]

    _compare(ref, fus, inputs)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("sur", SURROGATES, ids=lambda s: f"{s.name}{s.band}")
def test_lif(shape, sur) -> None:  # noqa: ANN001
    theta = 0.6
    spike_fn = make_spike_fn(sur)

    def ref(x, h0, x0, beta):  # noqa: ANN001, ANN202
        o = lif_multi_step(x, LIFState(h0, x0), beta, theta, spike_fn)
        return [o.spikes, o.h_seq, *o.state]

    def fus(x, h0, x0, beta):  # noqa: ANN001, ANN202
        o = fused_lif(x, LIFState(h0, x0), beta, theta, sur)
        return [o.spikes, o.h_seq, *o.state]

    _compare(ref, fus, _inputs(shape, 2, 1, False))


@pytest.mark.parametrize(
    ("cls", "kw"),
    [(CuLIF, {}), (PCuLIF, {"per_neuron": True, "num_neurons": 4}), (AdLIF, {"num_neurons": 4}), (LIF, {})],
)
def test_modules_use_fused_path_only_when_exact(cls, kw) -> None:  # noqa: ANN001
    assert cls(**kw).uses_fused_torch
    assert not cls(detach_reset=False, **kw).uses_fused_torch
    assert not cls(gradient="localzo", **kw).uses_fused_torch
    assert cls(gradient="sparse", **kw).effective_surrogate.band == 0.2


def test_fused_forward_compiles_without_graph_break() -> None:
    """``torch.compile`` captures the constant-scalar-parameter forward in one graph (no ``.item()`` break), same numbers."""
    from torch._dynamo.utils import counters

    sur = SURROGATES[0]
    x = torch.randn(9, 3, 5) * 1.5 + 0.4
    lam, gam, beta = torch.tensor(0.8), torch.tensor(0.7), torch.tensor(0.9)
    graphs: list[torch.fx.GraphModule] = []

    def count_graphs(gm: torch.fx.GraphModule, example_inputs: list[torch.Tensor]):  # noqa: ANN202
        graphs.append(gm)
        return gm.forward

    def run(x: torch.Tensor, lam: torch.Tensor, gam: torch.Tensor, beta: torch.Tensor) -> list[torch.Tensor]:
        c = fused_culif(x, None, lam, gam, 0.4, sur)
        lif = fused_lif(x, None, beta, 0.6, sur)
        return [c.spikes, c.h_seq, *c.state, lif.spikes, lif.h_seq, *lif.state]

    torch._dynamo.reset()
    counters.clear()
    try:
        got = torch.compile(run, backend=count_graphs)(x, lam, gam, beta)
        assert dict(counters["graph_break"]) == {} and len(graphs) == 1
    finally:
        torch._dynamo.reset()
    for g, want in zip(got, run(x, lam, gam, beta)):
        assert torch.equal(g, want)
