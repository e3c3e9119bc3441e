"""One connection to the state database: made with the driver imported on first use, ridden
through a server restart (reconnecting for a while), and every failure told in one line
that names the database without its password.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from .._exceptions import LocalStorageError
from . import _url

__all__ = ["Connection", "driver", "failure"]

log = logging.getLogger("plugin_host.state")

T = TypeVar("T")

#: libpq's connection parameters beside the URL's own: a dead server or network is noticed
#: within about 20 s, even in the middle of a statement.
CONNECT_OPTIONS: dict[str, Any] = {
    "connect_timeout": 10,
    "application_name": "plugin-host",
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 3,
    "keepalives_count": 3,
}

#: Words of libpq's and the server's messages that mean the database refused this login.
_REFUSALS = (
    ("password authentication failed", "it refused the password of user {user}: check the "
     "password in {setting}"),
    ("no password supplied", "it asks for a password and {setting} has none"),
    ("role \"", "it has no user {user}: check the user in {setting}"),
    ("does not exist", "it has no database {database}: create it, or check {setting}"),
    ("no pg_hba.conf entry", "its pg_hba.conf does not let user {user} in from here"),
    ("permission denied for database", "user {user} may not connect to database {database}: "
     "GRANT CONNECT ON DATABASE to it"),
    ("could not translate host name", "its host name does not resolve: check {setting}"),
    ("ssl", "the TLS handshake failed"),
)

#: ... and those that mean it could not be reached, or went away.
_OUTAGES = (
    ("connection refused", "it is unreachable (connection refused): is the server running, "
     "and are the host and port right?"),
    ("timeout expired", "it did not answer in time (connection timed out)"),
    ("starting up", "it is starting up"),
    ("shutting down", "it is shutting down"),
    ("terminating connection", "it ended the connection (the server restarted or stopped)"),
    ("server closed the connection", "it closed the connection (the server restarted or "
     "stopped)"),
    ("consuming input failed", "the connection was lost"),
)


def driver() -> Any:
    """psycopg, imported on first use (a SQLite state never loads it); a clear line when it
    is missing."""
    try:
        import psycopg
    except ImportError:  # pragma: no cover - a dependency: only a broken install lacks it
        raise LocalStorageError(
            "a state.url needs the PostgreSQL driver psycopg: pip install 'psycopg[binary]'"
        ) from None
    return psycopg


def _parts(url: str) -> dict[str, str]:
    from urllib.parse import unquote, urlsplit

    try:
        parts = urlsplit(url.strip())
        return {"user": unquote(parts.username or "") or "(default)",
                "database": (parts.path or "/").lstrip("/") or "(default)"}
    except ValueError:
        return {"user": "(unknown)", "database": "(unknown)"}


def failure(exc: BaseException, url: str, doing: str, *, what: str = "state database",
            setting: str = "state.url") -> LocalStorageError:
    """``exc`` from the driver as one line: which database, what failed, what to do
    (``what`` names the database's role, ``setting`` where its URL is set)."""
    where = f"{what} {_url.display(url)}"
    psycopg = driver()
    text = " ".join(str(exc).split())
    sqlstate = getattr(exc, "sqlstate", None) or ""
    if isinstance(exc, psycopg.errors.InsufficientPrivilege) or sqlstate == "42501":
        detail = getattr(getattr(exc, "diag", None), "message_primary", None) or text
        return LocalStorageError(_url.scrub(
            f"{where}: user {_parts(url)['user']} lacks a privilege {doing} ({detail}); grant "
            "it SELECT on plugin_host_meta, and SELECT, INSERT and UPDATE on plugin_host_state "
            "and plugin_host_key_leases (and CREATE on the schema for the first run); nothing "
            "was written", url))
    if isinstance(exc, psycopg.ProgrammingError) and not sqlstate and doing == "connecting":
        # the driver quotes the bad part of a URL it cannot read: never show it
        return LocalStorageError(f"{where}: {setting} cannot be read by the driver; check "
                                 "its form (postgresql://USER:PASSWORD@HOST:5432/DATABASE)")
    lowered = text.lower() if not sqlstate or sqlstate[:2] in ("08", "28", "3D", "57") else ""
    for needle, reason in _REFUSALS:
        if needle in lowered:
            return LocalStorageError(_url.scrub(
                f"{where}: {reason.format(setting=setting, **_parts(url))}; nothing was "
                "written", url))
    for needle, reason in _OUTAGES:
        if needle in lowered:
            return LocalStorageError(_url.scrub(
                f"{where}: {reason} ({doing}); the state stays at its last commit", url))
    last = text.rsplit(": ", 1)[-1] if text else type(exc).__name__
    return LocalStorageError(_url.scrub(
        f"{where}: {doing} failed ({last}); the state stays at its last commit", url))


def _lost(exc: BaseException, conn: Any) -> bool:
    """True when ``exc`` means the connection is gone (worth a new one), not a refusal."""
    if conn is not None and not getattr(conn, "broken", False) and not conn.closed:
        return False
    text = str(exc).lower()
    return not any(needle in text for needle, _ in _REFUSALS)


class Connection:
    """An autocommit connection that reconnects after a loss, for up to
    ``reconnect_seconds``; statements run one at a time (any thread)."""

    def __init__(
        self,
        url: str,
        *,
        reconnect_seconds: float,
        session: Sequence[str] = (),
        on_reconnect: Callable[[Any], None] | None = None,
        what: str = "state database",
        setting: str = "state.url",
    ) -> None:
        self.url = url
        self._named = {"what": what, "setting": setting}
        self.reconnect_seconds = reconnect_seconds
        self._session = tuple(session)
        self._on_reconnect = on_reconnect
        self._conn: Any = None
        self._lock = threading.RLock()
        self._closed = False
        self.dropped = False  # set when a connection was lost (see ``lend``)

    @property
    def raw(self) -> Any:
        """The driver's connection now (None before the first statement or after a loss)."""
        return self._conn

    def lend(self, on_reconnect: Callable[[Any], None] | None) -> None:
        """Start a new use of a kept connection: ``on_reconnect`` is its new user's, and
        ``dropped`` tells from now on whether the connection was lost meanwhile."""
        with self._lock:
            self._on_reconnect = on_reconnect
            self.dropped = False

    def _open(self) -> Any:
        psycopg = driver()
        conn = psycopg.connect(self.url, autocommit=True, **CONNECT_OPTIONS)
        try:
            for statement in self._session:
                conn.execute(statement)
        except BaseException:
            conn.close()
            raise
        return conn

    def connect(self, doing: str = "connecting") -> None:
        """Connect now (no retry): the first contact tells a wrong URL at once."""
        with self._lock:
            if self._conn is None:
                try:
                    self._conn = self._open()
                except driver().Error as exc:
                    raise failure(exc, self.url, doing, **self._named) from None

    def run(self, fn: Callable[[Any], T], doing: str, *, retry: bool = True) -> T:
        """``fn(connection)``; after a lost connection, reconnect and run it again (with
        ``retry``: ``fn`` must then be safe to repeat) for up to ``reconnect_seconds``."""
        psycopg = driver()
        deadline: float | None = None
        delay = 0.1
        with self._lock:
            while True:
                reconnected = False
                try:
                    if self._conn is None or self._conn.closed:
                        self.dropped = self.dropped or self._conn is not None
                        self._conn = self._open()
                        reconnected = deadline is not None
                        if reconnected and self._on_reconnect is not None:
                            self._on_reconnect(self._conn)
                    if reconnected:
                        log.warning("%s %s: connected again", self._named["what"],
                                    _url.display(self.url))
                    return fn(self._conn)
                except psycopg.Error as exc:
                    conn, lost = self._conn, _lost(exc, self._conn)
                    if conn is not None and (conn.closed or getattr(conn, "broken", False)):
                        self._conn, self.dropped = None, True
                    if not (retry and lost) or self._closed:
                        raise failure(exc, self.url, doing, **self._named) from None
                    now = time.monotonic()
                    if deadline is None:
                        deadline = now + self.reconnect_seconds
                        log.warning("%s %s: connection lost while %s (%s); "
                                    "reconnecting for up to %.0f s", self._named["what"],
                                    _url.display(self.url),
                                    doing, _url.scrub(str(exc).strip().splitlines()[0]
                                                      if str(exc).strip() else "", self.url),
                                    self.reconnect_seconds)
                    if now >= deadline:
                        raise failure(exc, self.url, doing, **self._named) from None
                    time.sleep(min(delay, max(deadline - now, 0.0)))
                    delay = min(delay * 2, 1.0)

    def release_for_reuse(self) -> bool:
        """Make the session fit for another run: True when it was never lost since ``lend``,
        is alive and idle (no transaction open), and its advisory locks are now released."""
        with self._lock:
            raw = self._conn
            if self.dropped or self._closed or raw is None or raw.closed or \
                    getattr(raw, "broken", False):
                return False
            from psycopg.pq import TransactionStatus

            if raw.info.transaction_status != TransactionStatus.IDLE:
                return False
            raw.execute("SELECT pg_advisory_unlock_all()")
            return True

    def close(self) -> None:
        """Close the connection (a session's advisory locks go with it)."""
        with self._lock:
            self._closed = True
            if self._conn is not None:
                try:
                    self._conn.close()
                finally:
                    self._conn = None
