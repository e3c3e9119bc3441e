"""The worker proper: a procrastinate app on the state database with two tasks, the worker
loop that rides out a database restart, and a bounded stop on SIGTERM.

- ``plugin_host.dispatch`` (queue ``plugin_host_dispatch``), periodic: procrastinate defers
  it once per tick across all workers. It claims the due pipelines in one statement and
  defers a ``plugin_host.sync`` job for each, with the pipeline's name as queueing lock (a
  pipeline has at most one pending sync), then deletes job rows left behind older than the
  job retention (a killed worker's job stays ``doing``: garbage, nothing waits on it).
- ``plugin_host.sync`` (queue ``plugin_host_sync``): one sync on the worker's thread pool.
  Never retried by procrastinate: the next period is the retry, and it resumes from the
  checkpoint. procrastinate's ``lock`` and its stalled-job retry are not used: the lease
  and the epoch of the state store decide who syncs a pipeline.

Each queue has a procrastinate worker of its own in this process, so a full pool of syncs
never holds up the dispatch.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .._exceptions import ConfigError
from ..state import _url
from ..state._pgpool import keep_connections
from . import db
from .config import WorkerConfig
from .sync import Outcome, Syncs, run_sync

__all__ = ["JOB_RETENTION", "STOP_SECONDS", "check_worker", "run_worker"]

log = logging.getLogger("plugin_host.worker")

STOP_SECONDS = 30.0
"""After SIGTERM, how long syncs in hand get to finish or commit the page in hand; a sync
still running then is left (its lease frees when the process ends) and the worker exits 0."""

JOB_RETENTION = 3600.0
"""Job rows older than this (finished, failed, or left ``doing`` by a killed worker) are
deleted by the dispatcher."""

SYNC_QUEUE, DISPATCH_QUEUE = "plugin_host_sync", "plugin_host_dispatch"


def check_worker(config: WorkerConfig) -> list[str]:
    """Reach the database, make the tables a worker needs (once); say what was found."""
    return [f"{len(config.pipelines)} pipelines valid, all on state database "
            f"{config.location}", *db.ensure_schema(config.url)]


class Worker:
    """One worker process: its procrastinate app, its thread pool, its syncs in hand."""

    def __init__(self, config: WorkerConfig, concurrency: int,
                 job_retention: float = JOB_RETENTION) -> None:
        import procrastinate

        if concurrency < 1:
            raise ConfigError("--concurrency must be at least 1")
        self.config = config
        self.concurrency = concurrency
        self.job_retention = job_retention
        self.syncs = Syncs()
        self.runner = f"pid {os.getpid()} on {socket.gethostname()}"
        # each sync thread keeps its state connections across syncs (a backend and a SCRAM
        # exchange per thread, not per sync)
        self.executor = ThreadPoolExecutor(concurrency, thread_name_prefix="plugin-host-sync",
                                           initializer=keep_connections)
        self.connector = procrastinate.PsycopgConnector(
            conninfo=config.url, min_size=1, max_size=4 + min(concurrency, 4),
            kwargs={"connect_timeout": 10})
        self.app = procrastinate.App(connector=self.connector)
        self._already = procrastinate.exceptions.AlreadyEnqueued
        self._define_tasks()

    # -- the tasks ------------------------------------------------------------------------

    def _define_tasks(self) -> None:
        tick = self.config.tick
        cron = "* * * * *" if tick >= 60 else f"* * * * * */{tick}"
        sync_task = self.app.task(name="plugin_host.sync", queue=SYNC_QUEUE, retry=0)(
            self._sync)
        self._sync_task: Any = sync_task
        dispatch = self.app.task(name="plugin_host.dispatch", queue=DISPATCH_QUEUE, retry=0,
                                 queueing_lock="plugin_host.dispatch")(self._dispatch)
        self.app.periodic(cron=cron)(dispatch)

    async def _dispatch(self, timestamp: int) -> None:
        """Defer a sync of each due pipeline (a pending one is not deferred twice)."""
        names = list(self.config.pipelines)
        rows = await self.connector.execute_query_all_async(db.CLAIM, names=names)
        deferred = 0
        for row in rows:
            try:
                await self._sync_task.configure(queueing_lock=row["name"]).defer_async(
                    pipeline=row["name"])
                deferred += 1
            except self._already:
                pass
        if deferred:
            log.debug("dispatched %d syncs", deferred)
        await self.connector.execute_query_async(db.CLEAN, age=self.job_retention)

    async def _sync(self, pipeline: str) -> None:
        """Run one sync on the thread pool and record how it ended."""
        target = self.config.pipelines.get(pipeline)
        if target is None:
            log.warning("a sync of pipeline %s, which this worker was not started with, "
                        "was skipped: start every worker with the same pipeline files",
                        pipeline)
            return
        if self.syncs.stopping.is_set():  # taken as the worker stops: another one runs it
            await self._record(db.REQUEUE, name=pipeline)
            return
        await self._record(db.START, name=pipeline, runner=self.runner)
        loop = asyncio.get_running_loop()
        outcome: Outcome = await loop.run_in_executor(self.executor, run_sync, target,
                                                      self.syncs)
        await self._record(
            db.FINISH, name=pipeline, outcome=outcome.outcome, error=outcome.error or None,
            records=outcome.records, requests=outcome.requests,
            seconds=round(outcome.seconds, 3), ok=outcome.ok,
            again=outcome.outcome in ("busy", "stopped"), retry=float(self.config.tick))

    async def _record(self, query: str, **params: Any) -> None:
        try:
            await self.connector.execute_query_async(query, **params)
        except Exception as exc:  # the database restarting: the record is best effort
            log.warning("could not record a sync of pipeline %s: %s", params["name"],
                        _url.scrub(str(exc), self.config.url))

    # -- the loop -------------------------------------------------------------------------

    async def serve(self) -> None:
        """Run until SIGTERM/SIGINT; a worker that fails (the database restarting) is
        started again after a pause."""
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()

        def on_signal(signum: int) -> None:
            if stop.is_set():
                log.warning("received %s again: exiting now", signal.Signals(signum).name)
                os._exit(0)
            log.warning("received %s: taking no new sync; the %d in hand finish or commit "
                        "the page in hand (at most %g s)", signal.Signals(signum).name,
                        self.syncs.in_hand(), STOP_SECONDS)
            self.syncs.stop_all()
            stop.set()

        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, on_signal, signum)
        await self._register()
        while not stop.is_set():
            try:
                await self._serve_once(stop)
            except Exception as exc:
                if stop.is_set():
                    break
                log.warning("worker stopped (%s); starting again in 2 s",
                            _url.scrub(f"{type(exc).__name__}: {exc}", self.config.url))
            if not stop.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), 2.0)

    async def _register(self) -> None:
        """Record each pipeline's cadence (retried while the database is away)."""
        names = list(self.config.pipelines)
        every = [self.config.every[n] for n in names]
        while True:
            try:
                async with self.app.open_async():
                    await self.connector.execute_query_async(db.REGISTER, names=names,
                                                             every=every)
                return
            except Exception as exc:
                log.warning("could not reach the state database (%s); trying again in 2 s",
                            _url.scrub(str(exc), self.config.url))
                await asyncio.sleep(2.0)

    async def _serve_once(self, stop: asyncio.Event) -> None:
        async with self.app.open_async():
            common: dict[str, Any] = {
                "install_signal_handlers": False, "shutdown_graceful_timeout": STOP_SECONDS,
                "delete_jobs": "always", "fetch_job_polling_interval": 1.0,
                "update_heartbeat_interval": 5.0, "stalled_worker_timeout": 30.0}
            workers = [
                asyncio.create_task(self.app.run_worker_async(
                    queues=[SYNC_QUEUE], concurrency=self.concurrency, name="sync", **common)),
                asyncio.create_task(self.app.run_worker_async(
                    queues=[DISPATCH_QUEUE], concurrency=1, name="dispatch", **common)),
            ]
            stopping = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait([*workers, stopping],
                                         return_when=asyncio.FIRST_COMPLETED)
            for task in workers:
                task.cancel()
            results = await asyncio.gather(*workers, return_exceptions=True)
            stopping.cancel()
            for result in results:
                if isinstance(result, Exception):
                    raise result
            if not stop.is_set():
                raise RuntimeError("procrastinate's worker ended")


def run_worker(config: WorkerConfig, concurrency: int) -> None:
    """Serve until SIGTERM/SIGINT; return once the syncs in hand are done (or after
    ``STOP_SECONDS``), their leases given back."""
    db.ensure_schema(config.url)
    worker = Worker(config, concurrency)
    started = time.monotonic()
    asyncio.run(worker.serve())
    worker.executor.shutdown(wait=False, cancel_futures=True)
    if worker.syncs.wait_until_done(worker.syncs.stopped_at + STOP_SECONDS):
        log.warning("%d syncs still running after %g s: left (their leases free as this "
                    "process ends; the next sync resumes from their last commit)",
                    worker.syncs.in_hand(), STOP_SECONDS)
        logging.shutdown()
        os._exit(0)
    log.info("worker stopped after %.1f s", time.monotonic() - started)
