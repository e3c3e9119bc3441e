"""The PostgreSQL state store against a real server: tables made on first use, the schema
version, leases with an epoch as the fencing token, the heartbeat, key leases, the
transaction an output can join, and failures told in one line without the password."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
from pg import Database

from plugin_host._contract import StateStore, TransactionalOutput
from plugin_host._exceptions import Fenced, LocalStorageError, PipelineBusy
from plugin_host.state.postgres import PostgresStateStore, key_lease_name


@pytest.fixture
def store(pg_db: Database) -> Iterator[PostgresStateStore]:
    with PostgresStateStore(pg_db.url, lease_seconds=30) as opened:
        yield opened


def _freeze(lease: Any) -> None:
    """Make a held lease look like a frozen run's: no heartbeat, no advisory lock."""
    lease.stop_heartbeat()
    lease._conn.run(lambda c: c.execute("SELECT pg_advisory_unlock_all()"), "test")


def _expire(db: Database, table: str = "plugin_host_state") -> None:
    """End every lease of ``table`` now, on the database's clock (no sleeping)."""
    with db.connect() as conn:
        conn.execute(f"UPDATE {table} SET lease_until = now() - interval '1 second' "
                     "WHERE holder IS NOT NULL")


def test_first_use_creates_the_tables_and_both_backends_are_state_stores(
    pg_db: Database, store: PostgresStateStore
) -> None:
    assert isinstance(store, StateStore)
    with pg_db.connect() as conn:
        version = conn.execute("SELECT value FROM plugin_host_meta WHERE key = "
                               "'schema_version'").fetchone()[0]
    assert version == "2"
    assert store.location == f"postgresql://{pg_db.user}@127.0.0.1:{pg_db.server.port}/" \
                             f"{pg_db.name}"
    assert pg_db.password not in store.location
    again = PostgresStateStore(pg_db.url)
    assert again.id == store.id and len(store.id) == 32  # made once, kept
    again.close()


def test_commit_load_and_names(store: PostgresStateStore) -> None:
    assert store.load("p") is None and store.names() == []
    with store.lease("p"):
        store.commit("p", "in", {"cursor": 7}, {"path": "/o", "offset": 10})
        store.commit("p", "in", '{"cursor": 8}', {"path": "/o", "offset": 20})
    saved = store.load("p")
    assert saved is not None
    assert (saved.checkpoint, saved.output, saved.commits) == ({"cursor": 8},
                                                               {"path": "/o", "offset": 20}, 2)
    assert store.names() == ["p"]
    with pytest.raises(LocalStorageError, match="needs the run's lease"):
        store.commit("p", "in", {"cursor": 9}, None)


def test_a_held_lease_refuses_a_second_run_naming_the_holder(
    pg_db: Database, store: PostgresStateStore
) -> None:
    with store.lease("p") as lease, PostgresStateStore(pg_db.url) as other:
        with pytest.raises(PipelineBusy) as busy, other.lease("p"):
            pass
        assert "already running" in str(busy.value)
        assert lease.me.split(",")[0] in str(busy.value)  # pid N on HOST
        assert other.lease_info("p")["epoch"] == lease.epoch  # the refusal changed nothing
    with PostgresStateStore(pg_db.url) as other, other.lease("p") as second:
        assert second.epoch == lease.epoch + 1  # released at the end: taken at once


def test_an_expired_lease_is_taken_over_and_the_old_run_is_fenced(
    pg_db: Database, store: PostgresStateStore
) -> None:
    lost = threading.Event()
    with store.lease("p", on_lost=lost.set) as old:
        store.commit("p", "in", {"cursor": 1}, None)
        _freeze(old)
        _expire(pg_db)
        with PostgresStateStore(pg_db.url) as other, other.lease("p") as new:
            assert new.epoch == old.epoch + 1
            with pytest.raises(Fenced, match="another runner took pipeline p over"):
                store.commit("p", "in", {"cursor": 99}, None)
            assert lost.is_set() and old.lost
            with pytest.raises(Fenced):
                old.check()  # and every later fence check, without a statement
            other.commit("p", "in", {"cursor": 2}, None)
        saved = store.load("p")
        assert saved is not None and saved.checkpoint == {"cursor": 2}


def test_a_crashed_holders_lease_is_taken_over_at_once(pg_db: Database) -> None:
    """The session advisory lock: a holder whose connection is gone is known to be dead."""
    crashed = PostgresStateStore(pg_db.url, lease_seconds=60)
    held = crashed.lease("p")
    old = held.__enter__()
    old.stop_heartbeat()
    crashed._conn._conn.close()  # as a kill -9 leaves it: the session ends, no release
    time.sleep(0.05)
    with PostgresStateStore(pg_db.url) as other, other.lease("p") as new:
        assert new.epoch == old.epoch + 1
    held.__exit__(None, None, None)
    crashed.close()


