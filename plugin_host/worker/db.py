"""The worker's side of the state database: procrastinate's schema, made once, and what the
worker records of each pipeline's syncs in ``plugin_host_syncs`` (schema version 2 of the
state store, which creates the table)."""

from __future__ import annotations

from typing import Any

from .._exceptions import ConfigError, LocalStorageError
from ..state import _url
from ..state.postgres import PostgresStateStore

__all__ = ["CLAIM", "CLEAN", "FINISH", "REGISTER", "REQUEUE", "START", "ensure_schema",
           "require_procrastinate"]

#: Taken (for the transaction) around the check and creation of procrastinate's tables, so
#: that workers starting at once make them once.
SCHEMA_LOCK = 0x706C7567696E70  # "pluginp"

REGISTER = """
INSERT INTO plugin_host_syncs (name, every_seconds)
SELECT * FROM unnest(%(names)s::text[], %(every)s::float8[])
ON CONFLICT (name) DO UPDATE SET every_seconds = excluded.every_seconds
 WHERE plugin_host_syncs.every_seconds <> excluded.every_seconds"""

#: The pipelines due now, marked dispatched (one statement: two dispatchers never both
#: claim one pipeline for one period).
CLAIM = """
UPDATE plugin_host_syncs SET dispatched_at = now()
 WHERE name = ANY(%(names)s::text[])
   AND (dispatched_at IS NULL
        OR dispatched_at + make_interval(secs => every_seconds) <= now())
RETURNING name"""

START = """
UPDATE plugin_host_syncs SET started_at = now(), runner = %(runner)s WHERE name = %(name)s"""

#: A sync this worker did not start (it was stopping): due again at the next dispatch.
REQUEUE = "UPDATE plugin_host_syncs SET dispatched_at = NULL WHERE name = %(name)s"

#: A sync's end. One that found its lease (or its API key's) held is due again after
#: ``retry`` seconds instead of a whole period: it did nothing upstream.
FINISH = """
UPDATE plugin_host_syncs
   SET finished_at = now(), outcome = %(outcome)s, error = %(error)s,
       records = %(records)s, requests = %(requests)s, seconds = %(seconds)s,
       last_success_at = CASE WHEN %(ok)s THEN now() ELSE last_success_at END,
       dispatched_at = CASE WHEN %(again)s
           THEN now() - make_interval(secs => every_seconds)
                + make_interval(secs => %(retry)s)
           ELSE dispatched_at END
 WHERE name = %(name)s"""

#: Job rows left behind (a killed worker's job stays `doing`; failed ones stay), by age.
CLEAN = """
DELETE FROM procrastinate_jobs j
 WHERE j.task_name LIKE 'plugin_host.%%' AND j.status <> 'todo'
   AND NOT EXISTS (SELECT 1 FROM procrastinate_events e
                    WHERE e.job_id = j.id AND e.at > now() - make_interval(secs => %(age)s))"""


def require_procrastinate() -> None:
    """``ConfigError`` (exit 2) naming the extra to install when procrastinate is missing
    (the base install has no worker): nothing is made in the database then."""
    try:
        import procrastinate  # noqa: F401
    except ImportError:
        raise ConfigError("plugin-host worker needs procrastinate, which this install lacks: "
                          "pip install 'plugin-host[worker]'") from None


def ensure_schema(url: str) -> list[str]:
    """Make plugin-host's tables (or bring them to this version) and procrastinate's (when
    missing), each once however many workers start at once; say what was done."""
    done: list[str] = []
    require_procrastinate()
    import procrastinate
    import psycopg

    PostgresStateStore(url).close()
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn, \
                conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
            made = conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()
            if made is None or made[0] is None:
                schema: Any = procrastinate.App(
                    connector=procrastinate.PsycopgConnector()).schema_manager.get_schema()
                conn.execute(schema)
                done.append("procrastinate's tables made")
    except psycopg.Error as exc:
        raise LocalStorageError(_url.scrub(
            f"state database {_url.display(url)}: could not make procrastinate's tables "
            f"({type(exc).__name__}: {exc})", url)) from None
    return done
