"""The ``postgres`` output: one row per record in a PostgreSQL table.

Each row is ``(pipeline, id, record)``: the pipeline's name, the record's id and the record
unchanged as ``jsonb``; the table (created when missing, see ``_pgtable``) is unique on
``(pipeline, id)``. A record's id is the value of its key: the input manifest's
``records.key`` when it declares one and no transform reshapes the records, else the
record's ``id`` property; a record without one is named by a hash of its JSON.

Records are buffered between commits, serialized once (orjson), and sent by COPY. A COPY
that meets a row the table has already (a repeat) is undone and the batch is sent again as
``INSERT ... ON CONFLICT (pipeline, id) DO NOTHING`` in pipelined batches.

- **In the state's database** (the output's URL is the state's, or left out with a
  PostgreSQL state): a ``TransactionalOutput``. The rows are written in the state's commit
  transaction, before the conditional update of the checkpoint: they commit together, or
  not at all; a run whose lease was taken over writes nothing (exactly once).
- **In another database, or with a SQLite state**: ``durable`` commits the buffered rows
  in the output database, then the host commits the checkpoint. A crash in between sends
  those rows again; the unique ``(pipeline, id)`` keeps each once (at least once,
  idempotent). Each commit first checks the run's fence.

psycopg is imported when a pipeline uses this output, never before.
"""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Mapping, Sequence
from itertools import chain, repeat
from typing import Any, ClassVar

import orjson

from .._contract import OutputContext
from .._exceptions import LocalStorageError
from .._jsonl import _dump
from ._pgtable import Table

__all__ = ["PostgresOutput"]

_INSERT_BATCH = 1000


def same_database(one: str, other: str) -> bool:
    """True when two PostgreSQL URLs name the same database as the same user."""
    if not one or not other:
        return False
    if one.strip() == other.strip():
        return True
    from psycopg.conninfo import conninfo_to_dict

    try:
        return conninfo_to_dict(one.strip()) == conninfo_to_dict(other.strip())
    except Exception:  # noqa: BLE001 - an unreadable URL is told when connecting
        return False


def _text_field(text: str) -> bytes:
    """``text`` as a field of COPY's text format."""
    return (text.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n")
            .replace("\r", "\\r").encode("utf-8", "surrogatepass"))


