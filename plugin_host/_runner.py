"""One incremental sync: input pages → output → durable → checkpoint committed.

Commits are grouped: the output is made durable and the checkpoint committed every
``commit_pages`` pages or ``commit_seconds`` seconds, whichever comes first, and always
at the end of a run, when the input fails, and when a stop is requested. A crash
between commits loses nothing: the jsonl output cuts the uncommitted tail on restart
and the input resumes from the committed checkpoint.

An output that splits ``durable`` into ``written`` (hand the buffer over, return the
position) and ``sync`` (wait for the disk) is committed in the background: the sync and
the state commit of one group run on a thread of their own while the next pages are
fetched, one commit at a time and in order. The last commit of a run, and any commit
after a failure or a stop, is made in the foreground, so a run never ends with a commit
in flight.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from . import _validation_cache as validation_cache
from ._contract import InputContext, OutputContext, RunStats
from ._exceptions import ConfigError, LocalStorageError, PluginHostError, StopRequested
from ._pipeline import Pipeline
from ._secrets import guarded, redactor
from ._state import StateStore

__all__ = ["CommitPolicy", "RunSummary", "run_once"]

log = logging.getLogger("plugin_host.run")


@dataclass(frozen=True)
class CommitPolicy:
    """How often a run makes its output durable and commits the checkpoint."""

    pages: int = 32
    seconds: float = 1.0


@dataclass
class RunSummary:
    """What one run did."""

    pipeline: str
    records: int = 0
    pages: int = 0
    commits: int = 0
    seconds: float = 0.0
    stopped_early: bool = False
    stats: RunStats = field(default_factory=RunStats)

    def line(self) -> str:
        """A one-line human summary."""
        s = self.stats
        rate = self.records / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"{self.pipeline}: {self.records} records in {self.pages} pages, "
            f"{s.requests} requests, {self.seconds:.2f}s ({rate:.0f} records/s)"
        )
        if s.retries or s.rate_limit_waits:
            text += f", {s.retries} retries, {s.rate_limit_waits} rate-limit waits"
        return text + (" [stopped early]" if self.stopped_early else "")

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data."""
        return {
            "pipeline": self.pipeline,
            "records": self.records,
            "pages": self.pages,
            "commits": self.commits,
            "seconds": round(self.seconds, 3),
            "requests": self.stats.requests,
            "retries": self.stats.retries,
            "rate_limit_waits": self.stats.rate_limit_waits,
            "stopped_early": self.stopped_early,
        }


