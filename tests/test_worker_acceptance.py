"""The worker under faults, end to end: 3 `plugin-host worker` processes, 6 emulated Postman
teams (one API key each, 300 requests a minute scaled down to 10 a second), 30 pipelines (5
per key) with backfills of 3,000 events and new events appended throughout; for about a
minute, kill -9 a random worker every few seconds and start a fresh one, SIGSTOP one past
its leases and SIGCONT it, restart PostgreSQL once (once it is awake). Then, within two
periods (and a lease), every pipeline's table equals its team's events by id: none lost, none
twice, no 429 at any team, no lease left held, every pipeline synced within the last two
periods.

The pipelines write to the `postgres` output in the state's database: a sync's rows and its
checkpoint commit in one transaction (exactly once). The table's unique (pipeline, id) would
hide a row written twice, so a trigger records, in the inserting transaction, each row sent
while the table held it already: a committed transaction that sent a row again (a fenced
sync whose rows were kept, rows ahead of their checkpoint) leaves a trace; a fenced one,
rolled back, leaves none.

Each pipeline's client limit is the key's limit shared by the pipelines on it (10 a second /
5 pipelines = 2 a second), as docs/DEPLOYMENT.md says to set it: the key's lease passes
from one pipeline's sync to the next within a window, and each sync has a limiter of its
own.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

import pytest
import yaml
from pg import Database
from postman_audit.emulator import EmulatorConfig, PostmanEmulator
from reliability.support import SEED, Child, count
from test_output_postgres import check_table
from test_worker import start_worker, sync_lines, worker_env, worker_pipeline

pytestmark = [pytest.mark.reliability, pytest.mark.slow]

TEAMS, PER_KEY, WORKERS = 6, 5, 3
EVERY, LEASE = 8.0, 3.0
FAULT_SECONDS = 70.0
KILL_EVERY = 4.0
MIN_KILLS = 10  # the faults go on past FAULT_SECONDS (up to a minute) until this many kills
TABLE = "audit_events"

#: The output's table as the output creates it, and a trace of each row sent while the table
#: held it (kept only when the sending transaction commits).
TABLES = f"""
CREATE TABLE {TABLE} (pipeline text NOT NULL, id text NOT NULL, record jsonb NOT NULL,
                      written_at timestamptz NOT NULL DEFAULT now(), PRIMARY KEY (pipeline, id));
CREATE TABLE test_sent_again (pipeline text NOT NULL, id text NOT NULL);
CREATE FUNCTION test_sent_again() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN
  IF EXISTS (SELECT 1 FROM {TABLE} WHERE pipeline = NEW.pipeline AND id = NEW.id) THEN
    INSERT INTO test_sent_again VALUES (NEW.pipeline, NEW.id);
  END IF;
  RETURN NEW;
END $$;
CREATE TRIGGER test_sent_again BEFORE INSERT ON {TABLE}
FOR EACH ROW EXECUTE FUNCTION test_sent_again();
"""


def into_table(path: Path) -> Path:
    """The pipeline file, its output switched to the table in the state's database."""
    doc = yaml.safe_load(path.read_text())
    doc["output"] = {"type": "postgres", "settings": {"table": TABLE}}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def table_rows(db: Database) -> dict[str, int]:
    """Each pipeline's rows in the table (empty while the database is away)."""
    try:
        with db.connect(connect_timeout=2) as conn:
            return {str(r[0]): int(r[1]) for r in conn.execute(
                f"SELECT pipeline, count(*) FROM {TABLE} GROUP BY pipeline")}
    except Exception:
        return {}


def held_by(db: Database, pid: int) -> int:
    """How many pipeline leases the worker ``pid`` holds now (each one is taken over); 0
    while the database is away."""
    try:
        with db.connect(connect_timeout=2) as conn:
            return int(conn.execute(
                "SELECT count(*) FROM plugin_host_state WHERE holder LIKE %s AND "
                "lease_until > now()", (f"pid {pid} on %",)).fetchone()[0])
    except Exception:
        return 0


def max_lag(db: Database) -> float | None:
    """The longest time since a pipeline's last successful sync, among those that had one
    (None before any has, or while the database is away)."""
    try:
        with db.connect(connect_timeout=2) as conn:
            row = conn.execute("SELECT extract(epoch FROM now() - min(last_success_at))"
                               "::float8 FROM plugin_host_syncs").fetchone()
    except Exception:
        return None
    return float(row[0]) if row and row[0] is not None else None


