"""The postgres output under crashes, through the real command in subprocesses, against the
emulator and a real PostgreSQL server: kill -9 at many instants, a run frozen past its lease
and fenced, a database restart mid-run; in the state's database (exactly once: rows never
run ahead of the checkpoint) and in another one (at least once, each row kept once)."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from pg import Database
from postman_audit.emulator import EmulatorConfig, PostmanEmulator
from reliability.support import SEED, Child, count, env, one_error_line, wait_until
from test_output_postgres import OUT_ENV, STATE_ENV, check_table, pg_output_pipeline
from test_reliability_postgres import state_row, until_not_busy

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

KILLS = 10


def layout(db: Database, shared: bool) -> tuple[Database, dict[str, str]]:
    """The output's database and a child's environment: the state's own, or another."""
    out_db = db if shared else db.server.new_database()
    return out_db, env(**{STATE_ENV: db.url, OUT_ENV: out_db.url})


class Watch:
    """One connection to look at the output's table and the server's sessions."""

    def __init__(self, db: Database) -> None:
        self.conn = db.connect()

    def rows(self) -> int:
        """The table's rows (0 before it exists)."""
        made = self.conn.execute("SELECT to_regclass('audit_events')").fetchone()[0]
        return int(self.conn.execute("SELECT count(*) FROM audit_events").fetchone()[0]
                   ) if made else 0

    def in_commit(self) -> bool:
        """A plugin-host session sending rows, or updating the checkpoint."""
        return bool(self.conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'plugin-host' "
            "AND state = 'active' AND (query LIKE 'COPY%%' OR query LIKE "
            "'INSERT INTO \"audit_events\"%%' OR query LIKE '%%SET input_type%%')"
        ).fetchone()[0])

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


PAUSE = """
CREATE OR REPLACE FUNCTION test_pause() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN PERFORM pg_sleep(0.03); RETURN NULL; END $$;
CREATE OR REPLACE TRIGGER test_pause AFTER UPDATE ON plugin_host_state
FOR EACH STATEMENT EXECUTE FUNCTION test_pause();
"""

RESENT_COUNTER = """
CREATE SEQUENCE IF NOT EXISTS test_resent;
CREATE OR REPLACE FUNCTION test_resent() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN
  IF EXISTS (SELECT 1 FROM audit_events WHERE pipeline = NEW.pipeline AND id = NEW.id) THEN
    PERFORM nextval('test_resent');
  END IF;
  RETURN NEW;
END $$;
CREATE OR REPLACE TRIGGER test_resent BEFORE INSERT ON audit_events
FOR EACH ROW EXECUTE FUNCTION test_resent();
"""


def instrument(state_db: Database, out_db: Database) -> None:
    """Once the tables exist: each checkpoint update pauses 30 ms inside its transaction, and
    ends uncommitted when its client is killed meanwhile (a window for a kill: inside the
    shared transaction, or between the rows' commit and the checkpoint's); each row sent
    again that the table holds already is counted, on a sequence (no rollback undoes it)."""
    with state_db.admin() as conn:  # a killed client's statement ends with it, uncommitted
        conn.execute(f'ALTER DATABASE "{state_db.name}" SET client_connection_check_interval '
                     "= 5")
    with state_db.connect() as conn:
        if conn.execute("SELECT to_regclass('plugin_host_state')").fetchone()[0]:
            conn.execute(PAUSE)
    with out_db.connect() as conn:
        if conn.execute("SELECT to_regclass('audit_events')").fetchone()[0]:
            conn.execute(RESENT_COUNTER)


def resent_rows(out_db: Database) -> int:
    """Rows sent again while the table held them (counted by ``instrument``'s trigger)."""
    with out_db.connect() as conn:
        if not conn.execute("SELECT to_regclass('test_resent')").fetchone()[0]:
            return 0
        last, called = conn.execute("SELECT last_value, is_called FROM test_resent").fetchone()
        return int(last) if called else 0


@pytest.fixture(scope="module")
def kill_emulator() -> Iterator[PostmanEmulator]:
    """One emulator of 6,000 events for the module's kill tests."""
    with PostmanEmulator(EmulatorConfig(events=6000, days=30)) as emulator:
        yield emulator


def _aim(rng: random.Random, child: Child, emu: PostmanEmulator, watch: Watch) -> str:
    """Wait for one instant of the run's life, and name it."""
    aim = rng.choices(["start-up", "fetching", "in the commit", "after the rows"],
                      weights=[1, 3, 3, 3])[0]
    before = emu.request_count
    if aim == "start-up":  # the lease, the state, the table's set-up
        time.sleep(rng.uniform(0, 0.4))
    elif aim == "fetching":
        wait_until(lambda: emu.request_count > before or not child.running())
        time.sleep(rng.uniform(0, 0.2))
    elif aim == "in the commit":  # the rows' COPY (and, shared, the checkpoint) in flight
        deadline = time.monotonic() + 5
        while child.running() and not watch.in_commit() and time.monotonic() < deadline:
            pass
    else:  # rows just committed: in another database, before the checkpoint's commit
        rows = watch.rows()
        deadline = time.monotonic() + 5
        while child.running() and time.monotonic() < deadline and watch.rows() == rows:
            pass
    return aim


