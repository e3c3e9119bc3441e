"""The ``postgres`` output's table: its statements, created when missing, and a table that
exists checked before anything is written (its columns, its unique ``(pipeline, id)``,
this user's privileges).

A table has at least ``pipeline text``, ``id text`` and ``record jsonb`` (each NOT NULL)
and a unique index on ``(pipeline, id)``; other columns are allowed when a row can be
inserted without them (nullable, or with a default). The one plugin-host creates also has
``written_at timestamptz DEFAULT now()``.
"""

from __future__ import annotations

from typing import Any

from .._exceptions import ConfigError, LocalStorageError

__all__ = ["COLUMNS", "Table"]

#: The columns every row is written with, and their types.
COLUMNS = {"pipeline": "text", "id": "text", "record": "jsonb"}

#: Taken around CREATE TABLE, so that two runs creating one table wait for each other.
_CREATE_LOCK = 0x706C7567696E6F75  # "pluginou"

_COLUMNS_OF = """
SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       a.atthasdef OR a.attidentity <> '' OR a.attgenerated <> ''
FROM pg_attribute a
WHERE a.attrelid = %(table)s::regclass AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""

_UNIQUE_ON_PIPELINE_ID = """
SELECT EXISTS (
  SELECT 1 FROM pg_index i
  WHERE i.indrelid = %(table)s::regclass AND i.indisunique AND i.indpred IS NULL
    AND i.indnkeyatts = 2
    AND (SELECT array_agg(a.attname::text ORDER BY a.attname)
         FROM pg_attribute a
         WHERE a.attrelid = i.indrelid AND a.attnum = ANY (i.indkey)) = ARRAY['id', 'pipeline'])
"""


class Table:
    """A table named ``name`` (``table`` or ``schema.table``, lower-case) in a database."""

    def __init__(self, name: str, where: str, user: str) -> None:
        self.name = name
        self.where = where  # "output database postgresql://user@host:port/db"
        self.user = user
        schema, _, table = name.rpartition(".")
        self.schema = schema or None
        self.table = table

    def ident(self) -> Any:
        """The table's name, quoted as an identifier for psycopg's ``sql`` module."""
        from psycopg import sql

        return sql.Identifier(*(p for p in (self.schema, self.table) if p))

    def copy_statement(self) -> Any:
        """COPY into the table (text format): record, pipeline, id."""
        from psycopg import sql

        return sql.SQL("COPY {} (record, pipeline, id) FROM STDIN").format(self.ident())

    def insert_statement(self) -> Any:
        """One row, skipped when the table has its ``(pipeline, id)`` already."""
        from psycopg import sql

        return sql.SQL("INSERT INTO {} (pipeline, id, record) VALUES (%s, %s, %s::jsonb) "
                       "ON CONFLICT (pipeline, id) DO NOTHING").format(self.ident())

    # -- set-up -----------------------------------------------------------------------------

    def prepare(self, conn: Any) -> bool:
        """Create the table when missing (True), else check it; raise what it lacks, before
        anything is written."""
        with conn.transaction():
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_LOCK,))
            exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (self.name,)
                                  ).fetchone()[0]
            if not exists:
                self._check_create(conn)
                self._create(conn)
        if exists:
            self._check_shape(conn)
        self._check_insert(conn)
        return not exists

    def _schema_name(self, conn: Any) -> str:
        if self.schema:
            return self.schema
        return str(conn.execute("SELECT current_schema()").fetchone()[0] or "public")

    def _check_create(self, conn: Any) -> None:
        schema = self._schema_name(conn)
        found = conn.execute("SELECT to_regnamespace(%s) IS NOT NULL", (schema,)).fetchone()[0]
        if not found:
            raise ConfigError(f"{self.where}: output.settings.table {self.name}: schema "
                              f"{schema} does not exist; create it, or name another table")
        if not conn.execute("SELECT has_schema_privilege(%s, 'CREATE')", (schema,)
                            ).fetchone()[0]:
            raise LocalStorageError(
                f"{self.where}: user {self.user} may not create table {self.name} (no CREATE "
                f"on schema {schema}): GRANT CREATE ON SCHEMA {schema} TO {self.user}, or "
                "create the table once as its owner; nothing was written")

    def _create(self, conn: Any) -> None:
        from psycopg import sql

        conn.execute(sql.SQL(
            "CREATE TABLE {} (pipeline text NOT NULL, id text NOT NULL, record jsonb NOT NULL, "
            "written_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, id))"
        ).format(self.ident()))

    def _check_shape(self, conn: Any) -> None:
        """The table's columns and unique index fit; ConfigError (exit 2) naming the misfit."""
        rows = conn.execute(_COLUMNS_OF, {"table": self.name}).fetchall()
        have = {str(r[0]): str(r[1]) for r in rows}
        wrong = [f"{c} {t}" for c, t in COLUMNS.items() if have.get(c) != t]
        blocking = [str(r[0]) for r in rows if r[0] not in COLUMNS and r[2] and not r[3]]
        unique = conn.execute(_UNIQUE_ON_PIPELINE_ID, {"table": self.name}).fetchone()[0]
        if not wrong and not blocking and unique:
            return
        has = ", ".join(f"{c} {t}" for c, t in have.items()) or "no columns"
        if wrong:
            what = f"needs {', '.join(wrong)}"
        elif blocking:
            what = f"has NOT NULL column(s) without a default: {', '.join(blocking)}"
        else:
            what = "has no unique index on (pipeline, id)"
        raise ConfigError(
            f"{self.where}: table {self.name} exists with other columns ({has}): it {what}; "
            "the postgres output writes pipeline text, id text, record jsonb, unique on "
            "(pipeline, id). Name another table (it is created), or fit this one; nothing "
            "was written")

    def _check_insert(self, conn: Any) -> None:
        if not conn.execute("SELECT has_table_privilege(%s, 'INSERT')", (self.name,)
                            ).fetchone()[0]:
            raise LocalStorageError(
                f"{self.where}: user {self.user} may not insert into table {self.name}: "
                f"GRANT INSERT ON {self.name} TO {self.user}; nothing was written")

    def missing(self, conn: Any) -> list[str]:
        """For ``check``: what this user lacks on the table, or to create it (empty: none);
        a table of another shape raises ConfigError."""
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (self.name,)).fetchone()[0]
        if not exists:
            try:
                self._check_create(conn)
            except LocalStorageError:
                return [f"CREATE on schema {self._schema_name(conn)} (to create table "
                        f"{self.name})"]
            return []
        self._check_shape(conn)
        try:
            self._check_insert(conn)
        except LocalStorageError:
            return [f"INSERT on table {self.name}"]
        return []