def _checked(checkpoint: Mapping[str, Any], pipeline: Pipeline) -> str:
    """The checkpoint as JSON text (a snapshot the input can no longer change), refused if
    it is not JSON or holds a secret."""
    try:
        data = orjson.dumps(checkpoint)
    except TypeError:  # keys that are not strings, integers beyond 64 bits: the slow path
        try:
            data = json.dumps(checkpoint, sort_keys=True, allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise PluginHostError(
                f"input {pipeline.input.name} yielded a checkpoint that is not JSON ({exc})"
            ) from None
    if any(value.encode("utf-8") in data for value in pipeline.secrets.values()):
        raise PluginHostError(
            f"input {pipeline.input.name} put a secret into its checkpoint; it was not saved"
        )
    return data.decode("utf-8")


def run_once(
    pipeline: Pipeline,
    *,
    stop_event: threading.Event | None = None,
    progress: bool = False,
    policy: CommitPolicy | None = None,
) -> RunSummary:
    """Run one incremental sync of ``pipeline`` and return what it did."""
    policy = policy or CommitPolicy()
    stop_event = stop_event or threading.Event()
    started = time.monotonic()
    summary = RunSummary(pipeline.name)
    input_log = logging.getLogger(f"plugin_host.input.{pipeline.input.name}")
    context = InputContext(pipeline.name, input_log, summary.stats, stop_event, progress)
    out_log = logging.getLogger(f"plugin_host.output.{pipeline.output.name}")

    with guarded(pipeline.secrets), StateStore(pipeline.state_path) as store, store.lock(
            pipeline.name):
        out_context = OutputContext(pipeline.name, pipeline.base_dir, out_log,
                                    state_id=store.id, state_location=str(store.path))
        saved = store.load(pipeline.name)  # a damaged file is refused here, before any write
        if pipeline.fingerprint and not pipeline.validation_reused:
            validation_cache.remember(store, pipeline.name, pipeline.fingerprint)
        if saved is not None and saved.input_type != pipeline.input.name:
            raise ConfigError(
                f"the saved state of pipeline {pipeline.name} belongs to input "
                f"{saved.input_type}, not {pipeline.input.name}; run "
                f"`plugin-host state reset {pipeline.name}` to start it afresh"
            )
        checkpoint = saved.checkpoint if saved else None
        output = pipeline.output.cls(pipeline.output_settings, out_context)
        try:
            position = output.open(saved.output if saved else None)
            if saved is None or saved.output != position:
                store.commit(pipeline.name, pipeline.input.name, checkpoint, position)
            source = pipeline.input.cls(pipeline.settings, pipeline.secrets, context)
            committer = _background(output, store, pipeline)
            try:
                _drive(pipeline, source, output, store, summary, policy, stop_event, checkpoint,
                       committer)
            finally:
                if committer is not None:  # never close the output under a commit in flight
                    committer.settle()
                source.close()
        finally:
            output.close()
    summary.seconds = time.monotonic() - started
    if progress:
        import sys

        sys.stderr.write("\r\x1b[2K")
    return summary


class _Committer:
    """Syncs the output and commits the state on a thread of its own, one commit at a
    time: an fsync and SQLite's commit release the GIL, so the next pages are fetched
    and written meanwhile."""

    def __init__(self, sync: Any, store: StateStore, pipeline: Pipeline) -> None:
        self._sync = sync
        self._store = store
        self._names = (pipeline.name, pipeline.input.name)
        self._thread: threading.Thread | None = None
        self._error: BaseException | None = None

    def start(self, checkpoint: str, position: Mapping[str, Any] | None) -> None:
        """Once the commit in flight is done, commit ``checkpoint`` with ``position`` as soon
        as the output has synced it."""
        self.wait()
        thread = threading.Thread(target=self._commit, args=(checkpoint, position),
                                  name="plugin-host-commit", daemon=True)
        thread.start()
        self._thread = thread

    def _commit(self, checkpoint: str, position: Mapping[str, Any] | None) -> None:
        try:
            self._sync()
            self._store.commit(*self._names, checkpoint, position)
        except BaseException as exc:  # handed to the run's thread by ``wait``
            self._error = exc

    def wait(self) -> None:
        """Wait for the commit in flight, if any; raise what it raised."""
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        error, self._error = self._error, None
        if error is not None:
            raise error

    def settle(self) -> None:
        """Wait until no commit is in flight, through a second Ctrl-C too, and drop its
        error: the run is failing already, and the state stays at the last commit made."""
        while self._thread is not None:
            with contextlib.suppress(KeyboardInterrupt):
                self._thread.join()
                self._thread = None
        self._error = None


def _background(output: Any, store: StateStore, pipeline: Pipeline) -> _Committer | None:
    written, sync = getattr(output, "written", None), getattr(output, "sync", None)
    return _Committer(sync, store, pipeline) if callable(written) and callable(sync) else None


def _drive(
    pipeline: Pipeline,
    source: Any,
    output: Any,
    store: StateStore,
    summary: RunSummary,
    policy: CommitPolicy,
    stop_event: threading.Event,
    checkpoint: Mapping[str, Any] | None,
    committer: _Committer | None,
) -> None:
    pending: str | None = None
    pending_pages = 0
    last_commit = time.monotonic()

    def commit(last: bool = True) -> None:
        """Commit what is pending: in the background between pages when the output allows
        it; in the foreground, after the commit in flight, when it is the ``last``."""
        nonlocal pending, pending_pages, last_commit
        if committer is not None and last:
            committer.wait()
        if pending is None:
            return
        if committer is not None and not last:
            committer.start(pending, output.written())
        else:
            store.commit(pipeline.name, pipeline.input.name, pending, output.durable())
        summary.commits += 1
        pending, pending_pages, last_commit = None, 0, time.monotonic()

    try:
        for page in source.read(checkpoint):
            # A snapshot, taken before the records are written: an input may reuse the
            # same mapping and advance it before its next page (or before failing).
            checked = _checked(page.checkpoint, pipeline)
            records = page.records
            if records:
                output.write(records)
            summary.records += len(records)
            summary.pages += 1
            pending = checked
            pending_pages += 1
            if pending_pages >= policy.pages or time.monotonic() - last_commit >= policy.seconds:
                commit(last=False)
            if stop_event.is_set():
                summary.stopped_early = True
                log.info("stop requested: finishing after the page in hand")
                break
    except LocalStorageError:
        raise  # the output failed: commit nothing more, the state stays at the last commit
    except BaseException as exc:
        try:
            commit()  # the pages before the failure, after the commit in flight
        except PluginHostError as commit_error:
            log.error("could not save progress: %s", redactor(str(commit_error)))
        if isinstance(exc, (KeyboardInterrupt, StopRequested)):
            summary.stopped_early = True
            log.info("stopped as asked; the next run resumes from the last delivered page")
            return
        raise
    commit()
