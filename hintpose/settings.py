"""Typed, validated settings from YAML: one generic builder for frozen dataclasses.

Every settings dataclass carries its valid range in field ``metadata`` (``min``/``max``
inclusive, ``gt``/``lt`` exclusive, ``choices``). :func:`build` walks a YAML mapping against
such a dataclass, so an unknown key, a missing one without a default, a wrong type, a number
that is not finite or an out-of-range value stops with one message naming the key path, e.g.
``pose.data.sigma must be > 0, got -1``; a value is shown shortened to ``MAX_SHOWN`` characters.
Every size and count has an upper bound too (the constants below), so a typo cannot start a
run that needs terabytes or years.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import reprlib
import types
import typing
from dataclasses import field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from hintpose.errors import ConfigError

T = TypeVar("T")

#: Upper bounds shared by the settings: image counts, person/sample counts, epochs, batch sizes,
#: data loader workers, network input sides (pixels), channel widths, seeds.
MAX_IMAGES = 2_000_000
MAX_SAMPLES = 20_000_000
MAX_EPOCHS = 1000
MAX_BATCH = 4096
MAX_WORKERS = 64
MAX_INPUT = 2048
MAX_WIDTH = 256
MAX_CHANNELS = 2048
MAX_SEED = 2**31 - 1

#: Longest shown value in a message (a huge value, say an expanded YAML alias, is cut).
MAX_SHOWN = 80
_REPR = reprlib.Repr()
_REPR.maxlevel, _REPR.maxlist, _REPR.maxtuple, _REPR.maxdict = 3, 8, 8, 6
_REPR.maxstring, _REPR.maxother, _REPR.maxlong = MAX_SHOWN, MAX_SHOWN, MAX_SHOWN


def shown(value: Any) -> str:
    """``repr(value)`` for a message, at most ``MAX_SHOWN`` characters (built without ever
    making the whole repr of a huge value)."""
    try:
        text = _REPR.repr(value)
    except ValueError:  # an int of more digits than Python converts to text
        text = f"<{type(value).__name__} too long to show>"
    return text if len(text) <= MAX_SHOWN else text[: MAX_SHOWN - 3] + "..."


#: Most values a params file may hold, every use of a YAML alias counted in full: the
#: committed params.yaml has about 400; an alias bomb (billion laughs) has billions.
MAX_YAML_NODES = 100_000


def _expanded_size(root: yaml.Node, where: Path) -> int:
    """Nodes of the YAML tree ``root`` with every alias expanded (capped at just over
    ``MAX_YAML_NODES``); a recursive alias is a ConfigError."""
    sizes: dict[int, int] = {}
    entered: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else node.value if isinstance(node, yaml.SequenceNode) else [])
        if done:
            entered.discard(id(node))
            sizes[id(node)] = min(MAX_YAML_NODES + 1, 1 + sum(sizes[id(c)] for c in children))
        elif id(node) in entered:
            raise ConfigError(f"{where}: line {node.start_mark.line + 1}: a YAML alias refers to "
                              "a value that contains it (recursive alias)")
        elif id(node) not in sizes:
            entered.add(id(node))
            stack.append((node, True))
            stack += [(c, False) for c in children if id(c) not in sizes]
    return sizes[id(root)]


def read_yaml(path: Path) -> Any:
    """Parse a settings file (params.yaml) as safe YAML, refusing text that is not UTF-8,
    nesting too deep for the parser, and aliases that expand beyond ``MAX_YAML_NODES`` values
    (checked on the parsed tree, before any value is built); each a ConfigError naming it."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, path) > MAX_YAML_NODES:
            raise ConfigError(f"{path}: its YAML expands to more than {MAX_YAML_NODES:,} values "
                              "(aliases of aliases: an alias bomb?); write the values out")
        return loader.construct_document(node)
    except ConfigError:
        raise
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({str(exc)[:300]})") from None
    except RecursionError:
        raise ConfigError(f"{path}: not valid YAML (nested too deeply)") from None
    except ValueError as exc:  # e.g. an integer of more digits than Python converts
        raise ConfigError(f"{path}: not valid YAML ({str(exc)[:200]})") from None
    finally:
        loader.dispose()


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
            raise ConfigError(f"{where} must be {sign} {meta[key]}, got {shown(value)}")
    if "choices" in meta and value not in meta["choices"]:
        choices = ", ".join(repr(c) for c in meta["choices"])
        raise ConfigError(f"{where} must be one of {choices}, got {shown(value)}")


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
            raise ConfigError(f"{where} must be true or false, got {shown(value)}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where} must be an integer, got {shown(value)}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(f"{where} must be a number, got {shown(value)}")
        if not math.isfinite(value):
            raise ConfigError(f"{where} must be a finite number, got {shown(value)}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where} must be a string, got {shown(value)}")
        return value
    if origin is tuple:
        args = typing.get_args(tp)
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{where} must be a list, got {shown(value)}")
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_convert(v, args[0], f"{where}[{i}]") for i, v in enumerate(value))
        if len(value) != len(args):
            raise ConfigError(f"{where} must be a list of {len(args)} values, "
                              f"got {shown(value)}")
        pairs = enumerate(zip(value, args, strict=True))
        return tuple(_convert(v, a, f"{where}[{i}]") for i, (v, a) in pairs)
    if origin is dict:
        key_tp, val_tp = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ConfigError(f"{where} must be a mapping, got {shown(value)}")
        return {
            _convert(k, key_tp, f"{where} key"): _convert(v, val_tp, _join(where, str(k)))
            for k, v in value.items()
        }
    raise TypeError(f"unsupported settings type {tp!r} at {where}")  # a programming error


def _join(where: str, key: str) -> str:
    key = key if len(key) <= MAX_SHOWN else key[: MAX_SHOWN - 3] + "..."
    return f"{where}.{key}" if where else key


def build(cls: type[T], data: Any, where: str = "") -> T:
    """Build the settings dataclass ``cls`` from a YAML mapping, validating every key."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{where or 'the file'} must be a mapping of keys, got {shown(data)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [k for k in data if k not in fields]
    if unknown:
        name = unknown[0] if isinstance(unknown[0], str) else shown(unknown[0])
        close = difflib.get_close_matches(str(name), list(fields), n=3)
        known = (f"did you mean {' or '.join(close)}?" if close else
                 f"known: {', '.join(list(fields)[:12])}{', ...' if len(fields) > 12 else ''}")
        raise ConfigError(f"{_join(where, name)} is not a known key ({known})")
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
