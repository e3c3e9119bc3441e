"""The PostgreSQL state store: shared state that another machine can take over, with leases
and fencing.

One row per pipeline (``plugin_host_state``) holds its checkpoint, its output position, the
lease's epoch (the fencing token), its holder and when the lease ends, on the database's
clock. A run takes the lease with one conditional statement that bumps the epoch; every
commit names that epoch (and renews the lease), so once another run took over, a commit of
the old run changes nothing and the old run stops (``Fenced``, exit 6). Pipelines that share
an input's rate-limit key (``x-rate-limit-key`` in the input's manifest) also take a lease on
that key (``plugin_host_key_leases``, named by a hash of the key, never the key): they run
one at a time, so together they keep under the key's limit.

The host creates its tables on first use and records their schema version; a database
whose schema is newer than this host knows is refused (exit 5) before anything is written.
The URL is a secret: shown only without its password (``location``), redacted everywhere.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any

from .._contract import SavedState
from .._exceptions import LocalStorageError, PipelineBusy
from . import _pgpool, _url
from . import _pgsql as sql
from ._pgconn import Connection, driver
from ._pglease import PgLease, holder_name

__all__ = ["DEFAULT_LEASE_SECONDS", "PostgresStateStore", "key_lease_name"]

DEFAULT_LEASE_SECONDS = 30.0


def key_lease_name(secret: str) -> str:
    """The name of a rate-limit key's lease: a hash of the key (never the key itself)."""
    return "sha256:" + hashlib.sha256(f"plugin-host rate-limit key\0{secret}".encode()
                                      ).hexdigest()


def _iso(value: Any) -> str:
    if isinstance(value, datetime):
        text = value.astimezone(timezone.utc).isoformat(timespec="milliseconds")
        return text.replace("+00:00", "Z")
    return str(value)


