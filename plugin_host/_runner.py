"""One incremental sync: input pages → output → durable → checkpoint committed.

Commits are grouped (see ``_batch``): the output is made durable and the checkpoint
committed every ``commit_pages`` pages or ``commit_seconds`` seconds, whichever comes
first, and always at the end of a run, when the input fails, and when a stop is
requested. A crash between commits loses nothing: the jsonl output cuts the uncommitted
tail on restart and the input resumes from the committed checkpoint.
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
from ._batch import CommitPolicy, Committer
from ._contract import Input, InputContext, Output, OutputContext, RunStats, StateStore
from ._exceptions import (
    ConfigError,
    LocalStorageError,
    PipelineBusy,
    PluginHostError,
    StopRequested,
)
from ._pipeline import Pipeline
from ._secrets import guarded, redactor
from ._words import plural
from .state import open_store, rate_limit_keys
from .state.sqlite import StateStore as SqliteStateStore

__all__ = ["CommitPolicy", "RunSummary", "run_once"]

log = logging.getLogger("plugin_host.run")


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
            f"{self.pipeline}: {plural(self.records, 'record')} in {plural(self.pages, 'page')}, "
            f"{plural(s.requests, 'request')}, {self.seconds:.2f}s ({rate:.0f} records/s)"
        )
        if s.retries or s.rate_limit_waits:
            text += (f", {plural(s.retries, 'retry')}, "
                     f"{plural(s.rate_limit_waits, 'rate-limit wait')}")
            if s.rate_limited_responses:
                text += f" ({s.rate_limited_responses} after a 429)"
            text += (f"; waited {s.rate_limit_wait_seconds:.1f} s on rate limits, "
                     f"{s.retry_wait_seconds:.1f} s before retries")
        return text + (" [stopped early]" if self.stopped_early else "")

    def as_dict(self) -> dict[str, Any]:
        """The summary as JSON-ready data."""
        s = self.stats
        return {
            "pipeline": self.pipeline,
            "records": self.records,
            "pages": self.pages,
            "commits": self.commits,
            "seconds": round(self.seconds, 3),
            "requests": s.requests,
            "retries": s.retries,
            "rate_limit_waits": s.rate_limit_waits,
            "rate_limited_responses": s.rate_limited_responses,
            "wait_seconds_rate_limit": round(s.rate_limit_wait_seconds, 3),
            "wait_seconds_retry": round(s.retry_wait_seconds, 3),
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


def _record_key(pipeline: Pipeline) -> tuple[str, ...]:
    """The properties that identify a record, from the input's manifest (``records.key``),
    when no transform reshapes the records; else empty."""
    records = pipeline.input.manifest.get("records")
    key = records.get("key") if isinstance(records, Mapping) else None
    if pipeline.transforms.names or not isinstance(key, list):
        return ()
    return tuple(str(k) for k in key)


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

    secrets = {**pipeline.secrets, **pipeline.output_secrets}
    with guarded(secrets), contextlib.closing(open_store(pipeline)) as store:
        keys = rate_limit_keys(pipeline.input.manifest, pipeline.secrets) \
            if pipeline.state_url else []
        # a lease another run took over sets the stop flag: a wait in the input ends at once
        with store.lease(pipeline.name, keys=keys, on_lost=stop_event.set) as lease:
            out_context = OutputContext(pipeline.name, pipeline.base_dir, out_log,
                                        state_id=store.id, state_location=store.location,
                                        fence=lease.check, state_url=pipeline.state_url,
                                        secrets=pipeline.output_secrets,
                                        record_key=_record_key(pipeline))
            _run_leased(pipeline, store, out_context, context, summary, policy, stop_event)
            lease.check()  # a run whose lease was taken over ends with exit 6, not 0
    summary.seconds = time.monotonic() - started
    return summary


def _run_leased(
    pipeline: Pipeline,
    store: StateStore,
    out_context: OutputContext,
    context: InputContext,
    summary: RunSummary,
    policy: CommitPolicy,
    stop_event: threading.Event,
) -> None:
    """The run proper, under the pipeline's lease: recover the output, drive the input."""
    saved = store.load(pipeline.name)  # a damaged file is refused here, before any write
    if pipeline.fingerprint and not pipeline.validation_reused and isinstance(
            store, SqliteStateStore):
        validation_cache.remember(store, pipeline.name, pipeline.fingerprint)
    if saved is not None and saved.input_type != pipeline.input.name:
        raise ConfigError(
            f"the saved state of pipeline {pipeline.name} belongs to input "
            f"{saved.input_type}, not {pipeline.input.name}; run "
            f"`plugin-host state reset {pipeline.name}` to start it afresh"
        )
    checkpoint = saved.checkpoint if saved else None
    output: Output = pipeline.output.cls(pipeline.output_settings, out_context)
    committer: Committer | None = None
    try:
        position = output.open(saved.output if saved else None)
        if saved is None or saved.output != position:
            store.commit(pipeline.name, pipeline.input.name, checkpoint, position)
        source: Input = pipeline.input.cls(pipeline.settings, pipeline.secrets, context)
        committer = Committer(output, store, (pipeline.name, pipeline.input.name), policy)
        try:
            _drive(pipeline, source, checkpoint, output, committer, summary, stop_event)
        finally:
            committer.settle()  # never close the output under a commit in flight
            source.close()
    finally:
        output.close()
        if committer is not None:
            summary.commits = committer.batch.commits


def _drive(
    pipeline: Pipeline,
    source: Input,
    checkpoint: Mapping[str, Any] | None,
    output: Output,
    committer: Committer,
    summary: RunSummary,
    stop_event: threading.Event,
) -> None:
    """Write each page and commit its batch when due; commit the rest at the end, and after
    a failure or a stop (not after the output failed)."""
    try:
        for page in source.read(checkpoint):
            # A snapshot, taken before the records are written: an input may reuse the
            # same mapping and advance it before its next page (or before failing).
            checked = _checked(page.checkpoint, pipeline)
            records = pipeline.transforms.apply(page.records)
            if records:
                output.write(records)
            summary.records += len(records)
            summary.pages += 1
            committer.add(checked)
            if stop_event.is_set():
                summary.stopped_early = True
                log.info("stop requested: finishing after the page in hand")
                break
    except (LocalStorageError, PipelineBusy):
        raise  # the output failed, or the lease is lost: commit nothing more
    except BaseException as exc:
        try:
            committer.finish()  # the pages before the failure, after the commit in flight
        except PipelineBusy:
            raise  # the lease was taken over meanwhile: that is this run's end
        except PluginHostError as commit_error:
            log.error("could not save progress: %s", redactor(str(commit_error)))
        if isinstance(exc, (KeyboardInterrupt, StopRequested)):
            summary.stopped_early = True
            log.info("stopped as asked; the next run resumes from the last delivered page")
            return
        raise
    committer.finish()
