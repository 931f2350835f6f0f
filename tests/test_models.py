"""Models: output shapes and ModelOutput fields, neuron types honoured, BatchNorm over T*B, time-fixed dropout."""

from __future__ import annotations

import math

import pytest
import torch
from spikingjelly.activation_based import functional

from sjframe.core.config import ConfigError
from sjframe.layers.common import TimeFixedDropout
from sjframe.models import MODELS, ModelOutput, build_model
from sjframe.models.fcnet import FCNet
from sjframe.neurons.adlif import AdLIF
from sjframe.neurons.culif import CuLIF, PCuLIF
from sjframe.neurons.lif import LIF

NEURON_CLASSES = {"culif": CuLIF, "pculif": PCuLIF, "pculif_neuron": PCuLIF, "adlif": AdLIF, "lif": LIF}

# (model, input_shape, classes, options) kept small for speed; the conv nets use the paper's input shapes.
CASES = [
    ("fcnet", (7,), 3, {"hidden_sizes": [11, 5]}),
    ("recurrent_fcnet", (2, 3), 4, {"hidden_sizes": [9]}),
    ("dvsgesture_net", (2, 32, 32), 10, {"channels": [4, 6, 6], "hidden_sizes": [12]}),
    ("dvsplane_net", (2, 60, 76), 4, {"channels": [3, 4, 5], "hidden_sizes": [8]}),
]
LAYERS = {
    "fcnet": {"hidden1": (11,), "hidden2": (5,), "output": (3,)},
    "recurrent_fcnet": {"hidden1": (9,), "output": (4,)},
    "dvsgesture_net": {"conv1": (4, 32, 32), "conv2": (6, 32, 32), "pool1": (6, 16, 16), "conv3": (6, 16, 16),
                       "pool2": (6, 8, 8), "fc1": (12,), "output": (10,)},
    "dvsplane_net": {"conv1": (3, 30, 38), "conv2": (4, 30, 38), "pool1": (4, 15, 19), "conv3": (5, 15, 19),
                     "pool2": (5, 7, 9), "fc1": (8,), "output": (4,)},
}
LOW_THETA = {"neuron1": {"theta": 0.05}, "neuron2": {"theta": 0.05}}


def test_registry_lists_the_models():
    assert {"fcnet", "recurrent_fcnet", "dvsgesture_net", "dvsplane_net"} <= set(MODELS)
    with pytest.raises(ValueError, match="unknown model 'nope'"):
        build_model("nope", {}, (3,), 2)


@pytest.mark.parametrize(("name", "shape", "classes", "options"), CASES)
def test_output_shapes_and_fields(name, shape, classes, options):
    T, B = 5, 3
    model = build_model(name, {**options, **LOW_THETA}, shape, classes)
    out = model(torch.rand(T, B, *shape) * 3)
    assert isinstance(out, ModelOutput)
    assert out.logits is None
    assert out.spikes.shape == (T, B, classes) and out.h.shape == (T, B, classes)
    assert set(out.spikes.unique().tolist()) <= {0.0, 1.0}
    assert list(out.layer_spikes) == list(LAYERS[name])
    for layer, feat in LAYERS[name].items():
        assert out.layer_spikes[layer].shape == (T, B, *feat), layer
    assert out.layer_spikes["output"] is out.spikes
    # h is the pre-reset potential: a spike exactly where h >= theta
    assert torch.equal(out.spikes.bool(), out.h >= 0.05)
    assert sum(float(s.detach().sum()) for s in out.layer_spikes.values()) > 0
    functional.reset_net(model)


@pytest.mark.parametrize("neuron_type", sorted(NEURON_CLASSES))
@pytest.mark.parametrize(("name", "shape", "classes", "options"), CASES)
def test_neuron_type_is_honoured_and_trains(name, shape, classes, options, neuron_type):
    model = build_model(name, {**options, **LOW_THETA, "neuron_type": neuron_type}, shape, classes)
    feature = [m for n, m in model.named_modules() if "out_neuron" not in n and "fc_layers" not in n
               and isinstance(m, (CuLIF, AdLIF, LIF))]
    assert feature and all(type(m) is NEURON_CLASSES[neuron_type] for m in feature)
    assert type(model.out_neuron) is CuLIF  # decision layer: output_neuron_type (default culif, the paper's)
    out = model(torch.rand(4, 2, *shape) * 3)
    (out.h.sum() + out.spikes.sum()).backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


def test_output_neuron_type_option():
    model = build_model("fcnet", {"hidden_sizes": [4], "output_neuron_type": "adlif"}, (3,), 2)
    assert isinstance(model.out_neuron, AdLIF)


