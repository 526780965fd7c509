"""Turning setting values (from TOML, a spider's dict, or ``-s NAME=VALUE`` text) into
typed, checked values: the conversions and per-setting checks behind ``Settings``."""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Callable, Mapping
from typing import Any

from .errors import SettingsError
from .loglines import cap, scrub

__all__ = ["coerce"]


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def coerce(spec: Any, value: Any, source: str) -> Any:
    """``value`` converted to the type of the setting ``spec`` (a dataclass field) and checked,
    or a SettingsError naming the setting, the value (secrets hidden) and ``source``."""
    name = spec.name
    kind = _kind(spec.type)
    where = f"{name}={cap(scrub(repr(value)), 200)} ({source})"
    try:
        converted: Any = _CONVERTERS[kind](value)
        text = str(spec.type)
        if text == "list[int]":
            converted = [_to_int(v) for v in converted]
        elif text == "dict[str, float]":
            converted = {k: _to_float(v) for k, v in converted.items()}
    except (ValueError, TypeError) as exc:
        raise SettingsError(f"bad value {where}: {exc}") from None
    minimum = spec.metadata["minimum"]
    if minimum is not None and converted < minimum:
        raise SettingsError(f"bad value {where}: must be >= {minimum}")
    choices = spec.metadata["choices"]
    if choices:
        canonical = {choice.lower(): choice for choice in choices}.get(converted.strip().lower())
        if canonical is None:
            raise SettingsError(f"bad value {where}: must be one of {', '.join(choices)}")
        converted = canonical
    checks: list[Callable[[Any], None]] = (
        [_check_str_dict] if str(spec.type) == "dict[str, str]" else []
    )
    if name in _CHECKS:
        checks.append(_CHECKS[name])
    for check in checks:
        try:
            check(converted)
        except ValueError as exc:
            raise SettingsError(f"bad value {where}: {exc}") from None
    return converted


def _kind(annotation: Any) -> str:
    text = str(annotation)  # annotations are strings under `from __future__ import annotations`
    for kind in ("int", "float", "str", "bool"):
        if text == kind:
            return kind
    if text.startswith("dict"):
        return "dict"
    if text.startswith("list"):
        return "list"
    raise TypeError(f"unsupported setting type {annotation!r}")


def _to_int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TypeError(f"expected an integer, got {type(value).__name__}")
    if isinstance(value, str):
        try:
            return int(value.strip().replace("_", ""))
        except ValueError:
            raise ValueError("expected an integer") from None
    return value


def _to_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise TypeError(f"expected a number, got {type(value).__name__}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError("expected a number") from None
    if not math.isfinite(number):
        raise ValueError("expected a finite number")
    return number


def _to_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError("expected true or false")


def _to_str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {type(value).__name__}")
    return value


def _to_list(value: Any) -> list[Any]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            parsed = json.loads(text)
            if not isinstance(parsed, list):
                raise ValueError("expected a JSON list")
            return parsed
        return [part.strip() for part in text.split(",") if part.strip()]
    if isinstance(value, (list, tuple)):
        return list(value)
    raise TypeError(f"expected a list, got {type(value).__name__}")


def _to_dict(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            parsed = json.loads(text)
            if not isinstance(parsed, dict):
                raise ValueError("expected a JSON object")
            return parsed
        result: dict[str, Any] = {}
        for part in filter(None, (p.strip() for p in text.split(","))):
            key, sep, item = part.partition(":")
            if not sep or not key.strip():
                raise ValueError(f"expected key:value pairs separated by commas, got {part!r}")
            result[key.strip()] = item.strip()
        return result
    if isinstance(value, Mapping):
        return dict(value)
    raise TypeError(f"expected a mapping, got {type(value).__name__}")


def _check_str_dict(mapping: dict[str, Any]) -> None:
    for key, item in mapping.items():
        if not isinstance(key, str) or not isinstance(item, str):
            shown = f"a {type(item).__name__}" if isinstance(key, str) else repr(item)[:60]
            raise ValueError(f"expected string keys and values, got {key!r:.60}: {shown}")


def _check_resolve(mapping: dict[str, str]) -> None:
    for host, ip in mapping.items():
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise ValueError(
                f"{host}:{ip} does not map to an IP address (expected e.g. {host}:127.0.0.1)"
            ) from None


def _check_networks(networks: list[str]) -> None:
    for network in networks:
        try:
            ipaddress.ip_network(str(network), strict=False)
        except ValueError:
            raise ValueError(
                f"{network!r} is not a network (expected CIDR such as 10.0.0.0/8 or 127.0.0.2/32)"
            ) from None


_CHECKS: dict[str, Callable[[Any], None]] = {
    "RESOLVE": _check_resolve,
    "ALLOWED_NETWORKS": _check_networks,
}

_CONVERTERS = {
    "int": _to_int,
    "float": _to_float,
    "bool": _to_bool,
    "str": _to_str,
    "list": _to_list,
    "dict": _to_dict,
}
