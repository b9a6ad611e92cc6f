"""Parsing the string parameters of built-in steps. A bad value is a ``PermanentError``: retrying the
same manifest cannot fix it."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from stepkit.errors import PermanentError

ALWAYS = -1
"""``count()`` result for ``"always"``."""


def text(params: Mapping[str, str], key: str, default: str | None = None) -> str | None:
    value = params.get(key)
    return default if value is None or value == "" else value


def required(params: Mapping[str, str], key: str) -> str:
    value = text(params, key)
    if value is None:
        raise PermanentError(f"parameter {key!r} is required", code="BadParameter")
    return value


def seconds(params: Mapping[str, str], key: str, default: float = 0.0) -> float:
    raw = text(params, key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise PermanentError(
            f"parameter {key!r} must be a number of seconds, got {raw!r}", code="BadParameter"
        ) from None
    if not math.isfinite(value) or value < 0:
        raise PermanentError(f"parameter {key!r} must be >= 0 seconds, got {raw!r}", code="BadParameter")
    return value


def count(params: Mapping[str, str], key: str, default: int = 0) -> int:
    """A non-negative integer, or ``"always"`` -> ``ALWAYS``."""
    raw = text(params, key)
    if raw is None:
        return default
    if raw.strip().lower() == "always":
        return ALWAYS
    try:
        value = int(raw)
    except ValueError:
        raise PermanentError(
            f"parameter {key!r} must be an integer or 'always', got {raw!r}", code="BadParameter"
        ) from None
    if value < 0:
        raise PermanentError(f"parameter {key!r} must be >= 0, got {raw!r}", code="BadParameter")
    return value


def choice(params: Mapping[str, str], key: str, allowed: tuple[str, ...], default: str) -> str:
    raw = text(params, key, default)
    assert raw is not None
    if raw not in allowed:
        raise PermanentError(
            f"parameter {key!r} must be one of {', '.join(allowed)}; got {raw!r}", code="BadParameter"
        )
    return raw


def json_value(params: Mapping[str, str], key: str) -> Any:
    raw = text(params, key)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise PermanentError(f"parameter {key!r} is not valid JSON: {exc}", code="BadParameter") from None


def str_map(params: Mapping[str, str], key: str) -> dict[str, str]:
    """A JSON object of strings (``'{"a": "1"}'``); empty when unset."""
    value = json_value(params, key)
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise PermanentError(f"parameter {key!r} must be a JSON object of strings", code="BadParameter")
    return {str(k): v for k, v in value.items()}