@pytest.mark.parametrize("shared", [True, False], ids=["state-database", "other-database"])
def test_sigkill_at_many_instants_loses_and_duplicates_nothing(
    tmp_path: Path, pg_db: Database, kill_emulator: PostmanEmulator, shared: bool
) -> None:
    emu = kill_emulator
    emu.config.fault_rate, emu.config.faults, emu.config.delay_seconds = 0.3, ("delay",), 0.02
    rng = random.Random(SEED)
    out_db, environ = layout(pg_db, shared)
    pipeline = pg_output_pipeline(tmp_path, emu.url, url=not shared, page_size=100)
    watch = Watch(out_db)
    kills = 0
    try:
        for _attempt in range(40):
            instrument(pg_db, out_db)
            child = Child("--log-level", "INFO", "run", pipeline, "--quiet", cwd=tmp_path,
                          environ=environ)
            if kills >= KILLS:  # enough: let this run finish
                result = child.wait()
                if result.code == 6:
                    time.sleep(0.1)
                    continue
                assert result.code == 0, result.err
                break
            aim = _aim(rng, child, emu, watch)
            child.signal(signal.SIGKILL)
            result = child.wait()
            if result.code == 0:  # it finished first: new events, and go on killing
                emu.add_events(800)
                continue
            if result.code == 6:  # the killed run's session not ended yet
                count("reruns refused while a lease was live")
                continue
            assert result.code == -signal.SIGKILL, result.err[-2000:]
            kills += 1
            count("postgres output kills")
            count(f"postgres output kills aimed {aim}")
        else:
            pytest.fail(f"never completed (seed {SEED})")
    finally:
        watch.close()
    assert kills >= KILLS, f"only {kills} kills landed (seed {SEED})"
    check_table(out_db, emu.events)
    resent = resent_rows(out_db)
    count("postgres output rows sent again after a kill", resent)
    if shared:  # the rows never ran ahead of the checkpoint: none was ever sent again
        assert resent == 0, f"{resent} rows were past the checkpoint (seed {SEED})"


@pytest.mark.parametrize("shared", [True, False], ids=["state-database", "other-database"])
def test_a_run_frozen_past_its_lease_is_fenced_and_writes_nothing_after(
    tmp_path: Path, pg_db: Database, shared: bool
) -> None:
    config = EmulatorConfig(events=3000, days=30, fault_rate=1.0, faults=("delay",),
                            delay_seconds=0.15)
    with PostmanEmulator(config) as emu:
        out_db, environ = layout(pg_db, shared)
        pipeline = pg_output_pipeline(tmp_path, emu.url, url=not shared, lease_seconds=2)
        frozen = Child("run", pipeline, cwd=tmp_path, environ=environ)
        wait_until(lambda: state_row(pg_db)["commits"] >= 3, timeout=30)
        sent = emu.request_count
        wait_until(lambda: emu.request_count > sent)  # it waits on a (delayed) answer
        frozen.signal(signal.SIGSTOP)
        try:
            emu.config.fault_rate = 0.0
            taker = until_not_busy("run", pipeline, cwd=tmp_path, environ=environ)
            assert taker.code == 0, taker.err
            check_table(out_db, emu.events)
            assert state_row(pg_db)["epoch"] == 2
            with out_db.connect() as conn:  # an empty table shows any row written from now
                conn.execute("DELETE FROM audit_events")
        finally:
            frozen.signal(signal.SIGCONT)
        result = frozen.wait(timeout=30)
        line = one_error_line(result, 6, "another runner took pipeline postman over")
        assert "wrote nothing more" in line
        with out_db.connect() as conn:
            assert conn.execute("SELECT count(*) FROM audit_events").fetchone()[0] == 0
        count("postgres output runs fenced")


@pytest.mark.parametrize("shared", [True, False], ids=["state-database", "other-database"])
def test_a_database_restart_mid_run_then_a_rerun_delivers_each_row_once(
    tmp_path: Path, pg_db: Database, shared: bool
) -> None:
    config = EmulatorConfig(events=3000, days=30, fault_rate=1.0, faults=("delay",),
                            delay_seconds=0.05)
    with PostmanEmulator(config) as emu:
        out_db, environ = layout(pg_db, shared)
        pipeline = pg_output_pipeline(tmp_path, emu.url, url=not shared)
        child = Child("--log-level", "INFO", "run", pipeline, cwd=tmp_path, environ=environ)
        wait_until(lambda: state_row(pg_db)["commits"] >= 3, timeout=30)
        instrument(pg_db, out_db)
        pg_db.server.restart()
        count("database restarts under the postgres output")
        result = child.wait(timeout=90)
        logs = [result.err]
        if result.code != 0:  # it stopped: one line, exit 5, and the rerun finishes
            one_error_line(result, 5, "the state stays at its last commit")
            count("postgres output runs stopped by a restart")
        emu.config.fault_rate = 0.0
        again = until_not_busy("--log-level", "INFO", "run", pipeline, cwd=tmp_path,
                               environ=environ, timeout=60)
        assert again.code == 0, again.err
        logs.append(again.err)
        check_table(out_db, emu.events)
        assert pg_db.password not in "".join(logs) and out_db.password not in "".join(logs)
        if shared:  # the rows never ran ahead of the checkpoint
            assert resent_rows(out_db) == 0
