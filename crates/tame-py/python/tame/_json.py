"""Checks and conversions of call data to JSON-compatible values."""

from __future__ import annotations

import dataclasses
import datetime as _dt
import enum
import math
import os
import uuid
from typing import Any, Mapping

MAX_DEPTH = 64

_PLAIN = (str, int, bool, type(None))


def check_json(value: Any, where: str, depth: int = 0) -> None:
    """Raise TypeError/ValueError naming the path of the first value that is
    not plain JSON (dict with str keys, list/tuple, str, int, float, bool, None)."""
    if depth > MAX_DEPTH:
        raise ValueError(f"{where}: nested deeper than {MAX_DEPTH} levels")
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return
    if kind is dict:
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: keys must be strings, got {type(key).__name__} `{key!r}`")
            if type(item) not in _PLAIN:
                check_json(item, f"{where}.{key}", depth + 1)
        return
    if isinstance(value, (str, bool, int)):
        return
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError(f"{where}: {value} is not a JSON number")
        return
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise TypeError(f"{where}: keys must be strings, got {type(key).__name__} `{key!r}`")
            check_json(item, f"{where}.{key}", depth + 1)
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            check_json(item, f"{where}[{i}]", depth + 1)
        return
    raise TypeError(f"{where}: {type(value).__name__} is not JSON-serialisable")


def require_mapping(value: Any, where: str) -> dict:
    """``None`` becomes ``{}``; a mapping is checked and copied; else TypeError."""
    if value is None:
        return {}
    if type(value) is dict:
        check_json(value, where)
        return dict(value)
    if not isinstance(value, Mapping):
        raise TypeError(f"{where} must be a dict, got {type(value).__name__}")
    check_json(value, where)
    return dict(value)


def to_jsonable(value: Any, depth: int = 0) -> Any:
    """Lenient conversion for values taken from a function's signature:
    common types map naturally, anything else becomes its ``repr``."""
    if depth > MAX_DEPTH:
        return "<nested too deeply>"
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, enum.Enum):
        return to_jsonable(value.value, depth + 1)
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v, depth + 1) for v in value]
    if isinstance(value, (bytes, bytearray)):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError:
            return bytes(value).hex()
    if isinstance(value, (_dt.datetime, _dt.date, _dt.time)):
        return value.isoformat()
    if isinstance(value, _dt.timedelta):
        return value.total_seconds()
    if isinstance(value, (uuid.UUID,)):
        return str(value)
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return to_jsonable(dataclasses.asdict(value), depth + 1)
    return repr(value)
