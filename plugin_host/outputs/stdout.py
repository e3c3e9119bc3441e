"""The ``stdout`` output: JSON lines on standard output, at least once (a pipe cannot be cut
back)."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from .._contract import OutputContext
from .._exceptions import LocalStorageError
from .._jsonl import dumps_lines

__all__ = ["StdoutOutput"]


class StdoutOutput:
    """JSON lines on standard output."""

    manifest: ClassVar[Mapping[str, Any]] = {
        "name": "stdout",
        "description": "Writes each record as one JSON line on standard output (at least once).",
        "settings": {"type": "object", "properties": {}, "additionalProperties": False},
    }

    def __init__(self, settings: Mapping[str, Any], context: OutputContext) -> None:
        self._stream = sys.stdout.buffer
        self._fence = context.fence

    def open(self, committed: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """Nothing to recover: a stream cannot be cut back."""
        return None

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Write the records as JSON lines (none once the run's lease was taken over)."""
        self._fence()
        try:
            self._stream.write(dumps_lines(records))
        except (BrokenPipeError, OSError) as exc:
            raise LocalStorageError(f"standard output cannot be written ({exc})") from None

    def durable(self) -> Mapping[str, Any] | None:
        """Flush standard output."""
        try:
            self._stream.flush()
        except (BrokenPipeError, OSError) as exc:
            raise LocalStorageError(f"standard output cannot be written ({exc})") from None
        return None

    def close(self) -> None:
        """Flush what is left."""
        self.durable()
