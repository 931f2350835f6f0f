"""Training methods, dispatched by a config's top-level ``method`` key.

Each method is a module ``sjframe.methods.<name>`` exposing:

* ``CONFIG``: the dataclass of its config section (the YAML key named like the method), built with
  :func:`sjframe.core.config.dataclass_from_dict` (unknown keys are errors);
* ``train(cfg: dict, run: RunDir, resume: bool = False) -> dict``: trains, writes the resolved
  config, metrics, checkpoints and plots into ``run``, returns the final metrics;
* ``evaluate(cfg: dict, run: RunDir, checkpoint: str = "best.pt") -> dict``: evaluates a saved run
  (``cfg`` is the run's config with any command-line overrides applied), writes and returns a report.

``train.py`` / ``test.py`` find the module through :func:`get_method`.
"""

from __future__ import annotations

import importlib
from types import ModuleType

__all__ = ["METHODS", "get_method"]

# name -> module path; the default ``surrogate`` is BPTT with surrogate gradients (FS / FR coding).
METHODS: dict[str, str] = {
    "surrogate": "sjframe.methods.surrogate.method",
    "exact_time": "sjframe.methods.exact_time.method",
    "stdp": "sjframe.methods.stdp.method",
    "conversion": "sjframe.methods.conversion.method",
    "spikeprop": "sjframe.methods.spikeprop.method",
}


def get_method(name: str) -> ModuleType:
    """The module of method ``name``; unknown names raise ``ValueError`` listing the valid ones."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; valid: {sorted(METHODS)}")
    return importlib.import_module(METHODS[name])
