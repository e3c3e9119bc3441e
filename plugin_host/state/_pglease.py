"""A run's lease in the PostgreSQL state store: taken with one conditional statement that
bumps the epoch, renewed by every commit and by a heartbeat thread while the run waits,
released at the end; lost (fenced) once another run bumped the epoch.

The heartbeat renews every ``lease_seconds / 3`` on a connection of its own, so a run that
waits on a ``Retry-After`` longer than its lease keeps it. A killed run stops renewing and
its lease expires after ``lease_seconds`` on the database's clock; with the session advisory
lock (held on the run's connection, freed by the server when that connection ends) the next
run takes over a killed one's lease at once.
"""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

from .._exceptions import Fenced, LocalStorageError
from . import _pgpool
from . import _pgsql as sql
from ._pgconn import Connection

__all__ = ["PgLease", "holder_name"]

log = logging.getLogger("plugin_host.state")


def holder_name() -> str:
    """Who holds a lease: this process and host, and a token unique to this run."""
    return f"pid {os.getpid()} on {socket.gethostname()}, run {secrets.token_hex(4)}"


class PgLease:
    """One run's hold on a pipeline row (and on its rate-limit key rows)."""

    def __init__(
        self,
        conn: Connection,
        name: str,
        epoch: int,
        me: str,
        ttl: float,
        keys: Sequence[tuple[str, int]] = (),
        on_lost: Callable[[], None] | None = None,
        heartbeat_url: str = "",
    ) -> None:
        self.epoch = epoch
        self.name = name
        self.me = me
        self.keys = list(keys)
        self._conn = conn
        self._ttl = ttl
        self._on_lost = on_lost
        self._lost = threading.Event()
        self._message = ""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._heartbeat_url = heartbeat_url
        self._beat_conn: Connection | None = None
        self._beat_kept = False  # the heartbeat's connection is kept by the run's thread

    # -- the fence -------------------------------------------------------------------------

    @property
    def lost(self) -> bool:
        """True once another run took the lease over."""
        return self._lost.is_set()

    def fenced(self) -> Fenced:
        """The error of a run whose lease another run took over."""
        return Fenced(self._message or f"another run took pipeline {self.name} over; this run "
                      "stopped and wrote nothing more")

    def lose(self, table: str = "plugin_host_state", name: str = "") -> Fenced:
        """Mark the lease lost (once), say who has it now, call ``on_lost``."""
        if not self._lost.is_set():
            self._message = self._describe(table, name or self.name)
            self._lost.set()
            log.info("%s", self._message)
            if self._on_lost is not None:
                self._on_lost()
        return self.fenced()

    def _describe(self, table: str, name: str) -> str:
        what = (f"pipeline {self.name}" if table == "plugin_host_state"
                else f"the rate-limit key of pipeline {self.name}")
        who = ""
        try:
            row = self._conn.run(lambda c: c.execute(
                sql.HOLDER.format(table=table), {"name": name}).fetchone(),
                "reading who holds the lease", retry=False)
            if row:
                who = f" ({row[0]}, epoch {row[1]})" if row[0] else f" (epoch {row[1]})"
        except LocalStorageError:
            pass
        return (f"another runner took {what} over{who} while this run (epoch {self.epoch}) "
                f"was stopped or cut off past its {self._ttl:g} s lease: this run stopped "
                "and wrote nothing more; the other run carries on from the last commit")

    def check(self) -> None:
        """Raise ``Fenced`` if another run took the lease over; else renew it (one
        conditional statement)."""
        if self.lost:
            raise self.fenced()
        if not self._renew(self._conn, "plugin_host_state", self.name, self.epoch):
            raise self.lose()

    def _renew(self, conn: Connection, table: str, name: str, epoch: int,
               retry: bool = True) -> bool:
        params = {"name": name, "epoch": epoch, "ttl": self._ttl}
        return bool(conn.run(lambda c: c.execute(sql.RENEW.format(table=table), params).rowcount,
                             "renewing the lease", retry=retry))

    # -- the heartbeat ---------------------------------------------------------------------

    def start_heartbeat(self) -> None:
        """Renew the lease (and the key leases) every ``ttl / 3`` on a connection of its
        own, until ``stop_heartbeat`` or until the lease is found lost."""
        kept = _pgpool.take(("heartbeat", self._heartbeat_url)) if _pgpool.kept() else None
        self._beat_kept = _pgpool.kept()
        if kept is not None:
            kept[0].lend(None)
        self._beat_conn = kept[0] if kept else Connection(self._heartbeat_url,
                                                          reconnect_seconds=0)
        self._thread = threading.Thread(target=self._beat, args=(self._beat_conn,),
                                        name="plugin-host-heartbeat", daemon=True)
        self._thread.start()

    def _beat(self, conn: Connection) -> None:
        interval = max(self._ttl / 3, 0.05)
        failing = False
        try:
            while not self._stop.wait(interval) and not self.lost:
                try:
                    held = self._renew(conn, "plugin_host_state", self.name, self.epoch, False)
                    if not held:
                        self.lose()
                        return
                    for key, epoch in self.keys:
                        if not self._renew(conn, "plugin_host_key_leases", key, epoch, False):
                            self.lose("plugin_host_key_leases", key)
                            return
                    if failing:
                        log.warning("state database reachable again: the lease of pipeline %s "
                                    "is renewed", self.name)
                    failing = False
                except LocalStorageError as exc:
                    if not failing:
                        log.warning("could not renew the lease of pipeline %s (%s); trying "
                                    "again every %.1f s", self.name, exc, interval)
                    failing = True
        finally:
            if not self._beat_kept:
                conn.close()

    def stop_heartbeat(self) -> None:
        """Stop renewing (the heartbeat thread ends within one statement); a connection the
        run's thread keeps goes back to it, sound, for its next run."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            ended = not self._thread.is_alive()
            self._thread = None
            if self._beat_kept and self._beat_conn is not None:
                if ended:
                    _pgpool.give_back(("heartbeat", self._heartbeat_url), self._beat_conn)
                else:  # still in a statement: it closes its connection as it ends
                    self._beat_kept = False
                self._beat_conn = None

    # -- the end ---------------------------------------------------------------------------

    def release(self) -> None:
        """Give the lease and the key leases back (only if still this run's epoch)."""
        self.stop_heartbeat()

        def give_back(c: Any) -> None:
            c.execute(sql.RELEASE.format(table="plugin_host_state"),
                      {"name": self.name, "epoch": self.epoch})
            for key, epoch in self.keys:
                c.execute(sql.RELEASE.format(table="plugin_host_key_leases"),
                          {"name": key, "epoch": epoch})
            c.execute("SELECT pg_advisory_unlock_all()")

        try:
            self._conn.run(give_back, "releasing the lease")
        except LocalStorageError as exc:
            log.warning("%s; the lease expires by itself in %g s", exc, self._ttl)
