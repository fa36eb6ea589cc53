"""Generic typed loading of dataclass trees from TOML tables, environment strings and flag values.

Kept apart from ``config.py`` (which declares the sections) so sections owned by other modules
(``VadConfig``, ``SmoothingConfig``, ``MqttConfig``, ``LogConfig``) load with the same rules: every key
must exist, every value must have the field's type, and ``metadata={"min": .., "max": ..}`` bounds hold.
"""

from __future__ import annotations

import dataclasses
import enum
import inspect
import re
import tomllib
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin


class ConfigError(ValueError):
    """A bad configuration value or key; the one-line message names the key and what was expected."""


def field_types(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass (handles ``from __future__ import annotations``)."""
    return typing.get_type_hints(cls)


def describe(tp: Any) -> str:
    """A human name for a type, used in error messages and in ``defaults_toml`` comments."""
    origin, args = get_origin(tp), get_args(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in args)
    if origin in (Union, types.UnionType):
        return " or ".join("none" if a is type(None) else describe(a) for a in args)
    if origin in (list, tuple):
        inner = [a for a in args if a is not Ellipsis]
        return f"list of {describe(inner[0])}" if inner else "list"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return " | ".join(repr(m.value) for m in tp)
    if tp is Path:
        return "path"
    return getattr(tp, "__name__", str(tp))


def coerce(key: str, tp: Any, value: Any, *, from_text: bool = False) -> Any:
    """Check (and for text, parse) ``value`` against ``tp``; ConfigError naming ``key`` otherwise."""
    origin, args = get_origin(tp), get_args(tp)

    def bad() -> ConfigError:
        return ConfigError(f"config key {key}: expected {describe(tp)}, got {value!r}")

    if origin in (Union, types.UnionType):
        if type(None) in args and (
            value is None or (from_text and str(value).strip().lower() in ("", "none", "null"))
        ):
            return None
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(key, a, value, from_text=from_text)
            except ConfigError:
                pass
        raise bad()
    if origin is Literal:
        if value in args:
            return value
        raise ConfigError(f"config key {key}: expected one of {describe(tp)}, got {value!r}")
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        try:
            return tp(value)
        except ValueError:
            raise ConfigError(f"config key {key}: expected one of {describe(tp)}, got {value!r}") from None
    if tp is str:
        if isinstance(value, str):
            return value
        raise bad()
    if tp is Path:
        if isinstance(value, str | Path):
            try:
                return Path(value).expanduser()
            except RuntimeError:  # "~nosuchuser/..."
                raise ConfigError(f"config key {key}: cannot expand ~ in path {str(value)!r}") from None
        raise bad()
    if from_text and isinstance(value, str):
        value = _parse_text(tp, value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise bad()
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad()
    if tp is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
        raise bad()
    if origin in (list, tuple):
        if isinstance(value, str) and from_text:
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise bad()
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"config key {key}: expected {len(args)} values, got {value!r}")
            return tuple(coerce(key, a, v, from_text=from_text) for a, v in zip(args, value, strict=True))
        inner = args[0] if args else Any
        items = [v if inner is Any else coerce(key, inner, v, from_text=from_text) for v in value]
        return tuple(items) if origin is tuple else items
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if not isinstance(value, dict):
            raise bad()
        return build(tp, value, key)
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise bad()


def _parse_text(tp: Any, text: str) -> Any:
    """Parse an environment/flag string as a TOML value (so ``1.5``, ``true``, ``[1, 2]`` work)."""
    s = text.strip()
    if tp is bool:
        low = s.lower()
        if low in ("1", "true", "yes", "on"):
            return True
        if low in ("0", "false", "no", "off"):
            return False
        return text
    try:
        return tomllib.loads(f"v = {s}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def field_comments(cls: type) -> dict[str, str]:
    """Trailing ``# comments`` of a dataclass's field lines (sections other modules own have no metadata)."""
    try:
        source = inspect.getsource(cls)
    except (OSError, TypeError):
        return {}
    out: dict[str, str] = {}
    for line in source.splitlines():
        m = re.match(r"^\s+(\w+)\s*:[^#]*#\s*(.+)$", line)
        if m:
            out[m.group(1)] = m.group(2).strip()
    return out


def check_range(key: str, f: dataclasses.Field[Any], value: Any) -> None:
    lo, hi = f.metadata.get("min"), f.metadata.get("max")
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return
    if lo is not None and value < lo:
        raise ConfigError(f"config key {key}: must be >= {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise ConfigError(f"config key {key}: must be <= {hi}, got {value!r}")


def build(cls: type, table: dict[str, Any], prefix: str, base: Any = None) -> Any:
    """A ``cls`` from ``base`` (or defaults) with ``table``'s keys applied; unknown keys are errors."""
    hints = field_types(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k in table:
        if k not in fields:
            known = ", ".join(sorted(fields))
            raise ConfigError(f"config key {prefix}.{k}: unknown key (known: {known})")
    values: dict[str, Any] = {}
    for name, f in fields.items():
        if not f.init:
            continue
        key = f"{prefix}.{name}"
        if name in table:
            values[name] = coerce(key, hints[name], table[name])
        elif base is not None:
            values[name] = getattr(base, name)
        else:
            continue
        check_range(key, f, values[name])
    try:
        return cls(**values)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config section {prefix}: {exc}") from None


def apply_text(obj: Any, path: list[str], text: str, key: str) -> Any:
    """A copy of dataclass ``obj`` with the field at ``path`` set from the string ``text``."""
    cls = type(obj)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    name = path[0]
    if name not in fields:
        raise ConfigError(f"config key {key}: unknown key (known: {', '.join(sorted(fields))})")
    if len(path) > 1:
        child = getattr(obj, name)
        if not dataclasses.is_dataclass(child):
            raise ConfigError(f"config key {key}: {name} has no sub-keys")
        return dataclasses.replace(obj, **{name: apply_text(child, path[1:], text, key)})
    value = coerce(key, field_types(cls)[name], text, from_text=True)
    check_range(key, fields[name], value)
    try:
        return dataclasses.replace(obj, **{name: value})
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"config key {key}: {exc}") from None


def toml_value(value: Any) -> str:
    """A TOML literal for a default value (``None`` cannot be written: callers comment it out)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, enum.Enum):
        return toml_value(value.value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str | Path):
        s = str(value).replace("\\", "\\\\").replace('"', '\\"')
        return f'"{s}"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + "}"
    return f'"{value}"'