def test_wrong_input_shape_and_options():
    model = build_model("fcnet", {"hidden_sizes": [4]}, (3,), 2)
    with pytest.raises(ValueError, match=r"\[T, B, 3\]"):
        model(torch.rand(2, 3, 4))
    with pytest.raises(ValueError, match="floating point"):
        model(torch.ones(2, 3, 3, dtype=torch.long))
    with pytest.raises(ConfigError, match="hidden_size"):
        build_model("fcnet", {"hidden_size": [4]}, (3,), 2)
    with pytest.raises(ConfigError, match="dropout"):
        build_model("fcnet", {"dropout": 1.5}, (3,), 2)
    with pytest.raises(ValueError, match="too small"):
        build_model("dvsplane_net", {}, (2, 6, 6), 4)
    with pytest.raises(ValueError, match="num_classes"):
        build_model("fcnet", {}, (3,), 0)


def test_xavier_uniform_and_no_bias():
    model = build_model("fcnet", {"hidden_sizes": [40]}, (30,), 5)
    assert isinstance(model, FCNet)
    for lin in (*model.fcs, model.out_fc):
        assert lin.bias is None
        fan_out, fan_in = lin.weight.shape
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        largest = float(lin.weight.detach().abs().max())
        assert 0.8 * bound < largest <= bound  # uniform over the whole Xavier range


def test_batchnorm_is_over_time_and_batch():
    model = build_model("fcnet", {"hidden_sizes": [6], "dropout": 0.0}, (4,), 2)
    bn = model.bns[0]
    bn.momentum = 1.0  # running stats = the statistics of the last batch
    x = torch.rand(5, 3, 4)
    model(x)
    rows = model.fcs[0](x.reshape(15, 4))
    torch.testing.assert_close(bn.running_mean, rows.mean(0).detach())


def test_dropout_mask_is_fixed_across_time():
    drop = TimeFixedDropout(0.5)
    x = torch.ones(7, 4, 10)
    y = drop(x)
    assert torch.equal(y, y[:1].expand_as(y))  # same mask at every step
    assert set(y.unique().tolist()) <= {0.0, 2.0} and 0 < int((y[0] == 0).sum()) < 40
    drop.eval()
    assert torch.equal(drop(x), x)
    with pytest.raises(ValueError, match="dropout p"):
        TimeFixedDropout(1.0)


def test_recurrent_weights_matter_and_decays_are_clamped():
    model = build_model("recurrent_fcnet", {"hidden_sizes": [8], **LOW_THETA}, (5,), 3)
    x = torch.rand(6, 2, 5) * 3
    a = model(x).layer_spikes["hidden1"].clone()
    functional.reset_net(model)
    with torch.no_grad():
        model.hidden[0].rec.weight.fill_(-5.0)  # strong self-inhibition silences the layer after its first spikes
    b = model(x).layer_spikes["hidden1"]
    assert not torch.equal(a, b)
    assert torch.equal(a[0], b[0])  # y_0 = neuron(W x_0): the recurrence acts from the second step on
    neuron = model.hidden[0].neuron
    with torch.no_grad():
        neuron.w_m.fill_(10.0)
        neuron.w_s.fill_(-10.0)
    model.post_step()
    lam, gam = neuron.decays()
    assert torch.allclose(lam, torch.full_like(lam, 0.995))
    assert torch.allclose(gam, torch.full_like(gam, 2 / math.e))


def test_layer_overrides_set_surrogate_and_gradient_per_layer():
    model = build_model(
        "fcnet",
        {"hidden_sizes": [4, 4], "surrogate": {"name": "arctan", "alpha": 3.0},
         "neuron2": {"surrogate": "sigmoid"},
         "layer_overrides": {"hidden2": {"gradient": {"mode": "sparse", "b_th": 0.3}, "surrogate": "triangle"}}},
        (3,), 2,
    )
    h1, h2 = model.neurons
    assert h1.surrogate.name == "arctan" and h1.surrogate.values == {"alpha": 3.0}
    assert h1.gradient.mode == "dense"
    assert h2.surrogate.name == "triangle" and h2.gradient.mode == "sparse" and h2.gradient.b_th == 0.3
    assert model.out_neuron.surrogate.name == "sigmoid"
    with pytest.raises(ConfigError, match="layer_overrides"):
        build_model("fcnet", {"layer_overrides": {"hidden1": {"theta": 1}}}, (3,), 2)


def test_cupy_backend_without_gpu_is_a_clear_error():
    from sjframe.neurons.base import cupy_unavailable_reason

    if cupy_unavailable_reason() is None:
        pytest.skip("CUDA and CuPy are available here")
    with pytest.raises(RuntimeError, match="backend='cupy' cannot run here"):
        build_model("fcnet", {"hidden_sizes": [4], "backend": "cupy"}, (3,), 2)
