"""The contract between the host and its plugins: pages, the run context, the protocols."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

__all__ = [
    "BackgroundSyncOutput", "Input", "InputContext", "Output", "OutputContext", "Page", "RunStats",
]


@dataclass(frozen=True)
class Page:
    """A batch of records and the checkpoint that holds once they are delivered.

    The checkpoint must be JSON-serializable and cumulative: committing it means
    "every record of this page and of the pages before it is delivered".
    """

    records: Sequence[Mapping[str, Any]]
    checkpoint: Mapping[str, Any]


@dataclass
class RunStats:
    """Counters an input updates while it runs; the host prints them in its summary."""

    requests: int = 0
    retries: int = 0
    rate_limit_waits: int = 0
    rate_limit_wait_seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass
class InputContext:
    """What the host hands an input: its logger, counters, stop flag and progress line."""

    pipeline_name: str
    logger: logging.Logger
    stats: RunStats = field(default_factory=RunStats)
    stop_event: threading.Event = field(default_factory=threading.Event)
    progress_enabled: bool = False

    def stop_requested(self) -> bool:
        """True once the host was asked to stop (SIGTERM or SIGINT)."""
        return self.stop_event.is_set()

    def progress(self, text: str) -> None:
        """Show one line of progress on stderr when it is a terminal; otherwise nothing."""
        if self.progress_enabled:
            import sys

            sys.stderr.write("\r\x1b[2K" + text)
            sys.stderr.flush()


@dataclass
class OutputContext:
    """What the host hands an output: the pipeline's name and folder, a logger, and the
    id and location of the state store that commits its positions (together they name
    the pipeline an output file belongs to)."""

    pipeline_name: str
    base_dir: Path
    logger: logging.Logger
    state_id: str = ""
    state_location: str = ""


@runtime_checkable
class Input(Protocol):
    """An incremental input. The host owns its state: ``read`` yields pages and never writes it.

    Class attributes:
        manifest: ``name``, ``description``, ``settings`` and ``secrets`` (JSON Schema).
    """

    manifest: ClassVar[Mapping[str, Any]]

    def __init__(
        self, settings: Mapping[str, Any], secrets: Mapping[str, str], context: InputContext
    ) -> None: ...

    def check(self) -> None:
        """Make one authenticated call upstream; raise a PluginHostError if it fails."""

    def read(self, checkpoint: Mapping[str, Any] | None) -> Iterator[Page]:
        """Yield pages from the last committed checkpoint (None on the first run)."""
        ...

    def close(self) -> None:
        """Release connections; called once, after ``read`` ends or fails."""


@runtime_checkable
class Output(Protocol):
    """A destination: the host calls ``open``, then ``write`` and ``durable``, then ``close``.

    ``position`` values are JSON-serializable and stored with the checkpoint in one
    transaction, so an output can cut a tail written after the last commit.

    Optionally, an output splits ``durable`` in two so that the host commits in the
    background: see ``BackgroundSyncOutput``.
    """

    manifest: ClassVar[Mapping[str, Any]]

    def __init__(self, settings: Mapping[str, Any], context: OutputContext) -> None: ...

    def open(self, committed: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """Recover to the committed position and return the position writing starts at."""
        ...

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Write a batch of records (buffered or not)."""

    def durable(self) -> Mapping[str, Any] | None:
        """Make everything written so far durable and return that position."""
        ...

    def close(self) -> None:
        """Release the destination."""


@runtime_checkable
class BackgroundSyncOutput(Output, Protocol):
    """An output that splits ``durable`` in two, so that the host syncs and commits on a
    thread of its own while the next pages are written (``jsonl`` does)."""

    def written(self) -> Mapping[str, Any] | None:
        """Hand everything written so far to the system and return that position."""
        ...

    def sync(self) -> None:
        """Make everything handed over durable; called on another thread, beside ``write``."""
