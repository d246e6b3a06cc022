"""Typed, frozen configuration objects built from YAML.

Each stage owns one frozen dataclass (``EnhanceConfig``, ``SegmentConfig``, ...). This module
holds the shared machinery only:

* :func:`from_dict` builds a dataclass from plain data, recursively, rejecting unknown keys and
  values of the wrong type with a :class:`~mammo_ray.errors.ConfigError` that names the key;
* :func:`load_yaml` reads a YAML mapping from a file;
* :func:`apply_overrides` applies ``key.sub=value`` edits (the ``--set`` flag) to plain data;
* :func:`to_dict` and :func:`config_key` turn a config back into plain data and a stable hash.

A dataclass validates its own values in ``__post_init__`` by raising ``ValueError``; the
message is re-raised as a ``ConfigError`` that names where the value came from.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from mammo_ray.errors import ConfigError

__all__ = [
    "from_dict",
    "load_yaml",
    "yaml_problem",
    "apply_overrides",
    "set_dotted",
    "flatten_dotted",
    "to_dict",
    "config_key",
    "load_config",
]

T = TypeVar("T")


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML file whose top level is a mapping (an empty file is an empty mapping)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a directory, not a config file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config file ({exc.strerror})") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start})"
        ) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: {yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: top level must be a mapping of keys, got {type(data).__name__}")
    return data


def yaml_problem(exc: yaml.YAMLError) -> str:
    """One line for a YAML error: ``line L, column C: not valid YAML (problem)``.

    >>> try:
    ...     yaml.safe_load("a: [1, 2")
    ... except yaml.YAMLError as exc:
    ...     print(yaml_problem(exc))
    line 1, column 9: not valid YAML (expected ',' or ']', but got '<stream end>')
    """
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}not valid YAML ({problem})"


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the annotation ``tp`` and return it in canonical form."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for option in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, option, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(
            errors[0] if len(errors) == 1 else f"{where}: {value!r} matches none of {tp}"
        )
    if origin is typing.Literal:
        if value not in args:
            choices = ", ".join(repr(a) for a in args)
            raise ConfigError(f"{where}: {value!r} is not one of {choices}")
        return value
    if dataclasses.is_dataclass(tp):
        if isinstance(value, tp):
            return value
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping for {tp.__name__}, got {value!r}")
        return from_dict(tp, value, where=where)
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where}: expected a list of {len(args)} items, got {value!r}")
        return tuple(
            _coerce(v, a, f"{where}[{i}]") for i, (v, a) in enumerate(zip(value, args, strict=True))
        )
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        key_tp, val_tp = args or (Any, Any)
        return {
            _coerce(k, key_tp, where): _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()
        }
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
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
    raise TypeError(f"{where}: unsupported annotation {_type_name(tp)}")


def from_dict(cls: type[T], data: Mapping[str, Any], *, where: str = "config") -> T:
    """Build the frozen dataclass ``cls`` from ``data``.

    Unknown keys, missing required keys, values of the wrong type and values that the
    dataclass's ``__post_init__`` rejects (``ValueError``) raise :class:`ConfigError`
    naming ``where`` and the key.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        known = ", ".join(sorted(fields))
        raise ConfigError(f"{where}: unknown key {unknown[0]!r} (known keys: {known})")
    kwargs = {name: _coerce(value, hints[name], f"{where}.{name}") for name, value in data.items()}
    missing = [
        name
        for name, f in fields.items()
        if name not in kwargs
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise ConfigError(f"{where}: missing required key {missing[0]!r}")
    try:
        return cls(**kwargs)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def load_config(cls: type[T], path: str | Path | None, overrides: Sequence[str] = ()) -> T:
    """``from_dict(cls, load_yaml(path))`` plus ``--set`` overrides; no path: the defaults."""
    data = load_yaml(path) if path is not None else {}
    data = apply_overrides(data, overrides)
    return from_dict(cls, data, where=str(path) if path is not None else "config")


def apply_overrides(data: Mapping[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Return a copy of ``data`` with each ``dotted.key=value`` applied.

    The value is parsed as a YAML scalar or flow collection (``3``, ``1e-3``, ``true``,
    ``[224, 96]``, ``none`` stays the string ``"none"``). Validation of keys and values is
    left to :func:`from_dict`, so an unknown key is reported the same way as in a file.
    """
    result: dict[str, Any] = json.loads(json.dumps(data))
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        try:
            set_dotted(result, key.strip(), value)
        except ConfigError as exc:
            raise ConfigError(f"--set {item!r}: {exc}") from None
    return result


def set_dotted(data: dict[str, Any], key: str, value: Any) -> None:
    """Set ``data["a"]["b"] = value`` for ``key="a.b"``, creating sections as needed."""
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{part!r} is not a section")
        node = child
    node[parts[-1]] = value


def flatten_dotted(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """The inverse of :func:`set_dotted`: ``{"optim": {"lr": 0.1}}`` -> ``{"optim.lr": 0.1}``.

    Only mappings are opened; lists and other values stay values.
    """
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            flat.update(flatten_dotted(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def to_dict(config: Any) -> dict[str, Any]:
    """Plain, JSON-serialisable data of a config dataclass (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config)))


def config_key(config: Any, *extra: str, length: int = 16) -> str:
    """Stable hash of a config and extra strings: ``sha256(canonical JSON | extra...)[:length]``."""
    payload = json.dumps(to_dict(config), sort_keys=True, separators=(",", ":"))
    digest = hashlib.sha256(payload.encode())
    for part in extra:
        digest.update(b"\x00" + part.encode())
    return digest.hexdigest()[:length]
