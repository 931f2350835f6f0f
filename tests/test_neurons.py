"""The torch reference neurons: equations (golden values), gradients, modes, SpikingJelly integration, errors."""

from __future__ import annotations

import math

import pytest
import torch
from spikingjelly.activation_based import functional, layer, monitor

from sjframe.neurons import build_neuron
from sjframe.neurons.adlif import AdLIF, AdLIFState, adlif_multi_step
from sjframe.neurons.culif import CuLIF, CuLIFState, PCuLIF, culif_multi_step
from sjframe.neurons.lif import LIF, LIFState, lif_multi_step
from sjframe.neurons.params import inverse_sigmoid_decay, tau_steps
from sjframe.spike import make_spike_fn
from sjframe.spike.surrogate import get_surrogate

HARD = make_spike_fn("fast_sigmoid")
SMOOTH = make_spike_fn(get_surrogate("sigmoid", alpha=3.0), smooth=True)


# ---------------------------------------------------------------- golden values by hand
def test_culif_golden() -> None:
    # lam = gam = 0.5, theta = 1, one input pulse of 2 at t = 0
    x = torch.tensor([2.0, 0.0, 0.0, 0.0, 0.0]).view(5, 1, 1)
    out = culif_multi_step(x, None, 0.5, 0.5, 1.0, HARD)
    # t0: h=0, I=2 | t1: h=.5*0+.5*2=1 -> spike, v=0, I=1 | t2: h=.5, I=.5, v=.5
    # t3: h=.25+.25=.5, I=.25 | t4: h=.25+.125=.375, I=.125
    assert out.h_seq.flatten().tolist() == [0.0, 1.0, 0.5, 0.5, 0.375]
    assert out.spikes.flatten().tolist() == [0.0, 1.0, 0.0, 0.0, 0.0]
    assert out.state.v.item() == 0.375 and out.state.i.item() == 0.125


def test_adlif_golden() -> None:
    # alpha = 0.5, beta = 0.5, a = 0.5, b = 1, theta = 1; input 4, 0, 0, 0
    x = torch.tensor([4.0, 0.0, 0.0, 0.0]).view(4, 1, 1)
    out = adlif_multi_step(x, None, 0.5, 0.5, 0.5, 1.0, 1.0, HARD)
    # t0: h = .5*0 + .5*(4 - 0) = 2 -> spike, v = 0; w0 = .5*0 + .5*0 + 1*0 = 0
    # t1: h = 0 + .5*(0 - w0) = 0; w1 = 0 + .5*2 + 1*1 = 2
    # t2: h = .5*0 + .5*(0 - 2) = -1; w2 = .5*2 + .5*0 + 0 = 1
    # t3: h = .5*(-1) + .5*(0 - 1) = -1; w3 = .5 + .5*(-1) + 0 = 0
    assert out.h_seq.flatten().tolist() == [2.0, 0.0, -1.0, -1.0]
    assert out.spikes.flatten().tolist() == [1.0, 0.0, 0.0, 0.0]
    assert out.state.w.item() == 0.0 and out.state.v.item() == -1.0


def test_lif_golden_one_step_lag_and_subtractive_reset() -> None:
    # beta = 0.5, theta = 1, inputs 3, 0, 0, 0
    x = torch.tensor([3.0, 0.0, 0.0, 0.0]).view(4, 1, 1)
    out = lif_multi_step(x, None, 0.5, 1.0, HARD)
    # V0 = 0 | V1 = 0 + 3 = 3 -> S1 | V2 = 1.5 - 1 = 0.5 | V3 = 0.25
    assert out.h_seq.flatten().tolist() == [0.0, 3.0, 0.5, 0.25]
    assert out.spikes.flatten().tolist() == [0.0, 1.0, 0.0, 0.0]


# ---------------------------------------------------------------- gradcheck (smooth spikes, float64)
def _rand(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, dtype=torch.float64, requires_grad=True)