def test_three_workers_under_kills_a_pause_and_a_database_restart_deliver_exactly_once(
    tmp_path: Path, pg_db: Database
) -> None:
    rng = random.Random(SEED)
    keys = [f"PMAK-team-{t}-{rng.randrange(1 << 30):x}" for t in range(TEAMS)]
    emulators = [PostmanEmulator(EmulatorConfig(events=3000, days=30, rate_limit=10,
                                                rate_window=1.0, api_key=key)).start()
                 for key in keys]
    workers: list[Child] = []
    try:
        files = [into_table(worker_pipeline(
            tmp_path, emulators[t].url, f"t{t}p{p}", every=EVERY, key_env=f"TEAM_KEY_{t}",
            page_size=300, rate_limit={"requests": 2, "per_seconds": 1}))
                 for t in range(TEAMS) for p in range(PER_KEY)]
        with pg_db.connect() as conn:
            conn.execute(TABLES)
        environ = worker_env(pg_db, **{f"TEAM_KEY_{t}": key for t, key in enumerate(keys)})
        assert Child("worker", "--check", *files, cwd=tmp_path, environ=environ
                     ).wait().code == 0

        def fresh() -> Child:
            return start_worker(files, tmp_path, environ, "--concurrency", "6")

        workers = [fresh() for _ in range(WORKERS)]
        results = []
        kills = takeovers = appended = 0
        lags: list[float] = []
        paused: Child | None = None
        paused_at = restarted_at = 0.0
        started = time.monotonic()
        next_kill = started + KILL_EVERY
        while ((now := time.monotonic()) - started < FAULT_SECONDS
               or (kills < MIN_KILLS and now - started < FAULT_SECONDS + 60)):
            team = rng.randrange(TEAMS)
            emulators[team].add_events(rng.randint(1, 5))
            appended += 1
            if paused is None and not paused_at and now - started > 15:
                holding = max(workers, key=lambda w: held_by(pg_db, w.pid))
                # frozen in the middle of syncs (or, past 25 s, whichever holds the most)
                if held_by(pg_db, holding.pid) or now - started > 25:
                    paused = holding
                    paused.signal(signal.SIGSTOP)
                    paused_at = now
            elif paused is not None and now - paused_at > 3 * LEASE:
                paused.signal(signal.SIGCONT)
                paused = None
            # the restart once the frozen worker is awake: a `pg_ctl restart` waits for the
            # frozen worker's sessions, which cannot be told to end while it is stopped
            if not restarted_at and paused_at and paused is None and now - started > 40:
                pg_db.server.restart()
                restarted_at = now
            if now >= next_kill:
                victim = rng.choice([w for w in workers if w is not paused])
                takeovers += held_by(pg_db, victim.pid)
                victim.signal(signal.SIGKILL)
                results.append(victim.wait())
                workers.remove(victim)
                workers.append(fresh())
                kills += 1
                next_kill = now + KILL_EVERY
            lag = max_lag(pg_db)
            if lag is not None:
                lags.append(lag)
            time.sleep(rng.uniform(0.2, 0.6))
        faults_over = time.monotonic()
        assert paused is None and paused_at and restarted_at

        truth = {t: emulators[t].events for t in range(TEAMS)}
        expected = {f"t{t}p{p}": len(truth[t]) for t in range(TEAMS) for p in range(PER_KEY)}
        deadline = faults_over + 2 * EVERY + LEASE  # two periods, and a lease to expire
        while time.monotonic() < deadline and table_rows(pg_db) != expected:
            time.sleep(0.2)
        caught_up = time.monotonic() - faults_over
        found = table_rows(pg_db)
        behind = {name: (found.get(name, 0), n) for name, n in expected.items()
                  if found.get(name, 0) != n}
        for w in workers:
            w.signal(signal.SIGTERM)
        ends = [w.wait(timeout=60) for w in workers]
        results += ends
        syncs = [s for r in results for s in sync_lines(r.err)]
        fenced = sum(s["outcome"] == "fenced" for s in syncs)
        with pg_db.connect() as conn:
            sent_again = int(conn.execute("SELECT count(*) FROM test_sent_again").fetchone()[0])
        figures = {"kills": kills, "takeovers (leases of killed workers)": takeovers,
                   "fenced commits": fenced, "syncs": len(syncs),
                   "busy syncs": sum(s["outcome"] == "busy" for s in syncs),
                   "appends": appended, "max lag (s)": round(max(lags or [0.0]), 1),
                   "caught up after faults (s)": round(caught_up, 1),
                   "rows sent again in a commit": sent_again,
                   "429s": sum(e.status_counts[429] for e in emulators)}
        print("\nworker acceptance figures:", figures)
        for name, value in figures.items():
            count(f"worker: {name}", int(value))
        assert not behind, f"behind after two periods: {behind}"
        assert [e.code for e in ends] == [0] * WORKERS, [e.err[-2000:] for e in ends]
        assert figures["429s"] == 0
        assert kills >= MIN_KILLS and takeovers > 0 and fenced > 0  # the frozen one was fenced
        assert sent_again == 0, f"{sent_again} rows were committed twice (seed {SEED})"
        for t in range(TEAMS):
            for p in range(PER_KEY):
                check_table(pg_db, truth[t], table=TABLE, pipeline=f"t{t}p{p}")
        with pg_db.connect() as conn:  # none stuck: every lease given back, every pipeline
            assert conn.execute(  # synced within the last two periods and a lease
                "SELECT name, holder, lease_until - now() FROM plugin_host_state "
                "WHERE lease_until > now()").fetchall() == []
            stale = conn.execute(
                "SELECT count(*) FROM plugin_host_syncs WHERE last_success_at IS NULL OR "
                "last_success_at < now() - make_interval(secs => %s)",
                (2 * EVERY + LEASE,)).fetchone()[0]
        assert stale == 0
    finally:
        for w in workers:
            if w.running():
                w.signal(signal.SIGCONT)
                w.signal(signal.SIGKILL)
                w.wait()
        for emu in emulators:
            emu.stop()
