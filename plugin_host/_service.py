"""What the commands do beyond one run: check, keep running, show and reset state."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from . import _validation_cache as validation_cache
from ._contract import InputContext
from ._exceptions import ConfigError, Fenced, LocalStorageError, PipelineBusy, UpstreamError
from ._pipeline import Pipeline
from ._runner import RunSummary, run_once
from ._secrets import guarded
from .state.sqlite import StateStore

__all__ = ["check_output", "check_pipeline", "check_state", "progress_line", "run_forever",
           "state_reset", "state_show"]

log = logging.getLogger("plugin_host.run")


def check_pipeline(pipeline: Pipeline) -> None:
    """Make the input's one authenticated call upstream; raise what it raises."""
    context = InputContext(pipeline.name, logging.getLogger(
        f"plugin_host.input.{pipeline.input.name}"))
    with guarded(pipeline.secrets):
        source = pipeline.input.cls(pipeline.settings, pipeline.secrets, context)
        try:
            source.check()
        finally:
            source.close()


@contextlib.contextmanager
def progress_line(enabled: bool) -> Iterator[None]:
    """Around a run that shows its progress on stderr: clear that line when the run ends,
    however it ends, so that what is printed next starts on a clean line."""
    try:
        yield
    finally:
        if enabled:
            sys.stderr.write("\r\x1b[2K")
            sys.stderr.flush()


def run_forever(
    pipeline: Pipeline,
    interval: float,
    stop: threading.Event,
    *,
    progress: bool = False,
    report: Callable[[RunSummary], None] | None = None,
) -> None:
    """Sync every ``interval`` seconds until ``stop`` is set; upstream failures wait a turn.
    With a PostgreSQL state, so does a lease another runner holds: runners of one pipeline
    on several machines take turns, and one takes over when another dies. A run whose lease
    was taken over (``Fenced``) ends the loop."""
    if interval <= 0:
        raise ConfigError("--interval must be more than 0 seconds")
    while not stop.is_set():
        try:
            with progress_line(progress):
                summary = run_once(pipeline, stop_event=stop, progress=progress)
            if report:
                report(summary)
        except UpstreamError as exc:
            log.error("%s; trying again in %gs", exc, interval)
        except PipelineBusy as exc:
            if isinstance(exc, Fenced) or not pipeline.state_url:
                raise
            log.info("%s; trying again in %gs", exc, interval)
        stop.wait(interval)


def check_state(pipeline: Pipeline) -> str:
    """For a PostgreSQL state: reach the database, check its schema version and this user's
    privileges (``LocalStorageError`` naming what is missing); say what was found. A
    SQLite state is checked by the loader (its folder can be created)."""
    if not pipeline.state_url:
        return ""
    from .state.postgres import PostgresStateStore

    with contextlib.closing(PostgresStateStore(pipeline.state_url, create=False)) as store:
        missing = store.check_access()
        if missing:
            raise LocalStorageError(
                f"state database {store.location}: this user lacks {', '.join(missing)}; "
                "grant them (or create plugin-host's tables once as their owner)")
        if store.exists:
            return f"state database {store.location} ready"
        return f"state database {store.location} reachable (its tables are made on first run)"


def check_output(pipeline: Pipeline) -> str:
    """For an output with a ``check()`` (``postgres``): reach its destination and check it
    (raising what it lacks); say what was found. Other outputs: ""."""
    if not callable(getattr(pipeline.output.cls, "check", None)):
        return ""
    from ._contract import OutputContext

    context = OutputContext(pipeline.name, pipeline.base_dir,
                            logging.getLogger(f"plugin_host.output.{pipeline.output.name}"),
                            state_url=pipeline.state_url, secrets=pipeline.output_secrets)
    with guarded(pipeline.output_secrets):
        return str(pipeline.output.cls(pipeline.output_settings, context).check())


def state_show(pipeline: Pipeline) -> dict[str, Any]:
    """The saved state of a pipeline as JSON-ready data (``state`` is None when there is none)."""
    if pipeline.state_url:
        from .state.postgres import PostgresStateStore

        with contextlib.closing(PostgresStateStore(pipeline.state_url, create=False)) as db:
            saved, lease = db.load(pipeline.name), db.lease_info(pipeline.name)
        return {"pipeline": pipeline.name, "state_database": db.location,
                "state": saved.as_dict() if saved else None, "lease": lease}
    if not pipeline.state_path.exists():
        return {"pipeline": pipeline.name, "state_file": str(pipeline.state_path), "state": None}
    with StateStore(pipeline.state_path, create=False) as store:
        saved = store.load(pipeline.name)
    return {
        "pipeline": pipeline.name,
        "state_file": str(pipeline.state_path),
        "state": saved.as_dict() if saved else None,
    }


def state_reset(pipeline: Pipeline) -> bool:
    """Clear a pipeline's saved state, and forget its validation; True if there was any."""
    if pipeline.state_url:  # no validation is remembered with a PostgreSQL state
        from .state.postgres import PostgresStateStore

        with contextlib.closing(PostgresStateStore(pipeline.state_url, create=False)) as db:
            return db.reset(pipeline.name)
    if not pipeline.state_path.exists():
        return False
    with StateStore(pipeline.state_path, create=False) as store:
        existed = store.reset(pipeline.name)
        validation_cache.forget(store, pipeline.name)
    return existed
