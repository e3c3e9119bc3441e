"""``plugin-host worker``: many pipelines on many machines, dispatched by procrastinate.

Every worker is started with the same pipeline files, all with their state on one
PostgreSQL database. procrastinate (a task queue on that same database) places the work:
one periodic task, deferred once per tick across all workers, defers a ``sync`` job for each
pipeline that is due, with a queueing lock per pipeline so pending syncs never pile up; any
worker runs any sync, in its own process, up to ``--concurrency`` at once. The pipeline's
lease and its epoch in the state store stay the authority: procrastinate only dispatches.

- ``config.py``: the pipeline files, checked (PostgreSQL state, one database, names).
- ``db.py``: procrastinate's schema made once; what the worker records per pipeline.
- ``sync.py``: one sync in a worker thread, its outcome and its log line.
- ``service.py``: the procrastinate app, its two tasks, the worker loop, SIGTERM.
- ``status.py``: ``plugin-host status``.
"""

from __future__ import annotations

from .config import DEFAULT_EVERY, WorkerConfig, load_config
from .service import STOP_SECONDS, check_worker, run_worker
from .status import status_rows

__all__ = ["DEFAULT_EVERY", "STOP_SECONDS", "WorkerConfig", "check_worker", "load_config",
           "run_worker", "status_rows"]
