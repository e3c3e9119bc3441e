"""One sync of one pipeline inside a worker: ``run_once`` on a thread of the worker's pool,
with a stop flag of its own, and its outcome in one log line.

What ``run_once`` opens is the sync's own: its state store (a connection, the lease and its
heartbeat), its input (client, limiter, retries) and its output. What is process-wide is
shared on purpose: the redactor knows every pipeline's secrets (each is redacted from every
line), logging goes to the one stderr handler, and the validation cache is not used (a
PostgreSQL state validates in full, once, when the worker starts). The stop flag is per
sync: a sync whose lease is taken over sets its own flag (``on_lost``), not its
neighbours'; the worker's SIGTERM sets every sync's flag.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass

from .._exceptions import Fenced, PipelineBusy, PluginHostError, one_line
from .._pipeline import Pipeline
from .._runner import run_once
from .._secrets import redactor

__all__ = ["Outcome", "Syncs", "run_sync"]

log = logging.getLogger("plugin_host.worker")


@dataclass
class Outcome:
    """How one sync ended: ``ok``, ``stopped`` (by SIGTERM, after a commit), ``busy`` (the
    lease or the API key's was held: nothing done), ``fenced`` (taken over), ``failed``."""

    pipeline: str
    outcome: str
    records: int = 0
    requests: int = 0
    seconds: float = 0.0
    error: str = ""

    @property
    def ok(self) -> bool:
        """The sync reached the end of what was upstream."""
        return self.outcome == "ok"

    def line(self) -> str:
        """The sync's one log line."""
        text = (f"sync pipeline={self.pipeline} outcome={self.outcome} records={self.records} "
                f"requests={self.requests} duration={self.seconds:.2f}s")
        return text + (f" error={self.error}" if self.error else "")


class Syncs:
    """The stop flags of the syncs in hand: SIGTERM sets them all."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flags: set[threading.Event] = set()
        self.stopping = threading.Event()
        self.stopped_at = 0.0

    def new_flag(self) -> threading.Event:
        """A stop flag for one sync (already set once the worker is stopping)."""
        flag = threading.Event()
        with self._lock:
            self._flags.add(flag)
            if self.stopping.is_set():
                flag.set()
        return flag

    def done(self, flag: threading.Event) -> None:
        """Forget a finished sync's flag."""
        with self._lock:
            self._flags.discard(flag)

    def stop_all(self) -> None:
        """Stop taking syncs; each sync in hand finishes or commits the page in hand."""
        with self._lock:
            if not self.stopping.is_set():
                self.stopped_at = time.monotonic()
            self.stopping.set()
            for flag in self._flags:
                flag.set()

    def wait_until_done(self, deadline: float) -> int:
        """Wait for the syncs in hand to end, until ``deadline`` (monotonic); how many are
        left. procrastinate forgets a sync whose job it gave up on (after its own graceful
        timeout, or when its worker was restarted), but the sync's thread runs on."""
        while self.in_hand() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self.in_hand()

    def in_hand(self) -> int:
        """How many syncs are running."""
        with self._lock:
            return len(self._flags)


def run_sync(pipeline: Pipeline, syncs: Syncs) -> Outcome:
    """Run one sync of ``pipeline`` and say how it ended (never raises a PluginHostError)."""
    flag = syncs.new_flag()
    started = time.monotonic()
    result = Outcome(pipeline.name, "failed")
    try:
        if flag.is_set():
            result.outcome = "stopped"
            return result
        summary = run_once(pipeline, stop_event=flag)
        result.records, result.requests = summary.records, summary.stats.requests
        result.outcome = "stopped" if summary.stopped_early else "ok"
    except Fenced as exc:
        result.outcome, result.error = "fenced", one_line(redactor(str(exc)))
    except PipelineBusy as exc:
        result.outcome, result.error = "busy", one_line(redactor(str(exc)))
    except PluginHostError as exc:
        result.error = one_line(redactor(str(exc)))
    except Exception as exc:  # a bug in an input or output: this sync fails, not the worker
        result.error = one_line(redactor(f"unexpected error: {type(exc).__name__}: {exc}"))
    finally:
        syncs.done(flag)
        result.seconds = time.monotonic() - started
    level = logging.WARNING if result.outcome in ("failed", "fenced") else logging.INFO
    log.log(level, "%s", result.line())
    return result
