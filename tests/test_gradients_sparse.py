"""S3GD fused Linear + LIF: the sparse gradient equals the dense one with the truncated surrogate;
LocalZO on the sparse path equals the dense LocalZO draw; the S3GD/LocalZO reference net and configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from sjframe.core.config import load_yaml
from sjframe.layers import sparse_linear_lif as sparse_layer
from sjframe.layers.sparse_linear_lif import ActiveSet, SparseLinearLIF, sparse_linear_lif
from sjframe.methods.surrogate.config import resolve_config
from sjframe.models import build_model
from sjframe.models.s3gd_net import S3GDNet, S3GDNetOptions
from sjframe.neurons.lif import lif_multi_step
from sjframe.spike import GradientSpec, make_spike_fn
from sjframe.spike.surrogate import get_surrogate
from tests.conftest import requires_gpu
from tests.support.kernel_cases import SIXTEEN_BIT_RTOL

ROOT = Path(__file__).resolve().parents[1]
SUR = get_surrogate("fast_sigmoid", rho=100.0)
BETA = 0.88


def _stack(sizes, dtype=torch.float64, seed=0):
    gen = torch.Generator().manual_seed(seed)
    ws = [(torch.randn(n_out, n_in, generator=gen, dtype=dtype) * 1.2 / n_in**0.5).requires_grad_()
          for n_in, n_out in zip(sizes[:-1], sizes[1:], strict=True)]
    return ws


def _dense(x, ws, spec, gen=None):
    fn = make_spike_fn(SUR, spec, generator=gen)
    outs, s = [], x
    for w in ws:
        s = lif_multi_step(F.linear(s, w), None, BETA, 1.0, fn).spikes
        outs.append(s)
    return outs


def _sparse(x, ws, spec, gen=None, pass_active=True):
    outs, s, active = [], x, None
    for w in ws:
        out = sparse_linear_lif(s, w, BETA, 1.0, SUR, spec, in_active=active if pass_active else None, generator=gen)
        s = out.spikes
        active = out.active
        outs.append(out)
    return outs


def _loss(spikes, seed=1):
    gen = torch.Generator().manual_seed(seed)
    total = 0.0
    for s in spikes:  # a random-weighted loss on every layer's spikes
        total = total + (s * torch.randn(s.shape, generator=gen, dtype=s.dtype)).sum()
    return total


@pytest.mark.parametrize("depth", [2, 3])
@pytest.mark.parametrize("pass_active", [True, False])
@pytest.mark.parametrize("gather_cost", [0, 10**9])  # force the per-entry products / the row products
def test_sparse_equals_dense_with_truncated_surrogate(depth: int, pass_active: bool, gather_cost: int, monkeypatch) -> None:
    monkeypatch.setattr(sparse_layer, "GATHER_COST", gather_cost)
    T, B = 17, 3
    sizes = [13, 11, 9, 7][: depth + 1]
    x = (torch.rand(T, B, sizes[0], generator=torch.Generator().manual_seed(4)) < 0.35).double().requires_grad_()
    ws = _stack(sizes)
    spec = GradientSpec(mode="sparse", b_th=0.3)
    dense = _dense(x, ws, spec)
    sparse = _sparse(x, ws, spec, pass_active=pass_active)
    for d, s in zip(dense, sparse, strict=True):
        assert torch.equal(d, s.spikes)  # identical forward
        assert 0.0 < s.active.fraction < 0.6
    gd = torch.autograd.grad(_loss(dense), [x, *ws])
    gs = torch.autograd.grad(_loss([s.spikes for s in sparse]), [x, *ws])
    for a, b in zip(gd, gs, strict=True):
        assert float(a.abs().max()) > 0
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("gather_cost", [0, 10**9])
def test_input_gradient_only_at_the_previous_active_set(gather_cost: int, monkeypatch) -> None:
    """With in_active the layer writes dL/dx only there (exactly the dense value), zero elsewhere."""
    monkeypatch.setattr(sparse_layer, "GATHER_COST", gather_cost)
    T, B, n_in, n = 11, 2, 8, 6
    x = torch.rand(T, B, n_in, dtype=torch.float64).requires_grad_()
    (w,) = _stack([n_in, n])
    flat = torch.arange(0, T * B * n_in, 3)
    out = sparse_linear_lif(x, w, BETA, 0.3, SUR, {"mode": "sparse", "b_th": 0.5}, in_active=ActiveSet(flat, (T, B, n_in)))
    g_sparse = torch.autograd.grad(_loss([out.spikes]), x)[0].reshape(-1)
    ref = lif_multi_step(F.linear(x, w), None, BETA, 0.3, make_spike_fn(SUR, GradientSpec(mode="sparse", b_th=0.5)))
    g_dense = torch.autograd.grad(_loss([ref.spikes]), x)[0].reshape(-1)
    mask = torch.zeros_like(g_dense, dtype=torch.bool)
    mask[flat] = True
    assert torch.allclose(g_sparse[mask], g_dense[mask], rtol=1e-12, atol=1e-14)
    assert float(g_dense[mask].abs().max()) > 0
    assert bool((g_sparse[~mask] == 0).all()) and float(g_dense[~mask].abs().max()) > 0


def test_localzo_sparse_path_equals_dense_draw_and_is_seeded() -> None:
    T, B = 14, 3
    sizes = [10, 9, 8]
    x = (torch.rand(T, B, sizes[0], generator=torch.Generator().manual_seed(2)) < 0.4).double()
    ws = _stack(sizes)
    spec = GradientSpec(mode="localzo", delta=0.25, samples=2, distribution="laplace")
    gd = torch.autograd.grad(_loss(_dense(x, ws, spec, torch.Generator().manual_seed(9))), ws)
    out1 = _sparse(x, ws, spec, torch.Generator().manual_seed(9))
    gs = torch.autograd.grad(_loss([o.spikes for o in out1]), ws)
    for a, b in zip(gd, gs, strict=True):
        assert float(a.abs().max()) > 0
        assert torch.allclose(a, b, rtol=1e-12, atol=1e-14)
    gs_again = torch.autograd.grad(_loss([o.spikes for o in _sparse(x, ws, spec, torch.Generator().manual_seed(9))]), ws)
    gs_other = torch.autograd.grad(_loss([o.spikes for o in _sparse(x, ws, spec, torch.Generator().manual_seed(8))]), ws)
    assert all(torch.equal(a, b) for a, b in zip(gs, gs_again, strict=True))
    assert not torch.equal(gs[0], gs_other[0])
    for o in out1:  # the active set is where the estimate is nonzero: a small random subset
        assert 0.0 < o.active.fraction < 0.5


def test_float32_and_edge_cases() -> None:
    # T = 1, nothing active (tiny band), float32
    x = torch.rand(1, 2, 5)
    w = torch.randn(4, 5, requires_grad=True)
    out = sparse_linear_lif(x, w, 0.9, 1.0, SUR, {"mode": "sparse", "b_th": 1e-9})
    assert out.active.count == 0
    (gw,) = torch.autograd.grad(out.spikes.sum(), w, allow_unused=True)
    assert gw is not None and bool((gw == 0).all())
    # float32 stack against the dense reference
    x = (torch.rand(20, 4, 12) < 0.3).float()
    ws = _stack([12, 10, 6], dtype=torch.float32)
    spec = GradientSpec(mode="sparse", b_th=0.25)
    gd = torch.autograd.grad(_loss(_dense(x, ws, spec)), ws)
    gs = torch.autograd.grad(_loss([o.spikes for o in _sparse(x, ws, spec)]), ws)
    for a, b in zip(gd, gs, strict=True):
        assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)


def test_errors_name_the_argument() -> None:
    w = torch.randn(4, 5)
    with pytest.raises(ValueError, match="x must be"):
        sparse_linear_lif(torch.rand(3, 5), w, 0.9)
    with pytest.raises(ValueError, match="weight must be"):
        sparse_linear_lif(torch.rand(2, 3, 6), w, 0.9)
    with pytest.raises(ValueError, match="NaN"):
        sparse_linear_lif(torch.full((2, 3, 5), float("nan")), w, 0.9)
    with pytest.raises(ValueError, match="beta"):
        sparse_linear_lif(torch.rand(2, 3, 5), w, 1.5)
    with pytest.raises(ValueError, match="in_active.shape"):
        sparse_linear_lif(torch.rand(2, 3, 5), w, 0.9, in_active=ActiveSet(torch.arange(3), (2, 3, 4)))
    with pytest.raises(ValueError, match="in_features"):
        SparseLinearLIF(0, 3)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="cupy"):
            sparse_linear_lif(torch.rand(2, 3, 5), w, 0.9, backend="cupy")


# ------------------------------------------------------------------------------------ reference net
def _net(gradient, seed=0, **kw):
    torch.manual_seed(seed)
    opts = S3GDNetOptions(hidden_sizes=[14, 12], tau_m_steps=6, tau_readout_steps=5, init="normal",
                          weight_multiplier=30.0, gradient=gradient, **kw)
    return S3GDNet(opts, (4, 5), 3).double()


def test_net_sparse_gradients_equal_dense_truncated() -> None:
    x = (torch.rand(30, 4, 4, 5, generator=torch.Generator().manual_seed(1)) < 0.3).double()
    y = torch.tensor([0, 1, 2, 1])
    grads = {}
    for mode in ("sparse", "dense"):
        surrogate = None if mode == "sparse" else SUR.with_band(0.2)
        net = _net("sparse" if mode == "sparse" else "dense", surrogate=surrogate)
        out = net(x)
        loss = F.cross_entropy(out.logits, y) + net.regularizer(out)
        grads[mode] = torch.autograd.grad(loss, list(net.parameters()))
        assert out.logits.shape == (4, 3) and set(out.layer_spikes) == {"hidden1", "hidden2"}
        if mode == "sparse":
            assert all(0 < f < 0.5 for f in net.active_fraction.values())
    for a, b in zip(grads["sparse"], grads["dense"], strict=True):
        assert float(a.abs().max()) > 0
        assert torch.allclose(a, b, rtol=1e-10, atol=1e-13)


def test_net_readout_and_regularizer_by_hand() -> None:
    net = _net("dense", readout="sum", reg_f_upper=0.05, reg_f_lower=0.5)
    x = (torch.rand(9, 2, 4, 5) < 0.5).double()
    out = net(x)
    s2 = out.layer_spikes["hidden2"]
    drive = (1 - net.beta_readout) * s2 @ net.readout.t()
    o, acc = torch.zeros(2, 3, dtype=torch.float64), torch.zeros(2, 3, dtype=torch.float64)
    for t in range(8):
        o = net.beta_readout * o + drive[t]
        acc = acc + o
    assert torch.allclose(out.logits, acc)
    want = 0.0
    for s in out.layer_spikes.values():
        counts = s.sum(0)
        up = 0.06 * torch.clamp(counts.sum(1) / s.shape[2] - 0.05, min=0)
        low = 100.0 * (torch.clamp(0.5 - counts, min=0) ** 2).sum(1) / s.shape[2]
        want = want + (up + low).sum() / 2
    assert torch.allclose(net.regularizer(out), want)
    assert float(net.regularizer(out).detach()) > 0


def test_net_options_errors() -> None:
    with pytest.raises(ValueError, match="readout"):
        S3GDNetOptions(readout="mean")
    with pytest.raises(ValueError, match="layer_overrides"):
        S3GDNetOptions(layer_overrides={"hidden3": {"gradient": "dense"}})
    with pytest.raises(ValueError, match="gradient"):
        S3GDNetOptions(gradient={"mode": "sparse", "band": 1})
    net = _net("sparse")
    with pytest.raises(ValueError, match="expects x"):
        net(torch.zeros(5, 2, 20, dtype=torch.float64))


CONFIGS = [f"{m}_{d}" for m in ("s3gd", "localzo") for d in ("fmnist", "nmnist", "shd")]


@pytest.mark.parametrize("name", CONFIGS)
def test_configs_build_and_step(name: str) -> None:
    cfg = resolve_config(load_yaml(ROOT / "configs" / f"{name}.yaml"))
    assert cfg.model.name == "s3gd_net" and cfg.loss.mode == "logits_nll"
    options = dict(cfg.model.options, hidden_sizes=[8, 8])
    shape, classes = {"fmnist": ((784,), 10), "nmnist": ((1156,), 10), "shd": ((700,), 20)}[name.split("_")[1]]
    model = build_model("s3gd_net", options, shape, classes)
    x = (torch.rand(12, 2, *shape) < 0.05).float()
    out = model(x)
    loss = F.cross_entropy(out.logits, torch.tensor([0, 1])) + model.regularizer(out)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters())
    assert GradientSpec.from_config(options["gradient"]).mode == ("sparse" if name.startswith("s3gd") else "localzo")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_weight_grad_16bit_multiplies_in_float32(dtype: torch.dtype, monkeypatch: pytest.MonkeyPatch) -> None:
    """The torch path's dW in 16-bit storage: CUDA has no float16 / bfloat16 sparse x dense product, so the
    product is asked in float32 (never in 16 bits) and the result is the float64 one rounded to the dtype."""
    gen = torch.Generator().manual_seed(0)
    T, B, n_in, N = 7, 3, 11, 13
    tr = (torch.rand(T, B, n_in, generator=gen) * 2).to(dtype)
    index = torch.randperm(T * B * N, generator=gen)[:200].sort().values
    e = torch.randn(200, generator=gen).to(dtype)
    seen = []
    mm = torch.sparse.mm

    def spy(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        seen.append((a.dtype, b.dtype))
        return mm(a, b)

    monkeypatch.setattr(torch.sparse, "mm", spy)
    got = sparse_layer._weight_grad(e, index, tr, N)
    ref = sparse_layer._weight_grad(e.double(), index, tr.double(), N)
    assert seen == [(torch.float32, torch.float32), (torch.float64, torch.float64)]
    assert got.dtype == dtype and float(ref.abs().max()) > 0
    torch.testing.assert_close(got.double(), ref, rtol=SIXTEEN_BIT_RTOL[dtype],
                               atol=1e-6)


@requires_gpu
def test_cupy_backend_matches_torch_on_gpu() -> None:
    dev = torch.device("cuda")
    x = (torch.rand(40, 8, 30, device=dev) < 0.3).float()
    ws = [w.detach().to(dev).requires_grad_() for w in _stack([30, 20, 10], dtype=torch.float32)]
    for spec in (GradientSpec(mode="sparse", b_th=0.3), GradientSpec(mode="localzo", delta=0.2, rng="philox")):
        grads = []
        for backend in ("torch", "cupy"):
            gen = torch.Generator(device=dev).manual_seed(5)
            s, active, outs = x, None, []
            for w in ws:
                o = sparse_linear_lif(s, w, BETA, 1.0, SUR, spec, in_active=active, generator=gen, backend=backend)
                s, active = o.spikes, o.active
                outs.append(s)
            grads.append(torch.autograd.grad(_loss([o.cpu() for o in outs]), ws))
        for a, b in zip(*grads, strict=True):
            assert torch.allclose(a, b, rtol=1e-4, atol=1e-5)
