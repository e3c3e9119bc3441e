"""The contract between the host and its plugins: pages, the run context, the protocols.

``Input``, ``Output`` and ``Transform`` are what every plugin class implements;
``ValidatesSettings`` and ``HasDemo`` are optional extras the host uses when a class has
them, and ``BackgroundSyncOutput`` and ``TransactionalOutput`` ones it uses when an output
object has them. ``StateStore`` and ``Lease`` are what each state backend
(``plugin_host.state``) implements: the host alone uses them, plugins never do.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

__all__ = [
    "BackgroundSyncOutput",
    "HasDemo",
    "Input",
    "InputContext",
    "Lease",
    "Output",
    "OutputContext",
    "Page",
    "RunStats",
    "SavedState",
    "StateStore",
    "TransactionalOutput",
    "Transform",
    "TransformContext",
    "ValidatesSettings",
]

LONG_WAIT_SECONDS = 5.0
"""Without a progress line, each wait this long or longer is logged (one WARNING line)."""

VISIBLE_WAIT_SECONDS = 1.0
"""On a progress line, waits this long or longer are shown (shorter ones would flicker)."""


def duration(seconds: float) -> str:
    """``seconds`` as a person reads it: ``0.4 s``, ``12 s``, ``1 min 30 s``, ``2 h 5 min``."""
    if seconds < 0.95:
        return f"{max(seconds, 0.0):.1f} s"
    whole = round(seconds)
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        minutes, rest = divmod(whole, 60)
        return f"{minutes} min {rest} s" if rest else f"{minutes} min"
    hours, rest = divmod(whole // 60, 60)
    return f"{hours} h {rest} min" if rest else f"{hours} h"


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
    """Counters an input updates while it runs; the host prints them in its summary.

    ``rate_limit_waits`` counts every wait on a rate limit, the client's own or the
    server's (a 429, ``Retry-After``, ``RateLimit-Remaining: 0``), and
    ``rate_limit_wait_seconds`` their time; ``rate_limited_responses`` counts the 429s.
    ``retry_wait_seconds`` is the time waited before retrying after a failure (a 5xx, a
    timeout, a refused or broken connection).
    """

    requests: int = 0
    retries: int = 0
    rate_limit_waits: int = 0
    rate_limit_wait_seconds: float = 0.0
    rate_limited_responses: int = 0
    retry_wait_seconds: float = 0.0
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

    def waiting(self, seconds: float, reason: str) -> None:
        """Say that the input is about to wait ``seconds`` for ``reason``: on the progress line
        when there is one, otherwise in one WARNING line if the wait is a long one."""
        if self.progress_enabled:
            if seconds >= VISIBLE_WAIT_SECONDS:
                self.progress(f"waiting {duration(seconds)}: {reason}")
        elif seconds >= LONG_WAIT_SECONDS:
            self.logger.warning("waiting %s: %s", duration(seconds), reason)


def _never_fenced() -> None:
    """The fence of a run no other run can take over (the SQLite store's lock)."""


@dataclass
class OutputContext:
    """What the host hands an output: the pipeline's name and folder, a logger, and the
    id and location of the state store that commits its positions (together they name
    the pipeline an output file belongs to).

    ``fence()`` raises ``Fenced`` (exit 6) once another run of the pipeline has taken its
    lease over, and renews the lease otherwise: an output whose writes another run could
    see calls it just before each write (under a lock that the other run's recovery takes
    too, for a file), so a run that was frozen past its lease writes nothing once it wakes.
    ``state_url`` is the state's PostgreSQL URL (a secret, redacted like one; "" for a
    SQLite state), for an output that writes to the state's own database. ``secrets`` are
    the output's own, resolved (a secret named in the class's ``state_url_secrets`` and left
    out of the pipeline is the state's URL). ``record_key`` names the properties that
    identify a record (the input manifest's ``records.key`` when there is one and no
    transform reshapes the records; else empty: the output picks its own default).
    """

    pipeline_name: str
    base_dir: Path
    logger: logging.Logger
    state_id: str = ""
    state_location: str = ""
    fence: Callable[[], None] = _never_fenced
    state_url: str = field(default="", repr=False)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)
    record_key: tuple[str, ...] = ()


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


@dataclass(frozen=True)
class TransformContext:
    """What the host hands a transform: the pipeline's name, its input (name and class, so
    a transform can use what the input ships, such as an OCSF mapping) and a logger."""

    pipeline_name: str
    input_name: str
    input_class: type[Any]
    logger: logging.Logger


@runtime_checkable
class Transform(Protocol):
    """A step between the input and the output: each page's records, in order, become the
    records the output receives. It is pure: the same records give the same result, it
    never mutates the records it is given, and it writes no state (so the checkpoint and
    exactly-once delivery are unchanged). One record may become zero, one or several.

    Class attributes:
        manifest: ``name``, ``description`` and ``settings`` (JSON Schema); no secrets.
    """

    manifest: ClassVar[Mapping[str, Any]]

    def __init__(self, settings: Mapping[str, Any], context: TransformContext) -> None:
        """Raise ``ConfigError`` when the settings or the pipeline's input do not fit: the
        host builds each transform when it validates a pipeline, so ``validate`` says it."""

    def apply(self, records: Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any]]:
        """The records of one page, transformed, in order."""
        ...


