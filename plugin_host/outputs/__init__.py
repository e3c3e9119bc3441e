"""The built-in outputs, registered through the same entry-point path as any plugin.

``stdout`` (``stdout.py``): JSON lines on standard output, at least once.
``jsonl`` (``jsonl.py``): JSON lines appended to a file, exactly once across crashes.
``postgres`` (``postgres.py``): rows of a PostgreSQL table, one per record; exactly once
in the state's own database, else at least once made idempotent by a unique
``(pipeline, id)``. Its driver is imported only when a pipeline uses it.
"""

from __future__ import annotations

from typing import Any

from ..hookspecs import hookimpl
from .jsonl import JsonlOutput
from .postgres import PostgresOutput
from .stdout import StdoutOutput

__all__ = ["JsonlOutput", "PostgresOutput", "StdoutOutput", "plugin_host_register_outputs"]


@hookimpl
def plugin_host_register_outputs(register: Any) -> None:
    """Register the built-in outputs."""
    register(StdoutOutput)
    register(JsonlOutput)
    register(PostgresOutput)
