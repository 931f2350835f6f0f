"""The config machinery every method uses: YAML file + command-line overrides -> typed, frozen dataclasses.

* :func:`load_yaml` reads a config file into a plain dict (``1e-3`` is a float);
* :func:`parse_cli` splits a command line into positionals, ``--section.key value`` overrides and
  the entry point's own options; :class:`CliOptions` (given by the method) maps shorthand flags
  (seed 003's ``--lr``, ``--FS a0 D A``) and switches onto config paths;
* :func:`apply_overrides` sets the overrides, each value parsed by the type of its key in the
  settings class the method hands in (:func:`key_type`); unknown keys are errors listing the valid ones;
* ``dataclass_from_dict(cls, data, where)`` builds ``cls`` from a mapping, recursing into nested
  dataclass fields, and raises ``ConfigError`` naming the offending key (with its dotted path) and
  listing the valid keys when a key is unknown or a value has the wrong type. ``0`` and ``False``
  are values, never "unset".
"""

from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = [
    "CliOptions",
    "ConfigError",
    "ParsedArgs",
    "apply_overrides",
    "dataclass_from_dict",
    "dataclass_to_dict",
    "key_type",
    "load_yaml",
    "parse_cli",
]

T = TypeVar("T")


class ConfigError(ValueError):
    """A config value or key is invalid; the message names it."""


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(f"{where}: {value!r} matches none of {_type_name(tp)}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: {value!r} is not one of {list(args)}")
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {type(value).__name__}")
        return dataclass_from_dict(tp, value, where)
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__} {value!r}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}: {value!r}")
            return tuple(_coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        out = [_coerce(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {type(value).__name__}")
        return dict(value)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def dataclass_from_dict(cls: type[T], data: dict[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types raise ``ConfigError``."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {sorted(fields)}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(value, hints[name], f"{where}.{name}")
    missing = [
        n for n, f in fields.items()
        if n not in kwargs and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing required key(s) {missing}")
    try:
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def dataclass_to_dict(obj: Any) -> Any:
    """Plain YAML-able data (tuples become lists) from a dataclass tree."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: dataclass_to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [dataclass_to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: dataclass_to_dict(v) for k, v in obj.items()}
    return obj


# ----------------------------------------------------------------------------------------- YAML
class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads ``1e-3`` (no dot) as a float, as people write learning rates."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9][0-9_]*)(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a config file into a plain dict; a missing file or invalid YAML is a clear error."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        data = yaml.load(path.read_text(), Loader=_Loader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: the top level must be a mapping, got {type(data).__name__}")
    return data


# ----------------------------------------------------------------------------------------- command line
@dataclass(frozen=True)
class CliOptions:
    """What a method's command line accepts besides ``--section.key value``.

    ``flags``: shorthand flag -> config paths (values spread over the paths in order);
    ``switches``: flag without a value -> ``(path, value)``; ``top_level``: keys that may be given
    without a section (``--seed 3``).
    """

    flags: dict[str, tuple[str, ...]] = field(default_factory=dict)
    switches: dict[str, tuple[str, Any]] = field(default_factory=dict)
    top_level: frozenset[str] = frozenset()


@dataclass
class ParsedArgs:
    """Result of :func:`parse_cli`: positional arguments, ``(option, values)`` in order, special options."""

    positional: list[str]
    options: list[tuple[str, list[str]]]
    special: dict[str, list[str]]

    def overrides(self, cli: CliOptions) -> list[tuple[str, list[str] | Any]]:
        """The options as ``(dotted path, tokens)`` overrides of ``cli``; an unknown option is a ``ConfigError``.

        ``--a.b.c v1 v2`` -> ``("a.b.c", ["v1", "v2"])``; a shorthand flag with several paths spreads
        its values over them (``--FS 0.2 16 200``) and must get exactly that many values.
        """
        out: list[tuple[str, list[str] | Any]] = []
        for key, values in self.options:
            if key in cli.switches:
                if values:
                    raise ConfigError(f"{key} takes no value, got {values}")
                out.append(cli.switches[key])
            elif key in cli.flags:
                paths = cli.flags[key]
                if not values:
                    raise ConfigError(f"{key} needs a value")
                if len(paths) == 1:
                    out.append((paths[0], values))
                elif len(values) != len(paths):
                    raise ConfigError(f"{key} takes {len(paths)} values ({', '.join(paths)}), got {len(values)}: {values}")
                else:
                    out.extend((p, [v]) for p, v in zip(paths, values))
            elif "." in key[2:] or key[2:] in cli.top_level:
                if not values:
                    raise ConfigError(f"{key} needs a value")
                out.append((key[2:], values))
            else:
                valid = sorted(set(cli.flags) | set(cli.switches))
                raise ConfigError(
                    f"unknown option {key}; use --section.key value (e.g. --train.lr 1e-3)"
                    + (f" or one of {valid}" if valid else "")
                )
        return out


def parse_cli(argv: list[str], special: tuple[str, ...] = ()) -> ParsedArgs:
    """Split ``argv`` into positionals, ``--option values`` and the ``special`` options (e.g. ``--path_to_yaml``).

    A token starting with ``--`` starts a new option (negative numbers like ``-1`` are values);
    ``--key=value`` gives one value. What an option means is decided later
    (:meth:`ParsedArgs.overrides`), once the config, and with it the method, is known.
    """
    positional: list[str] = []
    options: list[tuple[str, list[str]]] = []
    specials: dict[str, list[str]] = {}
    i = 0
    while i < len(argv):
        tok = argv[i]
        if not tok.startswith("--"):
            positional.append(tok)
            i += 1
            continue
        key, eq, inline = tok.partition("=")
        values: list[str] = [inline] if eq else []
        i += 1
        if not eq:
            while i < len(argv) and not argv[i].startswith("--"):
                values.append(argv[i])
                i += 1
        if key in special:
            specials[key] = values
        else:
            options.append((key, values))
    return ParsedArgs(positional, options, specials)


def _scalar(token: str) -> Any:
    """Untyped value: int, float, bool, null, a YAML flow collection, else the string itself."""
    low = token.lower()
    if low in ("none", "null", "~"):
        return None
    if low in ("true", "false"):
        return low == "true"
    for conv in (int, float):
        try:
            return conv(token)
        except ValueError:
            pass
    if token[:1] in "[{":
        try:
            return yaml.safe_load(token)
        except yaml.YAMLError as exc:
            raise ConfigError(f"cannot parse {token!r}: {exc}") from exc
    return token


def _untyped(tokens: list[str]) -> Any:
    """Tokens without a known type: one scalar, a YAML flow collection (possibly split by the shell), or a list."""
    if tokens[0][:1] in "[{":
        return _scalar(" ".join(tokens))
    return [_scalar(t) for t in tokens] if len(tokens) > 1 else _scalar(tokens[0])


def _typed(tokens: list[str], tp: Any, where: str) -> Any:
    """Parse command-line tokens by the type ``tp`` of the key ``where``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if len(tokens) == 1 and tokens[0].lower() in ("none", "null", "~") and type(None) in args:
            return None
        non_none = [a for a in args if a is not type(None)]
        if len(non_none) == 1:
            return _typed(tokens, non_none[0], where)
        return _untyped(tokens)
    if origin in (list, tuple):
        if tokens and tokens[0][:1] == "[":  # a YAML flow list, possibly split by the shell
            return _scalar(" ".join(tokens))
        item = args[0] if args else Any
        return [_typed([t], item, f"{where}[{i}]") for i, t in enumerate(tokens)]
    if len(tokens) != 1:
        raise ConfigError(f"{where} takes one value, got {len(tokens)}: {tokens}")
    token = tokens[0]
    if tp is bool:
        low = token.lower()
        if low in ("true", "1", "yes", "on"):
            return True
        if low in ("false", "0", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true/false, got {token!r}")
    if tp is int:
        try:
            return int(token)
        except ValueError:
            raise ConfigError(f"{where}: expected an integer, got {token!r}") from None
    if tp is float:
        try:
            return float(token)
        except ValueError:
            raise ConfigError(f"{where}: expected a number, got {token!r}") from None
    if tp is str or origin is typing.Literal:
        return token
    return _untyped(tokens)


def key_type(root: Any, path: list[str], prefix: tuple[str, ...] = ()) -> Any:
    """The type of the key ``path`` in the settings class ``root``; ``Any`` under free-form dicts.

    An unknown key raises ``ConfigError`` naming ``--<prefix.path>`` and listing the valid keys.
    """
    tp: Any = root
    for depth, key in enumerate(path):
        where = ".".join([*prefix, *path[: depth + 1]])
        if typing.get_origin(tp) in (typing.Union, types.UnionType):
            inner = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)]
            tp = inner[0] if inner else Any
        if tp is Any or typing.get_origin(tp) is dict or tp is dict:
            return Any
        if not (dataclasses.is_dataclass(tp) and isinstance(tp, type)):
            raise ConfigError(f"--{where}: {'.'.join([*prefix, *path[:depth]])} is not a section (it has no key {key!r})")
        hints = typing.get_type_hints(tp)
        if key not in hints:
            raise ConfigError(f"--{where}: unknown key {key!r}; valid keys: {sorted(hints)}")
        tp = hints[key]
    return tp


def apply_overrides(
    raw: dict[str, Any], overrides: list[tuple[str, list[str] | Any]],
    types_of: Callable[[dict[str, Any], list[str]], Any] | None = None,
) -> dict[str, Any]:
    """A copy of ``raw`` with each ``(dotted path, tokens)`` set.

    Tokens are parsed by the key's type ``types_of(config so far, keys)`` (the method's
    :meth:`~sjframe.methods.base.Method.key_type`, which raises :class:`ConfigError` for unknown
    keys); without ``types_of`` values are parsed as untyped scalars. Non-list values (from
    switches like ``--best_model``) are set as they are.
    """
    out = copy.deepcopy(raw)
    for path, tokens in overrides:
        keys = path.split(".")
        if any(not k for k in keys):
            raise ConfigError(f"--{path}: empty key in the dotted path")
        if isinstance(tokens, list):
            if types_of is not None:
                value = _typed(tokens, types_of(out, keys), path)
            else:
                value = _untyped(tokens)
        else:
            value = tokens
        node = out
        for k in keys[:-1]:
            child = node.get(k)
            if child is None:
                child = node[k] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--{path}: {k} is a value ({child!r}), not a section")
            node = child
        node[keys[-1]] = value
    return out
