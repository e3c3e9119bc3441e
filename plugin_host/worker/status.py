"""``plugin-host status``: each pipeline's last success, lag, current holder and last sync,
from the state database."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from typing import Any

from .._exceptions import ConfigError, LocalStorageError
from .._pipeline import load_pipeline
from .._registry import Registry
from ..state import _url
from ..state.postgres import PostgresStateStore

__all__ = ["ALL_NAMES", "STATUS", "all_names", "print_status", "status_rows", "url_from_env"]

STATUS = """
SELECT n.name,
       to_char(y.last_success_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       extract(epoch FROM now() - y.last_success_at)::float8,
       CASE WHEN s.lease_until > now() THEN s.holder END,
       y.outcome, y.error, y.every_seconds, y.records, y.requests, y.seconds,
       to_char(y.finished_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'), s.epoch
  FROM unnest(%(names)s::text[]) AS n(name)
  LEFT JOIN plugin_host_syncs y ON y.name = n.name
  LEFT JOIN plugin_host_state s ON s.name = n.name
 ORDER BY n.name"""

#: Every pipeline name in the database (``plugin_host_syncs`` is made with the state's
#: tables, at schema version 2).
ALL_NAMES = "SELECT name FROM plugin_host_state UNION SELECT name FROM plugin_host_syncs"


def status_rows(url: str, names: Sequence[str]) -> list[dict[str, Any]]:
    """One row per pipeline of ``names``: last success and its lag in seconds, who holds
    its lease now, how its last sync ended (outcome, error, records, requests, seconds)."""
    with PostgresStateStore(url, create=False) as store:
        if not store.exists:
            raise LocalStorageError(f"state database {_url.display(url)} has no plugin-host "
                                    "tables yet (no run has saved state)")
        rows = store._conn.run(lambda c: c.execute(STATUS, {"names": list(names)}).fetchall(),
                               "reading the status")
    return [{"pipeline": r[0], "last_success": r[1],
             "lag_seconds": None if r[2] is None else round(float(r[2]), 1),
             "holder": r[3], "epoch": int(r[11]) if r[11] is not None else 0,
             "last_outcome": r[4], "last_error": r[5],
             "every_seconds": r[6], "last_records": r[7], "last_requests": r[8],
             "last_seconds": r[9], "last_finished": r[10]} for r in rows]


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def url_from_env(variable: str) -> str:
    """The state database's URL from the environment variable ``variable`` (a URL holds a
    password: never an argument, which any user of the machine may read); registered as a
    secret. ``ConfigError`` naming the variable when it is unset or not a URL."""
    url = os.environ.get(variable, "").strip()
    if not url:
        raise ConfigError(f"--state-url-env {variable}: the environment variable {variable} "
                          "is not set (or is empty)")
    _url.register(url)
    problem = _url.problem(url)
    if problem:
        raise ConfigError(f"--state-url-env {variable}: {problem}")
    return url


def all_names(url: str) -> list[str]:
    """Every pipeline the state database knows: with saved state, or synced by a worker."""
    with PostgresStateStore(url, create=False) as store:
        if not store.exists:
            raise LocalStorageError(f"state database {_url.display(url)} has no plugin-host "
                                    "tables yet (no run has saved state)")
        return sorted(store._conn.run(lambda c: [r[0] for r in c.execute(ALL_NAMES)],
                                      "reading the pipelines' names"))


def print_status(paths: Sequence[str], registry: Registry, *, as_json: bool,
                 url_env: str = "") -> int:
    """Print the status of the pipelines of ``paths`` (grouped by state database), or of
    every pipeline in the database whose URL is in the environment variable ``url_env``."""
    by_url: dict[str, list[str]] = {}
    if url_env:
        url = url_from_env(url_env)
        by_url[url] = all_names(url)
    for path in paths:
        pipeline = load_pipeline(path, registry, resolve=False)
        if not pipeline.state_url:
            raise ConfigError(f"{pipeline.path}: status needs the state on PostgreSQL "
                              "(state: {url: ...}); `plugin-host state show` reads a SQLite "
                              "state")
        by_url.setdefault(pipeline.state_url, []).append(pipeline.name)
    if not by_url:
        raise ConfigError("status needs pipeline files, or --state-url-env VARIABLE naming "
                          "the environment variable that holds the state database's URL")
    rows = [row for url, names in by_url.items() for row in status_rows(url, names)]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return 0
    print(f"{'PIPELINE':<24} {'LAST SUCCESS':<20} {'LAG':>6}  {'LAST':<8} HOLDER / ERROR")
    for r in rows:
        detail = r["holder"] or r["last_error"] or ""
        print(f"{r['pipeline']:<24} {r['last_success'] or 'never':<20} "
              f"{_age(r['lag_seconds']):>6}  {r['last_outcome'] or '-':<8} {detail}")
    return 0