def test_the_heartbeat_keeps_a_waiting_runs_lease(pg_db: Database) -> None:
    with PostgresStateStore(pg_db.url, lease_seconds=1) as store, store.lease("p") as lease:
        time.sleep(2.5)  # two and a half leases without a commit
        with pg_db.connect() as conn:
            left = conn.execute("SELECT extract(epoch FROM lease_until - now()) "
                                "FROM plugin_host_state").fetchone()[0]
        assert 0 < left <= 1  # renewed within the last lease, on the database's clock
        with PostgresStateStore(pg_db.url) as other, pytest.raises(PipelineBusy), \
                other.lease("p"):
            pass
        assert not lease.lost
        store.commit("p", "in", {"cursor": 1}, None)


def test_the_heartbeat_stops_renewing_once_fenced(pg_db: Database) -> None:
    lost = threading.Event()
    with PostgresStateStore(pg_db.url, lease_seconds=0.6) as store, \
            store.lease("p", on_lost=lost.set) as lease:
        store._conn.run(lambda c: c.execute("SELECT pg_advisory_unlock_all()"), "test")
        with pg_db.connect() as conn:  # another run takes over (as after a freeze)
            conn.execute("UPDATE plugin_host_state SET epoch = epoch + 1, holder = 'thief'")
        assert lost.wait(5), "the heartbeat did not notice"
        assert lease.lost
        with pg_db.connect() as conn:
            before = conn.execute("SELECT lease_until FROM plugin_host_state").fetchone()[0]
            time.sleep(0.5)
            after = conn.execute("SELECT lease_until FROM plugin_host_state").fetchone()[0]
        assert before == after  # nothing renews the thief's lease in its place


def test_a_lease_row_locked_by_a_long_commit_is_busy_not_a_failure(pg_db: Database) -> None:
    with PostgresStateStore(pg_db.url, lease_seconds=1) as store:
        with store.lease("p"):
            pass
        with pg_db.connect() as conn, conn.transaction():  # as another run's joined commit
            conn.execute("SELECT * FROM plugin_host_state WHERE name = 'p' FOR UPDATE")
            with pytest.raises(PipelineBusy, match="already running"), store.lease("p"):
                pass


def test_pipelines_sharing_a_rate_limit_key_run_one_at_a_time(
    pg_db: Database, store: PostgresStateStore
) -> None:
    key = key_lease_name("PMAK-shared-secret")
    assert "PMAK-shared-secret" not in key
    with store.lease("alpha", keys=[key]), PostgresStateStore(pg_db.url) as other:
        with pytest.raises(PipelineBusy, match="shares its API key with pipeline alpha"), \
                other.lease("beta", keys=[key]):
            pass
        assert other.lease_info("beta")["held"] is False  # its own lease given back
        with other.lease("gamma", keys=[key_lease_name("PMAK-another-key")]):
            pass
    with PostgresStateStore(pg_db.url) as other, other.lease("beta", keys=[key]):
        pass
    with pg_db.connect() as conn:
        stored = [r[0] for r in conn.execute("SELECT name FROM plugin_host_key_leases")]
    assert key in stored and not any("PMAK" in name for name in stored)


def test_reset_is_refused_while_a_run_holds_the_lease_and_keeps_the_epoch(
    pg_db: Database, store: PostgresStateStore
) -> None:
    with store.lease("p") as lease:
        store.commit("p", "in", {"cursor": 1}, None)
        with PostgresStateStore(pg_db.url) as other, pytest.raises(PipelineBusy):
            other.reset("p")
    assert store.reset("p") is True
    assert store.load("p") is None and store.reset("p") is False
    assert store.lease_info("p")["epoch"] == lease.epoch + 2  # the old run stays fenced


class _Rows:
    """A test double of a TransactionalOutput: its records go to a table in the state's
    database, in the store's commit transaction."""

    def __init__(self) -> None:
        self.buffer: list[int] = []
        self.written = 0

    def joins_state(self) -> bool:
        return True

    def write_in(self, connection: Any) -> Mapping[str, Any] | None:
        with connection.cursor() as cursor:
            cursor.executemany("INSERT INTO delivered VALUES (%s)", [(r,) for r in self.buffer])
        self.written += len(self.buffer)
        self.buffer = []
        return {"rows": self.written}


def test_a_joined_outputs_rows_commit_with_the_checkpoint_or_not_at_all(
    pg_db: Database, store: PostgresStateStore
) -> None:
    with pg_db.connect() as conn:
        conn.execute("CREATE TABLE delivered (id int PRIMARY KEY)")
    rows = _Rows()
    assert isinstance(rows, TransactionalOutput)
    with store.lease("p") as old:
        rows.buffer = [1, 2, 3]
        store.commit("p", "in", {"cursor": 3}, None, within=rows.write_in)
        _freeze(old)
        _expire(pg_db)
        with PostgresStateStore(pg_db.url) as other, other.lease("p"):
            rows.buffer = [4, 5, 6]
            with pytest.raises(Fenced):
                store.commit("p", "in", {"cursor": 6}, None, within=rows.write_in)
    with pg_db.connect() as conn:
        delivered = [r[0] for r in conn.execute("SELECT id FROM delivered ORDER BY id")]
    assert delivered == [1, 2, 3]  # the fenced group rolled back with its checkpoint
    saved = store.load("p")
    assert saved is not None and (saved.checkpoint, saved.output) == ({"cursor": 3},
                                                                      {"rows": 3})