# -- Optional extras: a plugin class the host checks with ``isinstance(cls, Protocol)`` --------
# Both are classmethods, so the class itself (not an instance) satisfies the protocol.


@runtime_checkable
class ValidatesSettings(Protocol):
    """An input or output class with checks its settings' schema cannot express (a date
    in the past, https only). Once the schema check passes, the host calls
    ``cls.validate_settings(settings, base_dir)``, on every validation (a reused one too);
    each ``(setting, message)`` pair it yields is a validation error, exit 2."""

    def validate_settings(
        self, settings: Mapping[str, Any], base_dir: Path
    ) -> Iterable[tuple[str, str]]:
        """Yield ``(setting, message)`` for each problem (``setting`` "" for the whole)."""
        ...


@runtime_checkable
class HasDemo(Protocol):
    """An input with a local emulator of its upstream, for ``plugin-host demo NAME``.

    ``cls.demo_environment(folder, events)`` is a context manager: it starts the emulator
    with about ``events`` records and yields ``(settings, secrets)`` for a pipeline against
    it. The host writes each secret to a file of its own in ``folder`` (mode 0600) and
    runs the pipeline before leaving the context."""

    def demo_environment(
        self, folder: Path, events: int
    ) -> AbstractContextManager[tuple[Mapping[str, Any], Mapping[str, str]]]:
        """Start the emulator; yield the settings and secrets of a pipeline against it."""
        ...


@runtime_checkable
class TransactionalOutput(Protocol):
    """An output that writes its records in the state store's own transaction, so that a
    page group's records and its checkpoint commit together or not at all (a PostgreSQL
    output writing to the state's database).

    When ``joins_state()`` is True after ``open`` and the store has
    ``shared_transactions``, the host never calls ``durable``: each commit calls
    ``store.commit(..., within=output.write_in)``, and the store calls
    ``write_in(connection)`` inside its commit transaction, before the conditional update
    of the checkpoint (which names the run's lease epoch). If that update finds the lease
    taken over, the transaction rolls back: none of the records is written, and the run
    ends with exit 6. ``write_in`` must not commit, roll back or close the connection.

    An output that also has ``written()`` (as ``BackgroundSyncOutput``) is committed on the
    host's commit thread: ``written()`` hands each group over on the run's thread, then
    that group's commit transaction calls ``write_in``, which writes exactly that group.
    """

    def joins_state(self) -> bool:
        """True when this run's records go through the state store's transaction."""
        ...

    def write_in(self, connection: Any) -> Mapping[str, Any] | None:
        """Write every record buffered since the last commit through ``connection`` (a
        psycopg connection, a transaction open); return the position to commit."""
        ...


# -- State stores: implemented by plugin_host.state's backends, used by the runner -------------


@dataclass(frozen=True)
class SavedState:
    """A pipeline's committed state."""

    name: str
    input_type: str
    checkpoint: Mapping[str, Any] | None
    output: Mapping[str, Any] | None
    commits: int
    created_at: str
    updated_at: str

    def as_dict(self) -> dict[str, Any]:
        """The state as plain JSON-ready data."""
        return {
            "pipeline": self.name,
            "input_type": self.input_type,
            "checkpoint": self.checkpoint,
            "output": self.output,
            "commits": self.commits,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }


@runtime_checkable
class Lease(Protocol):
    """A run's hold on its pipeline (and on its input's rate-limit key, if any).

    ``epoch`` is the fencing token: a store commits only while the lease's epoch is the
    latest. ``lost`` turns True once the store found another run holding it."""

    epoch: int

    @property
    def lost(self) -> bool:
        """True once another run took the lease over."""
        ...

    def check(self) -> None:
        """Raise ``Fenced`` if another run took the lease over; else renew it."""
        ...


@runtime_checkable
class StateStore(Protocol):
    """Where checkpoints and output positions are committed, keyed by pipeline name.

    ``id`` names the store for good (an output records it with its pipeline);
    ``location`` says where it is, without a secret (a path, or a URL without password).
    ``shared_transactions`` is True when ``commit(within=...)`` runs ``within`` in the
    commit's own transaction (see ``TransactionalOutput``)."""

    id: str
    location: str
    shared_transactions: bool

    def load(self, name: str) -> SavedState | None:
        """The committed state of pipeline ``name``, or None before its first commit."""
        ...

    def commit(
        self,
        name: str,
        input_type: str,
        checkpoint: Mapping[str, Any] | str | None,
        output: Mapping[str, Any] | None,
        *,
        within: Callable[[Any], Mapping[str, Any] | None] | None = None,
    ) -> None:
        """Save the checkpoint and the output position together, atomically, under the
        run's lease; ``Fenced`` if another run took the lease over."""
        ...

    def lease(
        self, name: str, *, keys: Sequence[str] = (), on_lost: Callable[[], None] | None = None
    ) -> AbstractContextManager[Lease]:
        """Hold pipeline ``name`` (and each rate-limit key of ``keys``) for one run;
        ``PipelineBusy`` (exit 6) naming the holder when another run has it. ``on_lost``
        is called (from any thread) once another run takes the lease over."""
        ...

    def reset(self, name: str) -> bool:
        """Delete pipeline ``name``'s state; True if there was any. Refused while it runs."""
        ...

    def names(self) -> list[str]:
        """Every pipeline name with saved state."""
        ...

    def close(self) -> None:
        """Release the store's connections."""
        ...