class PostgresOutput:
    """Rows of a PostgreSQL table: exactly once in the state's database, else at least once
    made idempotent by the table's unique ``(pipeline, id)``."""

    manifest: ClassVar[Mapping[str, Any]] = {
        "name": "postgres",
        "description": "Writes each record as one row (pipeline, id, record jsonb) of a "
        "PostgreSQL table, created if missing. In the state's own database a page group's "
        "rows and its checkpoint commit in one transaction (exactly once); in another "
        "database, at least once made idempotent by a unique (pipeline, id).",
        "settings": {
            "type": "object",
            "required": ["table"],
            "additionalProperties": False,
            "properties": {
                "table": {
                    "type": "string",
                    "pattern": r"^[a-z_][a-z0-9_]{0,62}(\.[a-z_][a-z0-9_]{0,62})?$",
                    "x-expected": "a table name like audit_events or a schema-qualified one "
                    "like security.audit_events: lower-case letters, digits and '_'",
                    "description": "The table to write to, created if missing (pipeline "
                    "text, id text, record jsonb, written_at; unique on (pipeline, id)). "
                    "Several pipelines may share one.",
                }
            },
        },
        "secrets": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "url": {
                    "type": "string",
                    "writeOnly": True,
                    "pattern": r"^postgres(ql)?://\S+$",
                    "x-expected": "a PostgreSQL URL like postgresql://USER:PASSWORD@HOST:5432/"
                    "DATABASE",
                    "description": "The database, as postgresql://USER:PASSWORD@HOST:5432/"
                    "DATABASE. Left out, the state's database (state.url); required with a "
                    "SQLite state. The same database as the state's: exactly once.",
                }
            },
        },
    }

    #: Secrets that, left out of the pipeline, are the state's URL (a PostgreSQL state).
    state_url_secrets: ClassVar[tuple[str, ...]] = ("url",)

    def __init__(self, settings: Mapping[str, Any], context: OutputContext) -> None:
        from ..state import _url

        self._url = str(context.secrets.get("url") or context.state_url).strip()
        _url.register(self._url)
        problem = _url.problem(self._url) if self._url else "is required"
        if problem:
            from .._exceptions import ConfigError

            raise ConfigError(f"$.output.secrets.url: {problem}")
        self._pipeline = context.pipeline_name
        self._fence = context.fence
        self._log = context.logger
        self._key = context.record_key or ("id",)
        self._shared = same_database(self._url, context.state_url)
        self.location = _url.display(self._url)
        self._where = f"output database {self.location}"
        user = self.location.split("://", 1)[1].split("@", 1)[0] if "@" in self.location \
            else "(default)"
        self._table = Table(str(settings["table"]), self._where, user)
        self._position = {"table": self._table.name, "database": self.location}
        self._ids: list[str] = []
        self._docs: list[bytes] = []
        self._handed: deque[tuple[list[str], list[bytes]]] = deque()  # for ``sync``
        self._conn: Any = None

    # -- the connection ------------------------------------------------------------------

    def _connection(self) -> Any:
        """The output's own connection (reconnects through a restart), made on first use."""
        if self._conn is None:
            from ..state._pgconn import Connection

            conn = Connection(self._url, reconnect_seconds=30.0, what="output database",
                              setting="output.secrets.url")
            conn.connect()
            self._conn = conn
        return self._conn

    def open(self, committed: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
        """Create the table or check the one there (columns, unique key, privileges)."""
        conn = self._connection()
        created = conn.run(self._table.prepare, "preparing table " + self._table.name)
        if created:
            self._log.info("created table %s in %s", self._table.name, self.location)
        if self._shared:  # the rows go through the state's connection from now on
            conn.close()
            self._conn = None
        return dict(self._position)

    def check(self) -> str:
        """For ``plugin-host check``: reach the database, check the table's shape and this
        user's privileges (nothing created); say what was found."""
        conn = self._connection()
        try:
            missing = conn.run(self._table.missing, "checking table " + self._table.name)
            exists = conn.run(lambda c: c.execute("SELECT to_regclass(%s) IS NOT NULL",
                                                  (self._table.name,)).fetchone()[0],
                              "checking table " + self._table.name)
        finally:
            self.close()
        if missing:
            raise LocalStorageError(f"{self._where}: user {self._table.user} lacks "
                                    f"{', '.join(missing)}; grant it")
        made = "ready" if exists else "reachable (it is created on first run)"
        how = "in the state's database, exactly once" if self._shared else "at least once"
        return f"output table {self._table.name} in {self.location} {made}, {how}"

    # -- writing ---------------------------------------------------------------------------

    def write(self, records: Sequence[Mapping[str, Any]]) -> None:
        """Buffer the records, each serialized once, with its id."""
        try:  # the common case in one C-level pass
            docs = list(map(orjson.dumps, records))
        except TypeError:
            docs = [_dump(r) for r in records]
        key, id_of = self._key, self._id_of
        if len(key) == 1:
            name = key[0]
            values = [r.get(name) for r in records]
            ids = [str(v) if type(v) is int else id_of(v, d)
                   for v, d in zip(values, docs, strict=True)]
        else:
            ids = [self._ids_of([r.get(k) for k in key], d)
                   for r, d in zip(records, docs, strict=True)]
        self._docs += docs
        self._ids += ids

    @staticmethod
    def _id_of(value: Any, doc: bytes) -> str:
        if type(value) is int:
            return str(value)
        if isinstance(value, str) and value:
            return value
        if value is None or isinstance(value, (bool, dict, list)):
            return "h:" + hashlib.sha256(doc).hexdigest()
        return str(value)

    @staticmethod
    def _ids_of(values: list[Any], doc: bytes) -> str:
        if any(v is None for v in values):
            return "h:" + hashlib.sha256(doc).hexdigest()
        return orjson.dumps(values).decode("utf-8")

    def _copy_data(self, ids: list[str], docs: list[bytes]) -> bytes:
        """The rows in COPY's text format, ``record, pipeline, id`` (JSON from orjson holds
        no tab or newline: only its backslashes are doubled), built in C-level passes."""
        escaped = list(map(bytes.replace, docs, repeat(b"\\"), repeat(b"\\\\")))
        joined = "\n".join(ids)
        if joined.count("\n") == len(ids) - 1 and not any(c in joined for c in "\\\t\r"):
            fields = joined.encode("utf-8", "surrogatepass").split(b"\n")
        else:  # an id with a backslash, a tab or a line break: escaped one by one
            fields = [_text_field(i) for i in ids]
        head = b"\t" + _text_field(self._pipeline) + b"\t"
        return b"".join(chain.from_iterable(zip(escaped, repeat(head), fields, repeat(b"\n"))))

    def _send(self, conn: Any, ids: list[str], docs: list[bytes]) -> int:
        """Send the rows through ``conn`` (in a transaction); rows already in the table are
        skipped. The number of rows sent."""
        if not ids:
            return 0
        errors = _driver().errors
        try:
            # a savepoint, undone alone
            with conn.transaction(), conn.cursor() as cursor, cursor.copy(
                    self._table.copy_statement()) as copy:
                copy.write(self._copy_data(ids, docs))
        except errors.UniqueViolation:
            self._log.info("%s: some of %d rows are in table %s already (delivered before); "
                           "they are skipped", self._pipeline, len(ids), self._table.name)
            statement = self._table.insert_statement()
            rows = [(self._pipeline, i, d.decode("utf-8", "surrogatepass"))
                    for i, d in zip(ids, docs, strict=True)]
            with conn.cursor() as cursor:
                for start in range(0, len(rows), _INSERT_BATCH):
                    cursor.executemany(statement, rows[start:start + _INSERT_BATCH])
        except errors.InsufficientPrivilege:
            raise LocalStorageError(
                f"{self._where}: user {self._table.user} may no longer insert into table "
                f"{self._table.name}: GRANT INSERT ON {self._table.name} TO "
                f"{self._table.user}; the state stays at its last commit") from None
        return len(ids)

    def _take(self) -> tuple[list[str], list[bytes]]:
        """The buffered rows, handed over; the buffer starts empty."""
        taken = (self._ids, self._docs)
        self._ids, self._docs = [], []
        return taken

    # -- committing ------------------------------------------------------------------------

    def joins_state(self) -> bool:
        """True when the rows go to the state's database, in its commit transaction."""
        return self._shared

    def write_in(self, connection: Any) -> Mapping[str, Any] | None:
        """Write, in the state's commit transaction, the group of rows the oldest
        ``written`` not yet committed handed over (none handed over: every row buffered);
        the position. Called on the commit thread, beside ``write``."""
        self._send(connection, *(self._handed.popleft() if self._handed else self._take()))
        return dict(self._position)

    def durable(self) -> Mapping[str, Any] | None:
        """Commit the buffered rows in the output database (after checking the run's
        fence); the position."""
        position = self.written()
        self.sync()
        return position

    def written(self) -> Mapping[str, Any] | None:
        """Hand the rows buffered since the last call over, as one group, to ``sync`` or
        (in the state's database) to the ``write_in`` of the commit it goes with, both on
        the commit thread; the position."""
        self._handed.append(self._take())
        return dict(self._position)

    def sync(self) -> None:
        """Commit every row handed over so far in the output database, after checking the
        run's fence; safe beside ``write`` on another thread. (Rows handed over after the
        commit in flight may go with it: ahead of their checkpoint, which is allowed here.)"""
        batches = []
        while self._handed:
            batches.append(self._handed.popleft())
        if not any(batch[0] for batch in batches):
            return
        ids = [i for batch in batches for i in batch[0]]
        docs = [d for batch in batches for d in batch[1]]
        self._fence()

        def commit(c: Any) -> int:
            with c.transaction():
                return self._send(c, ids, docs)

        self._connection().run(commit, "writing rows to table " + self._table.name)

    def close(self) -> None:
        """Close the output's connection; rows not committed are sent again next run."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None


def _driver() -> Any:
    from ..state._pgconn import driver

    return driver()
