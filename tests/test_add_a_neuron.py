"""Adding a neuron touches no file of sjframe/: the test-only IF neuron (tests/support/if_neuron.py) registers
itself and runs through FCNet (and the recurrent FCNet) configs on the torch backend, forward, backward and
training steps, with its config keys checked by its own config class."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import functional

from sjframe.core.config import ConfigError
from sjframe.models import build_model
from sjframe.neurons import build_neuron, neuron_names
from tests.support.if_neuron import IF, IFState, if_multi_step

OPTIONS = {
    "hidden_sizes": [16], "neuron_type": "if", "output_neuron_type": "if", "dropout": 0.0, "batchnorm": False,
    "neuron1": {"theta": 0.3, "gain": 2.0}, "neuron2": {"theta": 0.2},
}


def _data(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(12, 8, 10, generator=gen) < 0.3).float()  # [T, B, features]
    y = torch.randint(0, 3, (8,), generator=gen)
    return x, y


def test_the_neuron_is_registered_by_its_module() -> None:
    assert "if" in neuron_names()
    layer = build_neuron("if", 5, {"theta": 0.5, "gain": 3.0})
    assert isinstance(layer, IF) and layer.gain == 3.0 and layer.theta == 0.5


@pytest.mark.parametrize("name", ["fcnet", "recurrent_fcnet"])
def test_if_neuron_trains_in_an_fcnet(name: str) -> None:
    torch.manual_seed(0)
    options = {k: v for k, v in OPTIONS.items() if name == "fcnet" or k not in ("batchnorm",)}
    model = build_model(name, options, (10,), 3)
    neurons = [m for m in model.modules() if isinstance(m, IF)]
    assert len(neurons) == 2 and neurons[0].gain == 2.0 and neurons[-1].theta == 0.2
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    x, y = _data()
    losses = []
    for _ in range(15):
        functional.reset_net(model)
        out = model(x)
        assert out.spikes.shape == (12, 8, 3) and out.h is not None and out.h.shape == (12, 8, 3)
        loss = torch.nn.functional.cross_entropy(out.h.mean(0), y)
        opt.zero_grad()
        loss.backward()
        grads = [p.grad for p in model.parameters() if p.grad is not None]
        assert grads and all(bool(torch.isfinite(g).all()) for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)
        opt.step()
        if hasattr(model, "post_step"):
            model.post_step()  # clamp_decays: the IF neuron has no decay, the base's no-op
        losses.append(loss.item())
    assert losses[-1] < losses[0]


def test_module_equals_its_reference_and_carries_state() -> None:
    layer = IF(gain=1.5, theta=0.4)
    x = torch.rand(7, 2, 4)
    functional.reset_net(layer)
    s1, s2 = layer(x[:3]), layer(x[3:])
    ref = if_multi_step(x, IFState(torch.zeros(2, 4)), 1.5, 0.4, layer.spike_fn())
    torch.testing.assert_close(torch.cat([s1, s2]), ref.spikes)


def test_config_keys_are_checked_by_the_neurons_config_class() -> None:
    with pytest.raises(ConfigError, match="gain"):
        build_model("fcnet", {**OPTIONS, "neuron1": {"gain": -1.0}}, (10,), 3)
    with pytest.raises(ConfigError, match="unknown key"):
        build_model("fcnet", {**OPTIONS, "neuron1": {"gian": 1.0}}, (10,), 3)
