"""The PostgreSQL state store's tables and statements, in one place.

Every lease statement is one conditional statement on the database's clock (``now()``):
taking a lease bumps its epoch (the fencing token); a commit, a renewal and a release name
that epoch and change nothing once another run bumped it.
"""

from __future__ import annotations

import hashlib

__all__ = ["PRIVILEGES", "SCHEMA_VERSION", "TABLES", "advisory_key"]

SCHEMA_VERSION = 2

TABLES = ("plugin_host_meta", "plugin_host_state", "plugin_host_key_leases", "plugin_host_syncs")

#: What a run needs on each table (the first run also needs CREATE on the schema).
PRIVILEGES = {
    "plugin_host_meta": ("SELECT",),
    "plugin_host_state": ("SELECT", "INSERT", "UPDATE"),
    "plugin_host_key_leases": ("SELECT", "INSERT", "UPDATE"),
    "plugin_host_syncs": ("SELECT", "INSERT", "UPDATE"),
}

CREATE: tuple[str, ...] = (
    """CREATE TABLE IF NOT EXISTS plugin_host_meta (
        key text PRIMARY KEY,
        value text NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS plugin_host_state (
        name text PRIMARY KEY,
        input_type text,
        checkpoint text,
        output text,
        commits bigint NOT NULL DEFAULT 0,
        epoch bigint NOT NULL DEFAULT 0,
        holder text,
        lease_until timestamptz,
        created_at timestamptz NOT NULL DEFAULT now(),
        updated_at timestamptz NOT NULL DEFAULT now())""",
    """CREATE TABLE IF NOT EXISTS plugin_host_key_leases (
        name text PRIMARY KEY,
        pipeline text,
        epoch bigint NOT NULL DEFAULT 0,
        holder text,
        lease_until timestamptz)""",
)

#: Schema version 2: what `plugin-host worker` records of each pipeline's syncs (its cadence,
#: when it was last dispatched, the last sync's outcome) for `plugin-host status`.
SYNCS = """CREATE TABLE IF NOT EXISTS plugin_host_syncs (
        name text PRIMARY KEY,
        every_seconds float8 NOT NULL,
        dispatched_at timestamptz,
        started_at timestamptz,
        finished_at timestamptz,
        last_success_at timestamptz,
        outcome text,
        error text,
        records bigint NOT NULL DEFAULT 0,
        requests bigint NOT NULL DEFAULT 0,
        seconds float8 NOT NULL DEFAULT 0,
        runner text)"""

CREATE = (*CREATE, SYNCS)

#: What brings a database of an older schema version to each newer one, in order.
MIGRATIONS: dict[int, tuple[str, ...]] = {2: (SYNCS,)}

#: Taken (for the transaction) around the check and creation of the tables, so that two
#: first runs at once do not both create them.
MIGRATION_LOCK = 0x706C7567696E68  # "pluginh"

VERSION = "SELECT value FROM plugin_host_meta WHERE key = 'schema_version'"
EXISTS = "SELECT to_regclass('plugin_host_meta') IS NOT NULL"

_TTL = "now() + make_interval(secs => %(ttl)s)"

# -- pipeline leases: the state row itself ---------------------------------------------------

ACQUIRE = f"""
INSERT INTO plugin_host_state AS s (name, epoch, holder, lease_until)
VALUES (%(name)s, 1, %(me)s, {_TTL})
ON CONFLICT (name) DO UPDATE
   SET epoch = s.epoch + 1, holder = excluded.holder, lease_until = excluded.lease_until
 WHERE s.holder IS NULL OR s.lease_until < now() OR s.holder = %(me)s OR %(gone)s
RETURNING s.epoch"""

HOLDER = """
SELECT holder, epoch, to_char(lease_until AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"'),
       GREATEST(0, extract(epoch FROM lease_until - now()))::float8
  FROM {table} WHERE name = %(name)s"""

RENEW = f"UPDATE {{table}} SET lease_until = {_TTL} WHERE name = %(name)s AND epoch = %(epoch)s"

RELEASE = """UPDATE {table} SET holder = NULL, lease_until = NULL
 WHERE name = %(name)s AND epoch = %(epoch)s"""

COMMIT = f"""
UPDATE plugin_host_state
   SET input_type = %(input_type)s, checkpoint = %(checkpoint)s, output = %(output)s,
       commits = commits + 1, updated_at = now(), lease_until = {_TTL}
 WHERE name = %(name)s AND epoch = %(epoch)s"""

RESET = """
UPDATE plugin_host_state
   SET input_type = NULL, checkpoint = NULL, output = NULL, commits = 0,
       created_at = now(), updated_at = now()
 WHERE name = %(name)s AND epoch = %(epoch)s"""

LOAD = """
SELECT input_type, checkpoint, output, commits, created_at, updated_at
  FROM plugin_host_state WHERE name = %(name)s AND input_type IS NOT NULL"""

NAMES = "SELECT name FROM plugin_host_state WHERE input_type IS NOT NULL ORDER BY name"

# -- rate-limit key leases: one row per key (named by a hash, never the key) ------------------

ACQUIRE_KEY = f"""
INSERT INTO plugin_host_key_leases AS k (name, pipeline, epoch, holder, lease_until)
VALUES (%(name)s, %(pipeline)s, 1, %(me)s, {_TTL})
ON CONFLICT (name) DO UPDATE
   SET epoch = k.epoch + 1, pipeline = excluded.pipeline, holder = excluded.holder,
       lease_until = excluded.lease_until
 WHERE k.holder IS NULL OR k.lease_until < now() OR k.holder = %(me)s OR %(gone)s
RETURNING k.epoch"""

KEY_HOLDER = """
SELECT pipeline, holder, to_char(lease_until AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
  FROM plugin_host_key_leases WHERE name = %(name)s"""


def advisory_key(table: str, name: str) -> int:
    """A session advisory lock's key for one lease row (a signed 64-bit hash)."""
    digest = hashlib.sha256(f"plugin-host lease\0{table}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)
