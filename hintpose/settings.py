"""Typed, validated settings from YAML: one generic builder for frozen dataclasses.

Every settings dataclass carries its valid range in field ``metadata`` (``min``/``max``
inclusive, ``gt``/``lt`` exclusive, ``choices``). :func:`build` walks a YAML mapping against
such a dataclass, so an unknown key, a missing one without a default, a wrong type, a number
that is not finite or an out-of-range value stops with one message naming the key path, e.g.
``pose.data.sigma must be > 0, got -1``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import field
from typing import Any, TypeVar

from hintpose.errors import ConfigError

T = TypeVar("T")


def _check_range(value: Any, meta: typing.Mapping[str, Any], where: str) -> None:
    checks = (
        ("min", lambda v, b: v >= b, ">="),
        ("max", lambda v, b: v <= b, "<="),
        ("gt", lambda v, b: v > b, ">"),
        ("lt", lambda v, b: v < b, "<"),
    )
    items = value if isinstance(value, tuple | list) else (value,)
    for key, ok, sign in checks:
        if key in meta and not all(ok(v, meta[key]) for v in items):
            raise ConfigError(f"{where} must be {sign} {meta[key]}, got {value!r}")
    if "choices" in meta and value not in meta["choices"]:
        choices = ", ".join(repr(c) for c in meta["choices"])
        raise ConfigError(f"{where} must be one of {choices}, got {value!r}")


def _convert(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against the type hint ``tp`` and return it in that type."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return build(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _convert(value, inner[0], where)
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where} must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {value!r}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {value!r}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where} must be a list of {len(args)} values, got {value!r}")
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in pairs)
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {value!r}")
        return {
            _convert(k, key_tp, f"{where} key"): _convert(v, val_tp, _join(where, str(k)))
            for k, v in value.items()
        }
    raise TypeError(f"unsupported settings type {tp!r} at {where}")  # a programming error


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def build(cls: type[T], data: Any, where: str = "") -> T:
    """Build the settings dataclass ``cls`` from a YAML mapping, validating every key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'the file'} must be a mapping of keys, got {data!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        raise ConfigError(
            f"{_join(where, unknown[0])} is not a known key (known: {', '.join(fields)})"
        )
    kwargs = {}
    for name, f in fields.items():
        key = _join(where, name)
        if name not in data:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ConfigError(f"{key} is missing")
            continue
        value = _convert(data[name], hints[name], key)
        _check_range(value, f.metadata, key)
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except ConfigError as exc:  # cross-field checks in __post_init__ name keys of `cls`
        raise ConfigError(_join(where, str(exc))) from None


def _sub(cls: type) -> Any:
    return field(default_factory=cls)


def sub(cls: type) -> Any:
    """A field holding the settings dataclass ``cls`` with its defaults."""
    return field(default_factory=cls)


def defaults(cls: type[T]) -> T:
    """``cls`` with every default (what ``build(cls, {})`` gives)."""
    return build(cls, {})


def field_paths(cls: type, prefix: str = "") -> set[str]:
    """Dotted key paths of every leaf field of the settings dataclass ``cls``."""
    hints = typing.get_type_hints(cls)
    out: set[str] = set()
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        key = _join(prefix, f.name)
        if dataclasses.is_dataclass(hints[f.name]):
            out |= field_paths(hints[f.name], key)
        else:
            out.add(key)
    return out
