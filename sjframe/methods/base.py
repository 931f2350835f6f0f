"""The contract every training method fulfils, and what the methods share.

A method is one folder ``sjframe/methods/<name>/`` whose ``method.py`` defines a :class:`Method`
subclass and one instance of it, ``METHOD``, registered by name in :mod:`sjframe.methods.registry`.
``train.py`` / ``test.py`` only talk to that object:

* ``settings``: the dataclass of the method's settings; ``section``: the config key holding them
  (``None``: the whole config is the settings, as for ``surrogate``). The YAML file and the
  command-line overrides are typed against it (:meth:`Method.key_type`, :meth:`Method.parse`) by
  the one config machinery of :mod:`sjframe.core.config`;
* ``capabilities``: what the entry points may offer (:class:`Capabilities`);
* :meth:`Method.train` / :meth:`Method.evaluate`: run in a run directory
  (:class:`~sjframe.core.rundir.RunDir`: config, ``metrics.jsonl``, checkpoints, atomic reports) with
  the distributed context the entry point built once (:class:`~sjframe.core.distributed.DistContext`;
  a single-process one when none is given).

:class:`MethodConfig` holds the settings fields the toy-set methods (stdp, conversion, spikeprop) share.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from sjframe.core.config import CliOptions, ConfigError, apply_overrides, dataclass_from_dict, dataclass_to_dict
from sjframe.core.config import key_type as config_key_type
from sjframe.core.distributed import DistContext, current_context
from sjframe.core.rundir import RunDir
from sjframe.core.runtime import torch_threads

__all__ = ["Capabilities", "Method", "MethodConfig"]

#: the top-level keys a sectioned method's config may have besides its section
TOP_LEVEL = ("method", "name", "runs_root")


@dataclass(frozen=True)
class Capabilities:
    """What a method supports, so that the entry points need not know which method they run.

    Attributes:
        supports_resume: ``train.py --resume <run_dir>`` continues from ``last.pt``.
        keeps_savepoints: the run keeps ``epoch_K.pt`` savepoints; ``--resume_epoch K`` continues from one.
        supports_distributed: trains and evaluates under torchrun (several processes).
    """

    supports_resume: bool = True
    keeps_savepoints: bool = False
    supports_distributed: bool = False


class Method:
    """A training method: its settings class, capabilities, ``train`` and ``evaluate`` (see the module docstring).

    Subclasses set :attr:`name`, :attr:`settings` (and :attr:`section`) and implement :meth:`fit` and
    :meth:`test`; the other hooks have defaults for a method whose settings sit under ``section``.
    """

    name: ClassVar[str]
    settings: ClassVar[type]
    section: ClassVar[str | None] = None
    capabilities: ClassVar[Capabilities] = Capabilities()

    # ------------------------------------------------------------------ config
    def cli_options(self, command: str) -> CliOptions:
        """What ``train.py`` / ``test.py`` (``command``: ``train`` | ``test``) accept besides ``--section.key value``."""
        return CliOptions(top_level=frozenset(TOP_LEVEL[1:]))

    def key_type(self, raw: dict[str, Any], path: list[str]) -> Any:
        """The type of the config key ``path`` (command-line values are parsed by it); unknown keys raise."""
        if path[0] == self.section:
            return config_key_type(self.settings, path[1:], prefix=(self.section,))
        if path[0] in TOP_LEVEL and len(path) == 1:
            return str
        raise ConfigError(f"--{'.'.join(path)}: unknown key {path[0]!r}; valid keys: {sorted([*TOP_LEVEL, self.section])}")

    def apply_overrides(self, raw: dict[str, Any], overrides: list[tuple[str, Any]]) -> dict[str, Any]:
        """A copy of ``raw`` with the command-line ``overrides`` set, each typed by :meth:`key_type`."""
        return apply_overrides(raw, overrides, self.key_type)

    def parse(self, raw: dict[str, Any]) -> Any:
        """The typed, validated :attr:`settings` of a whole config dict (defaults filled in)."""
        if not isinstance(raw, dict):
            raise ConfigError(f"config must be a mapping, got {type(raw).__name__}")
        method = raw.get("method", self.section)
        if method != self.name:
            raise ConfigError(f"config method is {method!r}, but the {self.name!r} method was called")
        return dataclass_from_dict(self.settings, raw.get(self.section), self.section)

    def resolved(self, raw: dict[str, Any], settings: Any) -> dict[str, Any]:
        """The config to write into the run: ``raw`` with ``method`` set and the settings with their defaults."""
        out = {k: v for k, v in raw.items() if k != self.section}
        out["method"] = self.name
        out[self.section] = dataclass_to_dict(settings)
        return out

    def device_spec(self, settings: Any) -> str:
        """The configured device (``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``)."""
        return settings.device

    def device_key(self) -> str:
        """The config key of the device (named in errors)."""
        return f"{self.section}.device"

    def threads(self, settings: Any) -> int | None:
        """Torch CPU threads while the method runs (``None``: unchanged)."""
        return settings.threads

    def dist_backend(self, settings: Any) -> str:
        """The process-group backend under torchrun (``auto`` | ``nccl`` | ``gloo``)."""
        return "auto"

    def default_checkpoint(self, settings: Any) -> str:
        """The checkpoint ``test.py`` evaluates when none is named."""
        return "best"

    def precheck(self, settings: Any) -> None:
        """What can be checked before a run directory exists, beyond the settings and the device (default: nothing)."""

    # ------------------------------------------------------------------ running
    def context(self, settings: Any) -> DistContext:
        """This process's context when the caller gave none (one process, or an already open group)."""
        return current_context(self.device_spec(settings))

    def train(self, raw: dict[str, Any], run: RunDir, resume: bool = False, *, resume_epoch: int | None = None,
              ctx: DistContext | None = None) -> dict[str, Any]:
        """Train into ``run`` (``resume``: continue from ``last.pt``; ``resume_epoch``: from ``epoch_K.pt``);
        returns the summary. Runs with the settings' CPU threads."""
        settings = self.parse(raw)
        if resume_epoch is not None and not self.capabilities.keeps_savepoints:
            raise ConfigError(f"method {self.name!r} keeps no savepoints: resume_epoch is not available")
        if resume and not self.capabilities.supports_resume:
            raise ConfigError(f"method {self.name!r} cannot resume a run")
        with torch_threads(self.threads(settings)):
            ctx = ctx if ctx is not None else self.context(settings)
            return self.fit(settings, raw, run, ctx, resume or resume_epoch is not None, resume_epoch)

    def evaluate(self, raw: dict[str, Any], run: RunDir, checkpoint: str | None = None, *,
                 ctx: DistContext | None = None, **options: Any) -> dict[str, Any]:
        """Evaluate ``checkpoint`` of ``run`` (None: :meth:`default_checkpoint`); writes and returns the report
        (``table``: a printable summary; ``metrics.acc_fs`` / ``acc_fr`` in % where the method has them)."""
        settings = self.parse(raw)
        with torch_threads(self.threads(settings)):
            ctx = ctx if ctx is not None else self.context(settings)
            return self.test(settings, raw, run, ctx, checkpoint or self.default_checkpoint(settings), **options)

    def fit(self, settings: Any, raw: dict[str, Any], run: RunDir, ctx: DistContext, resume: bool,
            resume_epoch: int | None) -> dict[str, Any]:
        raise NotImplementedError

    def test(self, settings: Any, raw: dict[str, Any], run: RunDir, ctx: DistContext, checkpoint: str,
             **options: Any) -> dict[str, Any]:
        raise NotImplementedError


