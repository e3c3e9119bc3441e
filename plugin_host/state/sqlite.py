"""The embedded state store: one SQLite file (WAL, atomic commits), keyed by pipeline name.

Each pipeline's row holds the input's last committed checkpoint and the output's
durable position, written together in one transaction. A lock row per pipeline
keeps two runs of the same pipeline apart. No secret is ever stored. (The validation
cache keeps a table of its own in the same file: see ``_validation_cache``.)
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .._contract import SavedState
from .._exceptions import LocalStorageError, PipelineBusy

__all__ = ["SCHEMA_VERSION", "SavedState", "StateStore"]

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pipelines (
    name TEXT PRIMARY KEY,
    input_type TEXT NOT NULL,
    checkpoint TEXT,
    output TEXT,
    commits INTEGER NOT NULL DEFAULT 0,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS locks (
    name TEXT PRIMARY KEY,
    pid INTEGER NOT NULL,
    host TEXT NOT NULL,
    proc_start TEXT,
    acquired_at TEXT NOT NULL
);
"""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _proc_start(pid: int) -> str | None:
    """The kernel's start time of a process, so a reused pid is not taken for the holder."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw.rsplit(")", 1)[-1].split()[19]


def _alive(pid: int, proc_start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return proc_start is None or _proc_start(pid) in (None, proc_start)


def _create(path: Path) -> None:
    """Create a new state file whole: built under another name, then linked into place, so
    a crash never leaves an empty file at ``path`` (an empty file is refused as damaged)."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.new")
    try:
        db = sqlite3.connect(str(temp), isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode = WAL")
            db.executescript(_SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                       (str(SCHEMA_VERSION),))
            db.execute("INSERT OR IGNORE INTO meta VALUES ('store_id', ?)", (uuid.uuid4().hex,))
        finally:
            db.close()
        try:
            os.link(temp, path)
        except FileExistsError:
            pass  # another process created it first: use theirs
        except OSError:
            pass  # no hard links here: SQLite creates the file in place
    finally:
        for leftover in (temp, Path(f"{temp}-wal"), Path(f"{temp}-shm")):
            with contextlib.suppress(OSError):
                leftover.unlink()


class _ProcessLock:
    """The lease of a SQLite state: the run's process lock. No other run can take it over
    while the process lives, so it is never lost and its fence is a no-op."""

    epoch = 0
    lost = False

    def check(self) -> None:
        """Nothing to check: a live process keeps its lock."""


class StateStore:
    """One SQLite state file. Use as a context manager, or call ``close``."""

    shared_transactions = False

    def __init__(self, path: Path, *, create: bool = True) -> None:
        self.path = path
        self.location = str(path)
        if not create and not path.exists():
            raise LocalStorageError(f"state file {path} does not exist (no run has saved state)")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if not path.exists():
                _create(path)
            elif path.stat().st_size == 0:
                # plugin-host never leaves an empty state file (see _create): this one was
                # truncated, and SQLite would take it for a new database and reset the state
                raise sqlite3.DatabaseError("the file is empty")
            # a run commits from a thread of its own, never while another thread uses the store
            self._db = sqlite3.connect(str(path), timeout=30, isolation_level=None,
                                       check_same_thread=False)
            self._db.execute("PRAGMA busy_timeout = 30000")
            tables = {r[0] for r in self._db.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            if tables and "meta" not in tables:  # another program's database: leave it be
                raise sqlite3.DatabaseError("it holds other tables than plugin-host's")
            mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()
            self._db.execute("PRAGMA synchronous = FULL")
            if mode and str(mode[0]).lower() != "wal":
                raise sqlite3.DatabaseError(f"journal mode is {mode[0]}")
            self._db.executescript(_SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self._db.execute(
                    "INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)",
                    (str(SCHEMA_VERSION),),
                )
            elif int(row[0]) > SCHEMA_VERSION:
                raise LocalStorageError(
                    f"state file {path} was written by a newer plugin-host "
                    f"(schema {row[0]}); upgrade plugin-host"
                )
            self.id = self._store_id()
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from None
        except OSError as exc:
            raise LocalStorageError(
                f"state file {path} cannot be opened ({exc.strerror or exc})"
            ) from None

    def _store_id(self) -> str:
        """This store's id (made once, kept for good): outputs record it with the pipeline
        they belong to, so a state file moved elsewhere is still the same store."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
        if row is None:  # a state file from before ids: give it one
            self._db.execute("INSERT OR IGNORE INTO meta VALUES ('store_id', ?)",
                             (uuid.uuid4().hex,))
            row = self._db.execute("SELECT value FROM meta WHERE key = 'store_id'").fetchone()
        return str(row[0])

    def _corrupt(self, exc: Exception) -> LocalStorageError:
        text = str(exc)
        if "readonly" in text or "read-only" in text or "unable to open" in text:
            return LocalStorageError(f"state file {self.path} cannot be written ({text})")
        return LocalStorageError(
            f"state file {self.path} is damaged or not a plugin-host state file ({text}); "
            "nothing was changed: restore it from a backup, or move it aside to start over "
            "(the next run then collects from the backfill start again)"
        )

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def __enter__(self) -> StateStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def load(self, name: str) -> SavedState | None:
        """The committed state of pipeline ``name``, or None before its first commit."""
        try:
            row = self._db.execute(
                "SELECT name, input_type, checkpoint, output, commits, created_at, updated_at "
                "FROM pipelines WHERE name = ?",
                (name,),
            ).fetchone()
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from None
        if row is None:
            return None
        try:
            checkpoint = json.loads(row[2]) if row[2] is not None else None
            output = json.loads(row[3]) if row[3] is not None else None
        except ValueError:
            raise self._corrupt(ValueError(f"pipeline {name}'s saved state is not JSON")) from None
        return SavedState(row[0], row[1], checkpoint, output, row[4], row[5], row[6])

    def names(self) -> list[str]:
        """Every pipeline name with saved state."""
        try:
            return [r[0] for r in self._db.execute("SELECT name FROM pipelines ORDER BY name")]
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from None

    def commit(
        self,
        name: str,
        input_type: str,
        checkpoint: Mapping[str, Any] | str | None,
        output: Mapping[str, Any] | None,
        *,
        within: Callable[[Any], Mapping[str, Any] | None] | None = None,
    ) -> None:
        """Save the checkpoint (a mapping, or its JSON text) and the output position
        together, atomically. (``within`` is for a database shared with an output: never
        here.)"""
        if within is not None:
            raise LocalStorageError("a SQLite state cannot commit an output's records in its "
                                    "transaction")
        if checkpoint is None or isinstance(checkpoint, str):
            cp = checkpoint
        else:
            cp = json.dumps(checkpoint, sort_keys=True)
        out = None if output is None else json.dumps(output, sort_keys=True)
        now = _now()
        try:
            self._db.execute(
                "INSERT INTO pipelines (name, input_type, checkpoint, output, commits, "
                "created_at, updated_at) VALUES (?, ?, ?, ?, 1, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET input_type = excluded.input_type, "
                "checkpoint = excluded.checkpoint, output = excluded.output, "
                "commits = commits + 1, updated_at = excluded.updated_at",
                (name, input_type, cp, out, now, now),
            )
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from None

    def execute(self, sql: str, args: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        """Run one statement on the state file, for a neighbour that keeps a table of its
        own in it (the validation cache); a failure is a LocalStorageError."""
        try:
            return self._db.execute(sql, args)
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from None

    def reset(self, name: str) -> bool:
        """Delete pipeline ``name``'s state; True if there was any. Refused while it runs."""
        with self.lock(name):
            try:
                cursor = self._db.execute("DELETE FROM pipelines WHERE name = ?", (name,))
            except sqlite3.DatabaseError as exc:
                raise self._corrupt(exc) from None
            return cursor.rowcount > 0

    @contextlib.contextmanager
    def lease(self, name: str, *, keys: Sequence[str] = (),
              on_lost: Callable[[], None] | None = None) -> Iterator[_ProcessLock]:
        """Hold pipeline ``name``'s run lock for one run (``lock``); rate-limit keys are not
        leased in a SQLite state, which one machine's runs share."""
        with self.lock(name):
            yield _ProcessLock()

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[None]:
        """Hold pipeline ``name``'s run lock; PipelineBusy if a live process holds it."""
        pid, host = os.getpid(), socket.gethostname()
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT pid, host, proc_start, acquired_at FROM locks WHERE name = ?", (name,)
                ).fetchone()
                held = row is not None and (row[1] != host or _alive(row[0], row[2]))
                if row is not None and held and not (row[0] == pid and row[1] == host):
                    raise PipelineBusy(
                        f"pipeline {name} is already running (pid {row[0]} on {row[1]}, "
                        f"since {row[3]}); wait for it to finish"
                    )
                self._db.execute(
                    "INSERT OR REPLACE INTO locks VALUES (?, ?, ?, ?, ?)",
                    (name, pid, host, _proc_start(pid), _now()),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.DatabaseError as exc:
            raise self._corrupt(exc) from None
        try:
            yield
        finally:
            with contextlib.suppress(sqlite3.Error):
                for _ in range(3):
                    try:
                        self._db.execute(
                            "DELETE FROM locks WHERE name = ? AND pid = ?", (name, pid)
                        )
                        break
                    except sqlite3.OperationalError:
                        time.sleep(0.1)