def test_gradcheck_culif_pculif() -> None:
    T, B, N = 5, 2, 3
    x, v0, i0 = _rand(T, B, N), _rand(B, N), _rand(B, N)
    lam = torch.rand(N, dtype=torch.float64).mul(0.8).add(0.1).requires_grad_()
    gam = torch.rand(N, dtype=torch.float64).mul(0.8).add(0.1).requires_grad_()

    def f(x, v0, i0, lam, gam):  # noqa: ANN001, ANN202
        out = culif_multi_step(x * 2, CuLIFState(v0, i0), lam, gam, 0.3, SMOOTH, detach_reset=False)
        return out.spikes, out.h_seq, out.state.v, out.state.i

    assert torch.autograd.gradcheck(f, (x, v0, i0, lam, gam))


def test_gradcheck_adlif() -> None:
    T, B, N = 5, 2, 3
    x = _rand(T, B, N)
    state = tuple(_rand(B, N) for _ in range(4))
    params = [torch.rand(N, dtype=torch.float64).mul(0.8).add(0.1).requires_grad_() for _ in range(4)]

    def f(x, v, w, h, s, alpha, beta, a, b):  # noqa: ANN001, ANN202
        out = adlif_multi_step(x * 2, AdLIFState(v, w, h, s), alpha, beta, a, b, 0.3, SMOOTH, detach_reset=False)
        return out.spikes, out.h_seq, *out.state

    assert torch.autograd.gradcheck(f, (x, *state, *params))


def test_gradcheck_lif() -> None:
    T, B, N = 6, 2, 3
    x, h0, x0 = _rand(T, B, N), _rand(B, N), _rand(B, N)
    beta = torch.tensor(0.7, dtype=torch.float64, requires_grad=True)

    def f(x, h0, x0, beta):  # noqa: ANN001, ANN202
        out = lif_multi_step(x, LIFState(h0, x0), beta, 0.3, SMOOTH, detach_reset=False)
        return out.spikes, out.h_seq, out.state.h

    assert torch.autograd.gradcheck(f, (x, h0, x0, beta))


# ---------------------------------------------------------------- the spec's BPTT recurrences (detached reset)
def test_culif_backward_matches_spec_recurrence() -> None:
    """Autograd through the Heaviside + surrogate equals the spec's hand-written backward (section 1)."""
    torch.manual_seed(1)
    T, B, N = 12, 3, 4
    sur = get_surrogate("fast_sigmoid")
    x = (torch.randn(T, B, N, dtype=torch.float64) * 1.5).requires_grad_()
    lam = torch.rand(N, dtype=torch.float64).mul(0.8).add(0.1).requires_grad_()
    gam = torch.rand(N, dtype=torch.float64).mul(0.8).add(0.1).requires_grad_()
    theta = 0.5
    out = culif_multi_step(x, None, lam, gam, theta, make_spike_fn(sur))
    gs, gh = torch.randn(T, B, N, dtype=torch.float64), torch.randn(T, B, N, dtype=torch.float64)
    gv, gI = torch.randn(B, N, dtype=torch.float64), torch.randn(B, N, dtype=torch.float64)
    loss = (out.spikes * gs).sum() + (out.h_seq * gh).sum() + (out.state.v * gv).sum() + (out.state.i * gI).sum()
    dx, dlam, dgam = torch.autograd.grad(loss, (x, lam, gam))

    with torch.no_grad():
        h, s = out.h_seq, out.spikes
        zero = torch.zeros(B, N, dtype=torch.float64)
        cur, i_prev = [], zero
        for t in range(T):  # I_t
            i_prev = gam * i_prev + x[t]
            cur.append(i_prev)
        v = h * (1 - s)
        dx_ref = torch.zeros_like(x)
        dlam_ref = torch.zeros(N, dtype=torch.float64)
        dgam_ref = torch.zeros(N, dtype=torch.float64)
        dh_next = dI_next = None
        for t in reversed(range(T)):
            last = t == T - 1
            dv = gv if last else lam * dh_next
            dI = gI if last else gam * dI_next + (1 - lam) * dh_next
            dh = dv * (1 - s[t]) + gs[t] * sur.derivative(h[t] - theta) + gh[t]
            dx_ref[t] = dI
            v_prev = v[t - 1] if t > 0 else zero
            i_before = cur[t - 1] if t > 0 else zero
            dlam_ref += ((v_prev - i_before) * dh).sum(0)
            dgam_ref += (i_before * dI).sum(0)
            dh_next, dI_next = dh, dI
    torch.testing.assert_close(dx, dx_ref)
    torch.testing.assert_close(dlam, dlam_ref)
    torch.testing.assert_close(dgam, dgam_ref)


