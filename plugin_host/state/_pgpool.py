"""State connections kept by a thread across syncs (the worker's sync threads), so a sync
does not pay a new backend and a SCRAM exchange on the server for each connection.

A thread that called ``keep_connections`` keeps, per database (and per lease length, which
sets the session's timeouts), the state store's connection and the heartbeat's. A sync takes
them (``take``) and hands them back at its end (``give_back``). A connection comes back only
when it is the one lent (not reconnected meanwhile), idle (no transaction left open) and
every advisory lock of the session is released (the pipeline's lease is per session: kept,
it would tell the next taker its holder is alive); else it is closed and the next sync
connects afresh. Other threads (``plugin-host run``) are not affected: nothing is kept.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ._pgconn import Connection

__all__ = ["give_back", "keep_connections", "kept", "take"]

log = logging.getLogger("plugin_host.state")

_local = threading.local()


def keep_connections() -> None:
    """From now on, this thread keeps its state connections across syncs."""
    _local.kept = {}


def kept() -> bool:
    """True in a thread that keeps its state connections."""
    return getattr(_local, "kept", None) is not None


def take(key: tuple[Any, ...]) -> tuple[Connection, Any] | None:
    """A connection this thread kept under ``key``, and what was recorded with it; None
    when there is none (or the thread keeps none)."""
    pool: dict[tuple[Any, ...], tuple[Connection, Any]] | None = getattr(_local, "kept", None)
    if not pool:
        return None
    return pool.pop(key, None)


def give_back(key: tuple[Any, ...], conn: Connection, extra: Any = None) -> bool:
    """Keep ``conn`` for this thread's next sync when it is sound (see the module), else
    close it; True when kept."""
    pool: dict[tuple[Any, ...], tuple[Connection, Any]] | None = getattr(_local, "kept", None)
    if pool is None or key in pool or not _sound(conn):
        conn.close()
        return False
    pool[key] = (conn, extra)
    return True


def _sound(conn: Connection) -> bool:
    """The connection is the one lent (never lost), alive, idle, without advisory locks."""
    try:
        return conn.release_for_reuse()
    except Exception as exc:  # noqa: BLE001 - any doubt: the connection is not kept
        log.debug("a state connection was not kept: %s", type(exc).__name__)
        return False
