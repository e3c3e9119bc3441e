"""Fast JSON lines: orjson where it can, the standard library where orjson cannot (huge ints)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

import orjson

__all__ = ["dumps_lines", "loads"]


def _dump(record: Mapping[str, Any]) -> bytes:
    try:
        return orjson.dumps(record)
    except TypeError:
        return json.dumps(record, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def dumps_lines(records: Iterable[Mapping[str, Any]]) -> bytes:
    """Records as newline-terminated JSON lines, keys in their original order."""
    parts = [_dump(r) for r in records]
    if not parts:
        return b""
    parts.append(b"")
    return b"\n".join(parts)


def loads(data: bytes | str) -> Any:
    """Parse JSON text; integers beyond 64 bits are kept exactly."""
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError:
        return json.loads(data)
