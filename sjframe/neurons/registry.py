"""The neuron registry: a neuron type is a name, a module class and the config class of its group keys.

A neuron folder registers its module class (an :class:`~sjframe.neurons.base.SJNeuron`)::

    @register_neuron("culif", CuLIFConfig)
    class CuLIF(SJNeuron): ...

and the models build layers by name (:func:`build_neuron`) without naming any neuron type. The
built-in neurons are the sub-packages of :mod:`sjframe.neurons` (imported, and so registered, on
first use of the registry); a neuron defined elsewhere (e.g. a test's) registers when its module is
imported.
"""

from __future__ import annotations

import dataclasses
import importlib
import pkgutil
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sjframe.neurons.base import NeuronConfig, SJNeuron

__all__ = ["NeuronType", "build_neuron", "get_neuron", "neuron_config", "neuron_names", "register_neuron"]


@dataclass(frozen=True)
class NeuronType:
    """A registered neuron: its module class, the config class of its group keys and fixed options."""

    name: str
    cls: type[SJNeuron]
    config_cls: type[NeuronConfig]
    options: tuple[tuple[str, Any], ...] = ()


_NEURONS: dict[str, NeuronType] = {}
_LOCK = threading.Lock()
_LOADED = False


def register_neuron(name: str, config_cls: type[NeuronConfig] = NeuronConfig,
                    **options: Any) -> Callable[[type[SJNeuron]], type[SJNeuron]]:
    """Class decorator: register ``cls`` as neuron ``name`` with its group config class.

    ``options`` are fixed keyword arguments of ``cls.from_config`` for this name (e.g. PCuLIF
    registered twice, ``per_neuron=False`` as ``pculif`` and ``per_neuron=True`` as ``pculif_neuron``).
    Registering a name twice with another class raises ``ValueError``.
    """
    if not (dataclasses.is_dataclass(config_cls) and issubclass(config_cls, NeuronConfig)):
        raise ValueError(f"register_neuron({name!r}): config class must be a NeuronConfig dataclass, got {config_cls!r}")

    def deco(cls: type[SJNeuron]) -> type[SJNeuron]:
        if not issubclass(cls, SJNeuron):
            raise ValueError(f"register_neuron({name!r}): {cls!r} is not an SJNeuron")
        entry = NeuronType(name, cls, config_cls, tuple(sorted(options.items())))
        with _LOCK:
            old = _NEURONS.get(name)
            if old is not None and (old.cls.__qualname__, old.cls.__module__) != (cls.__qualname__, cls.__module__):
                raise ValueError(f"neuron {name!r} is already registered to {old.cls.__module__}.{old.cls.__qualname__}")
            _NEURONS[name] = entry
        return cls

    return deco


def _load_builtin() -> None:
    """Import the neuron sub-packages of sjframe.neurons (each registers its neurons)."""
    global _LOADED
    if _LOADED:
        return
    package = __name__.rpartition(".")[0]  # sjframe.neurons: its folder is listed, the package not re-imported
    for info in pkgutil.iter_modules([str(Path(__file__).resolve().parent)]):
        if info.ispkg:
            importlib.import_module(f"{package}.{info.name}")
    _LOADED = True


def neuron_names() -> tuple[str, ...]:
    """The registered neuron names, sorted."""
    _load_builtin()
    return tuple(sorted(_NEURONS))


def get_neuron(name: str) -> NeuronType:
    """The registered neuron ``name`` (``ValueError`` listing the valid names otherwise)."""
    _load_builtin()
    if name not in _NEURONS:
        raise ValueError(f"unknown neuron_type {name!r}; valid: {list(neuron_names())}")
    return _NEURONS[name]


def neuron_config(name: str, config: Mapping[str, Any] | NeuronConfig | None, where: str = "neuron") -> NeuronConfig:
    """Neuron ``name``'s group config from a mapping or a config object.

    The keys of ``name``'s config class are read and type-checked; a key of another registered
    neuron's config (e.g. AdLIF's ``tau_w_steps`` given to a CuLIF group, or CuLIF's ``tau_s_steps``
    given to an AdLIF group: the seeds' ``--neuron1 tm ts th`` line sets it for every neuron) is
    ignored, so one group section serves when only ``neuron_type`` changes; a key no neuron knows
    raises ``ConfigError`` listing the valid keys.
    """
    from sjframe.core.config import ConfigError, dataclass_from_dict

    cls = get_neuron(name).config_cls
    if config is None:
        return cls()
    if isinstance(config, NeuronConfig):
        if isinstance(config, cls):
            return config
        config = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    if not isinstance(config, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {type(config).__name__}")
    own = {f.name for f in dataclasses.fields(cls)}
    others = {f.name for entry in _NEURONS.values() for f in dataclasses.fields(entry.config_cls)}
    unknown = sorted(set(config) - own - others)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(own)} (neuron {name!r})")
    return dataclass_from_dict(cls, {k: v for k, v in config.items() if k in own}, where)


def build_neuron(name: str, shape: int | tuple[int, ...], config: Mapping[str, Any] | NeuronConfig | None = None,
                 **common: Any) -> SJNeuron:
    """A layer of neuron ``name`` with feature shape ``shape`` (int or tuple) from its group config.

    ``config``: the group keys (``tau_m_steps``, ``tau_s_steps``, ``theta`` and the neuron's own,
    e.g. AdLIF's ``tau_w_steps``), as a mapping or a config object; ``common``: module options
    (surrogate, gradient, backend, store_h_seq, step_mode).
    """
    entry = get_neuron(name)
    cfg = neuron_config(name, config)
    return entry.cls.from_config(cfg, shape, **dict(entry.options), **common)