# ---------------------------------------------------------------- modules
MODULES = [
    (CuLIF, {"tau_m": 4.0, "tau_s": 3.0}),
    (PCuLIF, {"tau_m": 4.0, "tau_s": 3.0}),
    (PCuLIF, {"tau_m": 4.0, "tau_s": 3.0, "per_neuron": True, "num_neurons": 6}),
    (AdLIF, {"num_neurons": 6, "tau_m": 4.0}),
    (LIF, {"tau_m": 4.0}),
]


@pytest.mark.parametrize(("cls", "kw"), MODULES)
def test_single_step_equals_multi_step_and_state_persists(cls, kw) -> None:  # noqa: ANN001
    torch.manual_seed(0)
    m = cls(theta=0.4, **kw)
    x = torch.rand(7, 3, 6) * 0.8
    full = m(x)
    m.reset()
    halves = torch.cat([m(x[:3]), m(x[3:])])
    m.reset()
    m.step_mode = "s"
    steps = torch.stack([m(x[t]) for t in range(7)])
    torch.testing.assert_close(full, halves)
    torch.testing.assert_close(full, steps)
    assert full.sum() > 0  # the test input makes the neurons fire


@pytest.mark.parametrize(("cls", "kw"), MODULES)
def test_in_spikingjelly_sequential_with_reset_net_and_monitor(cls, kw) -> None:  # noqa: ANN001
    net = torch.nn.Sequential(layer.Linear(5, 6), cls(theta=0.3, store_h_seq=True, **kw))
    functional.set_step_mode(net, "m")
    mon = monitor.OutputMonitor(net, cls)
    x = torch.rand(8, 4, 5)
    y1 = net(x)
    y1.sum().backward()
    assert net[1].h_seq.shape == (8, 4, 6)
    assert len(mon.records) == 1 and mon.records[0].shape == (8, 4, 6)
    functional.reset_net(net)
    assert all(not isinstance(v, torch.Tensor) for v in net[1]._memories.values())
    torch.testing.assert_close(net(x), y1)  # same result after reset
    functional.reset_net(net)
    net(torch.rand(8, 2, 5))  # a new batch size works after reset
    mon.remove_hooks()


def test_parameters_in_range_and_trainable() -> None:
    m = AdLIF(num_neurons=4, tau_m=5.0, tau_w=100.0)
    with torch.no_grad():
        m.a.fill_(1.7)
        m.b.fill_(-0.3)
    m(torch.rand(3, 2, 4))
    assert m.a.min() >= 0 and m.a.max() <= 1 and m.b.min() >= 0 and m.b.max() <= 1
    assert torch.sigmoid(m.w_m).allclose(torch.full((4,), math.exp(-1 / 5.0)))
    assert torch.sigmoid(m.w_w).allclose(torch.full((4,), math.exp(-1 / 100.0)))
    p = PCuLIF(tau_m=20.0, tau_s=2.0)
    lam, gam = p.decays()
    assert 0 < lam.item() < 1 and 0 < gam.item() < 1
    assert lam.item() == pytest.approx(math.exp(-1 / 20.0))
    x = torch.rand(6, 2, 3) * 3
    p(x).sum().backward()
    assert p.w_m.grad is not None and p.w_s.grad is not None
    assert torch.sigmoid(torch.tensor(inverse_sigmoid_decay(3.0))).item() == pytest.approx(math.exp(-1 / 3))
    assert tau_steps(50.0, 10.0) == 5.0


