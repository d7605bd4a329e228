"""Reading untrusted JSON (a model file's metadata): every field through these checks, so
that a field of the wrong type or range is a ValueError naming it, never a TypeError
deep inside, a silent conversion (``"3"`` or ``3.7`` taken as 3) or a NaN that spreads."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

__all__ = ["MISSING", "float_array", "get", "int_array", "json_metadata", "show"]

MISSING: Any = object()  # no default: the field is required
# What each kind accepts (a bool is never a number, though Python's bool is an int).
_KINDS: dict[str, tuple[type, ...]] = {"int": (int,), "number": (int, float), "text": (str,), "list": (list,),
                                       "object": (dict,), "bool": (bool,)}
_NAMES = {"int": "a whole number", "number": "a finite number", "text": "text", "list": "a list",
          "object": "an object", "bool": "true or false"}


def json_metadata(metadata: dict[bytes, bytes] | None, key: bytes) -> Any:
    """The JSON document under ``key`` of Arrow schema metadata, None if there is none."""
    raw = (metadata or {}).get(key)
    if raw is None:
        return None
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep to parse
        raise ValueError(f"its {key.decode(errors='replace')} metadata is not JSON ({type(exc).__name__})") from exc


def _fits(value: Any, kind: str) -> bool:
    if isinstance(value, bool) and kind != "bool":
        return False
    return isinstance(value, _KINDS[kind]) and not (kind == "number" and not math.isfinite(value))


def get(doc: Any, key: str, kind: str, where: str, default: Any = MISSING, low: float | None = None,
        high: float | None = None, optional: bool = False) -> Any:
    """``doc[key]``, refused unless of JSON ``kind`` (int, number: finite, text, list,
    object, bool), within [``low``, ``high``] if given, or null if ``optional``;
    ``default`` if the key is absent (required if no default)."""
    if not isinstance(doc, dict):
        raise ValueError(f"{where} must be a JSON object, got {type(doc).__name__}")
    if key not in doc:
        if default is MISSING:
            raise ValueError(f"{where}: {key!r} is missing")
        return default
    value = doc[key]
    if value is None and optional:
        return None
    if not _fits(value, kind):
        raise ValueError(f"{where}: {key!r} must be {_NAMES[kind]}{' or null' if optional else ''}, got {show(value)}")
    if (low is not None and value < low) or (high is not None and value > high):
        raise ValueError(f"{where}: {key!r} must be from {low} to {high}, got {value!r}")
    return value


def int_array(values: Any, where: str) -> np.ndarray:
    """A JSON list of whole numbers (each fitting int64) as an int64 array."""
    if not isinstance(values, list) or not all(type(v) is int for v in values):
        raise ValueError(f"{where} must be a list of whole numbers")
    try:
        return np.array(values, np.int64)
    except OverflowError as exc:
        raise ValueError(f"{where} holds numbers beyond 64 bits") from exc


def float_array(values: Any, where: str) -> np.ndarray:
    """A JSON list of numbers (NaN and infinities included: the caller checks them) as float64."""
    if not isinstance(values, list) or not all(type(v) is float or type(v) is int for v in values):
        raise ValueError(f"{where} must be a list of numbers")
    try:
        return np.array(values, np.float64)
    except OverflowError as exc:
        raise ValueError(f"{where} holds numbers beyond float64") from exc


def show(value: Any) -> str:
    """A wrong value as JSON, cut short (it may be huge)."""
    try:
        text = json.dumps(value)
    except (TypeError, ValueError, RecursionError):  # nested deep: no text for it
        text = f"a {type(value).__name__}"
    return text[:40] + ("..." if len(text) > 40 else "")
