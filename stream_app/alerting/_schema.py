"""Tiny declarative validator for the alerting TOML (one-line errors naming file and field)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class AlertConfigError(ValueError):
    """The alerting configuration is invalid; the message is one line naming the file and the field."""


_MISSING = object()


@dataclass(frozen=True, slots=True)
class Field:
    """One expected key of a TOML table."""

    kind: type | tuple[type, ...]
    default: Any = _MISSING
    check: Callable[[Any], str | None] | None = None  # returns an error text or None

    @property
    def required(self) -> bool:
        return self.default is _MISSING


def type_name(kind: type | tuple[type, ...]) -> str:
    if isinstance(kind, tuple):
        return " or ".join(type_name(k) for k in kind)
    return {int: "integer", float: "number", str: "string", bool: "boolean", list: "array", dict: "table"}.get(
        kind, kind.__name__
    )


def _is_instance(value: Any, kind: type | tuple[type, ...]) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    for k in kinds:
        if k is bool:
            if isinstance(value, bool):
                return True
        elif k is int:
            if isinstance(value, int) and not isinstance(value, bool):
                return True
        elif k is float:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return True
        elif isinstance(value, k):
            return True
    return False


def fail(source: str, path: str, message: str) -> AlertConfigError:
    return AlertConfigError(f"{source}: {path}: {message}" if path else f"{source}: {message}")


def check_table(data: Any, spec: Mapping[str, Field], source: str, path: str) -> dict[str, Any]:
    """Validate ``data`` against ``spec``; return a dict with defaults filled in (floats coerced)."""
    if not isinstance(data, Mapping):
        raise fail(source, path, f"expected a table, got {type(data).__name__}")
    unknown = sorted(set(data) - set(spec))
    if unknown:
        raise fail(source, _join(path, unknown[0]), f"unknown key (expected one of: {', '.join(sorted(spec))})")
    out: dict[str, Any] = {}
    for name, fld in spec.items():
        where = _join(path, name)
        if name not in data:
            if fld.required:
                raise fail(source, where, "missing required field")
            out[name] = fld.default
            continue
        value = data[name]
        if not _is_instance(value, fld.kind):
            raise fail(source, where, f"expected {type_name(fld.kind)}, got {type_name(type(value))} {value!r:.40}")
        if fld.kind is float and isinstance(value, int):
            value = float(value)
        if fld.check is not None:
            problem = fld.check(value)
            if problem:
                raise fail(source, where, problem)
        out[name] = value
    return out


def subtables(data: Any, allowed: Sequence[str], what: str, source: str, path: str) -> Mapping[str, Any]:
    """A table of named sub-tables (``[health.<rule>]``, ``[delivery.<channel>]``...): each name allowed."""
    if not isinstance(data, Mapping):
        raise fail(source, path, "expected a table")
    for name in data:
        if name not in allowed:
            raise fail(source, _join(path, str(name)), f"unknown {what} (expected one of: {', '.join(allowed)})")
    return data


def one_of(allowed: Sequence[str], what: str) -> Callable[[Any], str | None]:
    """A field check: the value is one of ``allowed``."""
    return lambda v: None if v in allowed else f"unknown {what} {v!r} (expected one of: {', '.join(allowed)})"


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def positive(value: float) -> str | None:
    return None if value > 0 else f"must be > 0, got {value}"


def non_negative(value: float) -> str | None:
    return None if value >= 0 else f"must be >= 0, got {value}"


def unit_interval(value: float) -> str | None:
    return None if 0 < value <= 1 else f"must be in (0, 1], got {value}"


def str_list(value: list) -> str | None:
    bad = [v for v in value if not isinstance(v, str)]
    return f"expected an array of strings, got {bad[0]!r}" if bad else None