def test_adlif_clamps_a_b_only_when_out_of_range() -> None:
    """a, b are written only when a value is outside [0, 1] (the version counter of an in-range parameter does not
    move, so single-step calls do not modify tensors autograd saved); a NaN stays, the other entries are clamped."""
    m = AdLIF(num_neurons=3)
    with torch.no_grad():
        m.a.copy_(torch.tensor([0.0, 0.5, 1.0]))
        m.b.copy_(torch.tensor([1.25, float("nan"), -0.5]))
    version = m.a._version
    m(torch.rand(2, 1, 3))
    assert m.a._version == version and m.a.tolist() == [0.0, 0.5, 1.0]
    assert m.b[0].item() == 1.0 and math.isnan(m.b[1].item()) and m.b[2].item() == 0.0


def test_detach_reset_changes_gradient_not_forward() -> None:
    torch.manual_seed(3)
    x = (torch.rand(10, 2, 3) * 2).requires_grad_()
    outs, grads = [], []
    for detach in (True, False):
        m = CuLIF(tau_m=3.0, tau_s=2.0, theta=0.5, detach_reset=detach)
        y = m(x)
        (g,) = torch.autograd.grad((y * torch.arange(10.0).view(10, 1, 1)).sum(), x)
        outs.append(y)
        grads.append(g)
    torch.testing.assert_close(outs[0], outs[1])
    assert not torch.allclose(grads[0], grads[1])


def test_build_neuron_factory() -> None:
    assert isinstance(build_neuron("culif", 8, {"tau_m_steps": 5.0, "tau_s_steps": 5.0, "theta": 1.0}), CuLIF)
    assert build_neuron("pculif_neuron", 8, {"tau_m_steps": 5.0, "tau_s_steps": 5.0, "theta": 1.0}).w_m.shape == (8,)
    assert build_neuron("pculif", 8, {"tau_m_steps": 5.0, "tau_s_steps": 5.0, "theta": 1.0}).w_m.shape == ()
    assert isinstance(build_neuron("adlif", 8, {"tau_m_steps": 5.0, "tau_w_steps": 50.0}), AdLIF)
    assert isinstance(build_neuron("lif", 8, {"tau_m_steps": 5.0, "tau_s_steps": 5.0, "theta": 1.0}), LIF)
    with pytest.raises(ValueError, match="unknown neuron_type 'izh'"):
        build_neuron("izh", 8, {"tau_m_steps": 5.0, "tau_s_steps": 5.0, "theta": 1.0})


def test_bad_arguments_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="theta"):
        CuLIF(theta=0.0)
    with pytest.raises(ValueError, match="tau_m"):
        CuLIF(tau_m=-1.0)
    with pytest.raises(ValueError, match="tau_s"):
        CuLIF(tau_s=float("nan"))
    with pytest.raises(ValueError, match="unknown backend 'jax'"):
        CuLIF(backend="jax")
    with pytest.raises(ValueError, match="num_neurons"):
        AdLIF()
    with pytest.raises(ValueError, match="unknown surrogate"):
        CuLIF(surrogate="bogus")
    with pytest.raises(ValueError, match="gradient mode 'fancy'"):
        CuLIF(gradient="fancy")
    m = CuLIF()
    with pytest.raises(ValueError, match=r"\[T, B, \.\.\.\]"):
        m(torch.rand(5))
    with pytest.raises(ValueError, match="floating-point"):
        m(torch.ones(3, 2, 2, dtype=torch.long))
    m(torch.rand(3, 2, 4))
    with pytest.raises(ValueError, match="reset_net"):
        m(torch.rand(3, 5, 4))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised without CUDA")
def test_cupy_backend_without_cuda_is_a_clear_error() -> None:
    with pytest.raises(RuntimeError, match="backend='cupy' cannot run here: CUDA is not available"):
        CuLIF(backend="cupy")