class PostgresStateStore:
    """The state in a PostgreSQL database. Use as a context manager, or call ``close``.

    With ``create`` False (``state show``, ``state reset``, ``check``), a database without
    plugin-host's tables is left as it is and ``exists`` is False."""

    shared_transactions = True

    def __init__(self, url: str, *, lease_seconds: float = DEFAULT_LEASE_SECONDS,
                 create: bool = True) -> None:
        _url.register(url)
        self.url = url
        self.location = _url.display(url)
        self.lease_seconds = float(lease_seconds)
        self.id = ""
        self.exists = False
        self._lease: PgLease | None = None
        ttl_ms = int(self.lease_seconds * 1000)
        # a worker's sync thread keeps its connection (and the tables it checked) across syncs
        self._kept_as = ("state", url, self.lease_seconds) if create and _pgpool.kept() \
            else None
        kept = _pgpool.take(self._kept_as) if self._kept_as else None
        if kept is not None:
            self._conn, self.id = kept
            self._conn.lend(self._relock)
            self.exists = True
            return
        self._conn = Connection(
            url, reconnect_seconds=min(max(self.lease_seconds, 5.0), 60.0),
            session=(f"SET idle_in_transaction_session_timeout = {ttl_ms}",
                     f"SET lock_timeout = {min(ttl_ms, 10_000)}"),
            on_reconnect=self._relock,
        )
        self._conn.connect()
        try:
            self._conn.run(lambda c: self._migrate(c, create), "creating plugin-host's tables")
        except BaseException:
            self._conn.close()
            raise

    # -- schema ----------------------------------------------------------------------------

    def _migrate(self, conn: Any, create: bool) -> None:
        """Check the schema version (newer: refused), and create the tables on first use."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (sql.MIGRATION_LOCK,))
            if conn.execute(sql.EXISTS).fetchone()[0]:
                row = conn.execute(sql.VERSION).fetchone()
                version = int(row[0]) if row else 0
                if version > sql.SCHEMA_VERSION:
                    raise LocalStorageError(
                        f"state database {self.location} holds plugin-host tables of schema "
                        f"version {version}, newer than this plugin-host knows "
                        f"({sql.SCHEMA_VERSION}): upgrade plugin-host; nothing was changed")
                if create and version < sql.SCHEMA_VERSION:
                    self._upgrade(conn, version)
            elif not create:
                return
            else:
                for statement in sql.CREATE:
                    conn.execute(statement)
                conn.execute("INSERT INTO plugin_host_meta VALUES ('schema_version', %s), "
                             "('store_id', %s) ON CONFLICT (key) DO NOTHING",
                             (str(sql.SCHEMA_VERSION), uuid.uuid4().hex))
            row = conn.execute("SELECT value FROM plugin_host_meta WHERE key = 'store_id'"
                               ).fetchone()
            self.id = str(row[0]) if row else ""
            self.exists = True

    @staticmethod
    def _upgrade(conn: Any, version: int) -> None:
        """Bring tables of an older schema ``version`` to this host's (in the caller's
        transaction, under the migration lock)."""
        for target in range(version + 1, sql.SCHEMA_VERSION + 1):
            for statement in sql.MIGRATIONS.get(target, ()):
                conn.execute(statement)
        conn.execute("UPDATE plugin_host_meta SET value = %s WHERE key = 'schema_version'",
                     (str(sql.SCHEMA_VERSION),))

    def check_access(self) -> list[str]:
        """What this database lacks for a run: privileges on plugin-host's tables (or, before
        the first run, on the schema to create them); empty when nothing is missing."""
        def probe(c: Any) -> list[str]:
            if not self.exists:
                ok = c.execute("SELECT has_schema_privilege(current_schema(), 'CREATE')"
                               ).fetchone()[0]
                return [] if ok else ["CREATE on the schema (to create plugin-host's tables)"]
            missing = []
            for table, privileges in sql.PRIVILEGES.items():
                for privilege in privileges:
                    if not c.execute("SELECT has_table_privilege(%s, %s)",
                                     (table, privilege)).fetchone()[0]:
                        missing.append(f"{privilege} on {table}")
            return missing

        return list(self._conn.run(probe, "checking privileges"))

    # -- reading ---------------------------------------------------------------------------

    def load(self, name: str) -> SavedState | None:
        """The committed state of pipeline ``name``, or None before its first commit."""
        if not self.exists:
            return None
        row = self._conn.run(lambda c: c.execute(sql.LOAD, {"name": name}).fetchone(),
                             "reading the state")
        if row is None:
            return None
        try:
            checkpoint = json.loads(row[1]) if row[1] is not None else None
            output = json.loads(row[2]) if row[2] is not None else None
        except ValueError:
            raise LocalStorageError(f"state database {self.location}: pipeline {name}'s "
                                    "saved state is not JSON; nothing was changed") from None
        return SavedState(name, row[0], checkpoint, output, int(row[3]), _iso(row[4]),
                          _iso(row[5]))

    def names(self) -> list[str]:
        """Every pipeline name with saved state."""
        if not self.exists:
            return []
        return [r[0] for r in self._conn.run(lambda c: c.execute(sql.NAMES).fetchall(),
                                             "reading the state")]

    def lease_info(self, name: str) -> dict[str, Any] | None:
        """Who holds pipeline ``name``'s lease, its epoch and until when (None: no row)."""
        if not self.exists:
            return None
        row = self._conn.run(lambda c: c.execute(sql.HOLDER.format(table="plugin_host_state"),
                                                 {"name": name}).fetchone(), "reading the lease")
        if row is None:
            return None
        held = row[0] is not None and float(row[3] or 0) > 0
        return {"held": held, "holder": row[0] if held else None, "epoch": int(row[1]),
                "until": row[2] if held else None}

    # -- leases ----------------------------------------------------------------------------

    def _relock(self, conn: Any) -> None:
        """After a reconnect: take the advisory locks of the lease held again (best effort)."""
        lease = self._lease
        if lease is not None and not lease.lost:
            conn.execute("SELECT pg_try_advisory_lock(%s)",
                         (sql.advisory_key("plugin_host_state", lease.name),))

    def _take(self, c: Any, table: str, statement: str, params: dict[str, Any]) -> int | None:
        """Take one lease row: its new epoch, or None while another run holds it. The
        advisory lock tells a crashed holder (its session is gone) at once."""
        key = sql.advisory_key(table, params["name"])
        gone = bool(c.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0])
        try:
            row = c.execute(statement, {**params, "gone": gone}).fetchone()
        except driver().errors.LockNotAvailable:  # the holder is inside a commit that long
            row = None
        if row is None and gone:
            c.execute("SELECT pg_advisory_unlock(%s)", (key,))
        return int(row[0]) if row else None

    def _busy(self, name: str) -> PipelineBusy:
        row = self._conn.run(lambda c: c.execute(sql.HOLDER.format(table="plugin_host_state"),
                                                 {"name": name}).fetchone(), "reading the lease")
        who = f"{row[0]}, epoch {row[1]}" if row and row[0] else "another run"
        left = f"; its lease ends at {row[2]} unless renewed" if row and row[2] else ""
        return PipelineBusy(f"pipeline {name} is already running ({who}{left}): wait for it "
                            "to finish (a killed run's lease expires by itself)")

    def _key_busy(self, name: str, key: str) -> PipelineBusy:
        row = self._conn.run(lambda c: c.execute(sql.KEY_HOLDER, {"name": key}).fetchone(),
                             "reading the key's lease")
        who = f"pipeline {row[0]} ({row[1]})" if row and row[1] else "another pipeline"
        return PipelineBusy(
            f"pipeline {name} shares its API key with {who}, which is running: pipelines "
            "that share a rate-limit key run one at a time; run again once it is done")

    @contextlib.contextmanager
    def lease(self, name: str, *, keys: Sequence[str] = (),
              on_lost: Callable[[], None] | None = None) -> Iterator[PgLease]:
        """Hold pipeline ``name`` and each key lease of ``keys`` (names from
        ``key_lease_name``) for one run, with a heartbeat; ``PipelineBusy`` naming the
        holder when another run has one of them."""
        if not self.exists:
            raise LocalStorageError(f"state database {self.location} has no plugin-host "
                                    "tables yet (no run has saved state)")
        me = holder_name()
        params = {"name": name, "me": me, "ttl": self.lease_seconds}
        epoch = self._conn.run(lambda c: self._take(c, "plugin_host_state", sql.ACQUIRE,
                                                    params), "taking the lease")
        if epoch is None:
            raise self._busy(name)
        lease = PgLease(self._conn, name, epoch, me, self.lease_seconds, on_lost=on_lost,
                        heartbeat_url=self.url)
        self._lease = lease
        try:
            for key in keys:
                key_params = {**params, "name": key, "pipeline": name}

                def take_key(c: Any, p: dict[str, Any] = key_params) -> int | None:
                    return self._take(c, "plugin_host_key_leases", sql.ACQUIRE_KEY, p)

                key_epoch = self._conn.run(take_key, "taking the rate-limit key's lease")
                if key_epoch is None:
                    raise self._key_busy(name, key)
                lease.keys.append((key, key_epoch))
            lease.start_heartbeat()
            yield lease
        finally:
            self._lease = None
            lease.release()

    # -- writing ---------------------------------------------------------------------------

    def commit(
        self,
        name: str,
        input_type: str,
        checkpoint: Mapping[str, Any] | str | None,
        output: Mapping[str, Any] | None,
        *,
        within: Callable[[Any], Mapping[str, Any] | None] | None = None,
    ) -> None:
        """Save the checkpoint and the output position in one transaction, only while this
        run's lease is the latest (``Fenced`` otherwise); renews the lease. ``within`` (a
        ``TransactionalOutput``'s ``write_in``) writes its records in that transaction."""
        lease = self._lease
        if lease is None or lease.name != name:
            raise LocalStorageError(f"pipeline {name}: a commit needs the run's lease")
        if lease.lost:
            raise lease.fenced()
        cp = checkpoint if checkpoint is None or isinstance(checkpoint, str) else json.dumps(
            checkpoint, sort_keys=True)
        params = {"name": name, "epoch": lease.epoch, "ttl": self.lease_seconds,
                  "input_type": input_type, "checkpoint": cp}

        def plain(c: Any) -> int:
            out = None if output is None else json.dumps(output, sort_keys=True)
            return int(c.execute(sql.COMMIT, {**params, "output": out}).rowcount)

        def joined(c: Any) -> int:
            assert within is not None
            with c.transaction() as tx:
                position = within(c)
                out = None if position is None else json.dumps(position, sort_keys=True)
                updated = int(c.execute(sql.COMMIT, {**params, "output": out}).rowcount)
                if not updated:
                    raise driver().Rollback(tx)  # fenced: the records go with it
            return updated

        if within is None:
            updated = self._conn.run(plain, "committing the checkpoint")
        else:
            updated = self._conn.run(joined, "committing the records and the checkpoint",
                                     retry=False)
        if not updated:
            raise lease.lose()

    def reset(self, name: str) -> bool:
        """Clear pipeline ``name``'s state under its lease (refused while a run holds it);
        True if there was any. The epoch is kept, so an old run stays fenced."""
        if not self.exists:
            return False
        with self.lease(name) as lease:
            had = self.load(name) is not None
            updated = self._conn.run(lambda c: c.execute(
                sql.RESET, {"name": name, "epoch": lease.epoch}).rowcount, "clearing the state")
            if not updated:
                raise lease.lose()
            return had

    def close(self) -> None:
        """Close the connection (its advisory locks go with it); in a thread that keeps its
        connections, keep it for the next sync once every advisory lock is released."""
        if self._kept_as is not None:
            _pgpool.give_back(self._kept_as, self._conn, self.id)
        else:
            self._conn.close()

    def __enter__(self) -> PostgresStateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