def test_a_newer_schema_is_refused_and_left_alone(pg_db: Database) -> None:
    PostgresStateStore(pg_db.url).close()
    with pg_db.connect() as conn:
        conn.execute("UPDATE plugin_host_meta SET value = '7' WHERE key = 'schema_version'")
    with pytest.raises(LocalStorageError) as refused:
        PostgresStateStore(pg_db.url)
    assert "schema version 7, newer than this plugin-host knows (2)" in str(refused.value)
    assert pg_db.password not in str(refused.value)
    with pg_db.connect() as conn:
        assert conn.execute("SELECT value FROM plugin_host_meta WHERE key = "
                            "'schema_version'").fetchone()[0] == "7"


def test_a_version_1_database_is_brought_to_version_2_keeping_its_state(
        pg_db: Database) -> None:
    with PostgresStateStore(pg_db.url) as store, store.lease("p"):
        store.commit("p", "fixture_counter", {"cursor": 3}, {"rows": 3})
    with pg_db.connect() as conn:  # as a plugin-host of schema version 1 left it
        conn.execute("DROP TABLE plugin_host_syncs")
        conn.execute("UPDATE plugin_host_meta SET value = '1' WHERE key = 'schema_version'")
    with PostgresStateStore(pg_db.url, create=False) as reader:
        assert reader.load("p") is not None  # read as it is; nothing changed
    with pg_db.connect() as conn:
        assert conn.execute("SELECT to_regclass('plugin_host_syncs')").fetchone()[0] is None
    with PostgresStateStore(pg_db.url) as store:
        saved = store.load("p")
        assert saved is not None and saved.checkpoint == {"cursor": 3}
    with pg_db.connect() as conn:
        assert conn.execute("SELECT value FROM plugin_host_meta WHERE key = "
                            "'schema_version'").fetchone()[0] == "2"
        assert conn.execute("SELECT count(*) FROM plugin_host_syncs").fetchone()[0] == 0


def test_without_create_an_empty_database_is_left_empty(pg_db: Database) -> None:
    with PostgresStateStore(pg_db.url, create=False) as store:
        assert not store.exists and store.load("p") is None and store.names() == []
        assert store.reset("p") is False
        assert store.check_access() == []  # its owner may create the tables
    with pg_db.connect() as conn:
        assert conn.execute("SELECT to_regclass('plugin_host_meta')").fetchone()[0] is None


@pytest.mark.parametrize("case", ["wrong password", "unreachable", "no database", "unparsable"])
def test_a_connection_failure_is_one_line_without_the_password(
    pg_db: Database, case: str
) -> None:
    url = {
        "wrong password": pg_db.url.replace(pg_db.password, "not-" + pg_db.password),
        "unreachable": pg_db.url.replace(f":{pg_db.server.port}/", ":1/"),
        "no database": pg_db.url.replace(f"/{pg_db.name}", "/missing_db"),
        "unparsable": pg_db.url.replace(pg_db.password, pg_db.password[:5] + " "
                                        + pg_db.password[5:]),
    }[case]
    with pytest.raises(LocalStorageError) as failed:
        PostgresStateStore(url)
    text = str(failed.value)
    assert "\n" not in text and pg_db.password not in text and pg_db.password[5:] not in text
    assert text.startswith("state database postgresql://")
    expected = {"wrong password": f"refused the password of user {pg_db.user}",
                "unreachable": "unreachable (connection refused)",
                "no database": "has no database missing_db",
                "unparsable": "cannot be read by the driver"}[case]
    assert expected in text


def test_a_missing_table_privilege_is_named(pg_db: Database) -> None:
    PostgresStateStore(pg_db.url).close()
    user, password = pg_db.server.new_role("ro")
    with pg_db.connect() as conn:
        conn.execute(f'GRANT SELECT ON plugin_host_meta, plugin_host_state TO "{user}"')
    url = pg_db.url.replace(f"{pg_db.user}:{pg_db.password}", f"{user}:{password}")
    with PostgresStateStore(url, create=False) as reader:
        missing = reader.check_access()
        assert "INSERT on plugin_host_state" in missing
        assert "SELECT on plugin_host_key_leases" in missing
        with pytest.raises(LocalStorageError) as refused, reader.lease("p"):
            pass
    text = str(refused.value)
    assert f"user {user} lacks a privilege" in text and "plugin_host_state" in text
    assert password not in text
    with pg_db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM plugin_host_state").fetchone()[0] == 0


def test_a_server_restart_is_ridden_out(pg_db: Database) -> None:
    with PostgresStateStore(pg_db.url, lease_seconds=10) as store, store.lease("p"):
        store.commit("p", "in", {"cursor": 1}, None)
        pg_db.server.restart()
        store.commit("p", "in", {"cursor": 2}, None)  # reconnects, same epoch
        saved = store.load("p")
        assert saved is not None and saved.checkpoint == {"cursor": 2}