class ToySetMethod(Method):
    """A toy-set method (``stdp``, ``conversion``, ``spikeprop``): its module's training loop and test report.

    ``train_loop(settings, run, device, resume)`` trains (writing ``last.pt`` / ``best.pt``);
    ``test_report(settings, run, device, checkpoint)`` evaluates one checkpoint and writes its report.
    :meth:`fit` writes the resolved config, trains, then evaluates ``best.pt`` and prints its table.
    """

    train_loop: ClassVar[Callable[[Any, RunDir, Any, bool], None]]
    test_report: ClassVar[Callable[[Any, RunDir, Any, str], dict[str, Any]]]

    def fit(self, settings: Any, raw: dict[str, Any], run: RunDir, ctx: DistContext, resume: bool,
            resume_epoch: int | None) -> dict[str, Any]:
        run.write_config(self.resolved(raw, settings))
        self.train_loop(settings, run, ctx.device, resume)
        report = self.evaluate(raw, run, "best.pt", ctx=ctx)
        print(report["table"])
        return report

    def test(self, settings: Any, raw: dict[str, Any], run: RunDir, ctx: DistContext, checkpoint: str,
             **options: Any) -> dict[str, Any]:
        return self.test_report(settings, run, ctx.device, checkpoint)


@dataclass(frozen=True)
class MethodConfig:
    """The settings fields shared by the ``stdp`` / ``conversion`` / ``spikeprop`` sections.

    ``dataset``: the toy data set (each method narrows it to a ``Literal`` of its own); stratified
    ``test_fraction`` / ``val_fraction`` splits drawn with ``split_seed``; ``seed`` for weights and
    sampling; ``threads``: torch CPU threads while the method runs (``None``: unchanged);
    ``device``: ``cpu`` | ``cuda`` | ``cuda:N`` | ``auto``. A method redeclares a field to change
    its default; the field keeps its place, so the keys of a resolved config keep this order.
    """

    dataset: str = "digits"
    test_fraction: float = 0.2
    val_fraction: float = 0.1
    split_seed: int = 0
    seed: int = 0
    threads: int | None = None
    device: str = "auto"
