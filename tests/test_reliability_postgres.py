"""Shared state on PostgreSQL, through the real CLI in subprocesses, against the emulator and
a real PostgreSQL server: two runs at once, kill -9 at many instants, a run frozen past its
lease and fenced, a database restart mid-run, a wait longer than the lease, and two
pipelines sharing one API key."""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from pg import Database
from postman_audit.emulator import EmulatorConfig, PostmanEmulator
from reliability.support import (
    SEED,
    Child,
    Result,
    check_delivery,
    cli,
    count,
    env,
    line_count,
    one_error_line,
    read_lines,
    wait_until,
    write_pipeline,
)

pytestmark = pytest.mark.reliability

URL_ENV = "RELIABILITY_STATE_URL"


def pg_pipeline(folder: Path, base_url: str, *, lease_seconds: float | None = None,
                **kwargs: Any) -> Path:
    """A postman_audit pipeline (reliability.support's) whose state is the database in
    $RELIABILITY_STATE_URL."""
    path = write_pipeline(folder, base_url, **kwargs)
    doc = yaml.safe_load(path.read_text())
    doc["state"] = {"url": {"env": URL_ENV}}
    if lease_seconds is not None:
        doc["state"]["lease_seconds"] = lease_seconds
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def pg_env(db: Database, **extra: str) -> dict[str, str]:
    """A child's environment: the emulator's key and the state database's URL."""
    return env(**{URL_ENV: db.url}, **extra)


def key_held(db: Database) -> bool:
    """Whether a run holds an API key's lease now."""
    with db.connect() as conn:
        if conn.execute("SELECT to_regclass('plugin_host_key_leases')").fetchone()[0] is None:
            return False
        row = conn.execute("SELECT count(*) FROM plugin_host_key_leases WHERE holder IS NOT NULL"
                           " AND lease_until > now()").fetchone()
        return bool(row[0])


def state_row(db: Database, name: str = "postman") -> dict[str, Any]:
    """The pipeline's row, straight from the database."""
    with db.connect() as conn:
        made = conn.execute("SELECT to_regclass('plugin_host_state')").fetchone()[0]
        row = conn.execute("SELECT output, commits, epoch, holder FROM plugin_host_state "
                           "WHERE name = %s", (name,)).fetchone() if made else None
    if row is None:
        return {"offset": 0, "commits": 0, "epoch": 0, "holder": None}
    import json

    output = json.loads(row[0]) if row[0] else {}
    return {"offset": int(output.get("offset", 0)), "commits": row[1], "epoch": row[2],
            "holder": row[3]}


def until_not_busy(*args: Any, cwd: Path, environ: dict[str, str], timeout: float = 30
                   ) -> Result:
    """Run the CLI again while it exits 6 (a lease not expired yet); the first other result."""
    deadline = time.monotonic() + timeout
    while True:
        result = cli(*args, cwd=cwd, environ=environ)
        if result.code != 6 or time.monotonic() > deadline:
            return result
        count("reruns refused while a lease was live")
        time.sleep(0.2)


def test_two_runs_at_once_one_runs_the_other_exits_6_without_a_request(
    tmp_path: Path, pg_db: Database
) -> None:
    config = EmulatorConfig(events=600, days=30, fault_rate=1.0, faults=("delay",),
                            delay_seconds=0.05)
    with PostmanEmulator(config) as emu:
        # what one run alone asks for: the same events, another database
        alone = pg_pipeline(tmp_path / "alone", emu.url)
        solo_db = pg_db.server.new_database()
        assert cli("run", alone, cwd=tmp_path / "alone", environ=pg_env(solo_db)).code == 0
        solo = emu.request_count

        pipeline = pg_pipeline(tmp_path, emu.url)
        children = [Child("run", pipeline, cwd=tmp_path, environ=pg_env(pg_db))
                    for _ in range(2)]
        results = sorted((c.wait() for c in children), key=lambda r: r.code)
        assert [r.code for r in results] == [0, 6], [r.err for r in results]
        line = one_error_line(results[1], 6, "already running", "epoch 1")
        assert "wait for it to finish" in line
        assert emu.request_count - solo == solo  # the refused run sent nothing upstream
        check_delivery(read_lines(tmp_path / "out.jsonl"), emu.events, complete=True)


KILLS = 10


@pytest.fixture(scope="module")
def kill_emulator() -> Iterator[PostmanEmulator]:
    with PostmanEmulator(EmulatorConfig(events=6000, days=30)) as emulator:
        yield emulator


def _wait_for_growth(child: Child, output: Path, times: int) -> None:
    """Until the output grew ``times`` times (a write, just before a commit) or the child
    ended."""
    size = output.stat().st_size if output.exists() else 0
    deadline = time.monotonic() + 10
    while child.running() and time.monotonic() < deadline:
        now = output.stat().st_size if output.exists() else 0
        if now > size:
            times -= 1
            if times == 0:
                return
            size = now
        time.sleep(0.0002)


@pytest.mark.slow
def test_sigkill_at_many_instants_with_shared_state_loses_and_duplicates_nothing(
    tmp_path: Path, pg_db: Database, kill_emulator: PostmanEmulator
) -> None:
    emu = kill_emulator
    emu.config.fault_rate, emu.config.faults, emu.config.delay_seconds = 0.3, ("delay",), 0.02
    rng = random.Random(SEED)
    pipeline = pg_pipeline(tmp_path, emu.url, page_size=100)
    output = tmp_path / "out.jsonl"
    environ = pg_env(pg_db)
    kills = 0
    for _attempt in range(40):
        if kills >= KILLS:  # enough: let this run finish
            result = cli("run", pipeline, "--quiet", cwd=tmp_path, environ=environ)
            if result.code == 6:
                count("reruns refused while a lease was live")
                time.sleep(0.1)
                continue
            assert result.code == 0, result.err
            break
        before = emu.request_count
        child = Child("run", pipeline, "--quiet", cwd=tmp_path, environ=environ)
        aim = rng.choices(["start-up", "fetching", "commit"], weights=[2, 4, 4])[0]
        if aim == "start-up":  # taking the lease, reading the state, cutting the output
            time.sleep(rng.uniform(0, 0.4))
        elif aim == "fetching":
            wait_until(lambda c=child, b=before: emu.request_count > b or not c.running())
            time.sleep(rng.uniform(0, 0.2))
        else:  # right after an output write: in the fsync or the conditional commit
            _wait_for_growth(child, output, rng.randrange(1, 3))
        child.signal(signal.SIGKILL)
        result = child.wait()
        if result.code == 0:  # it finished first: new events, and go on killing
            emu.add_events(1000)
            continue
        if result.code == 6:  # the killed run's session not ended yet: run again
            count("reruns refused while a lease was live")
            continue
        assert result.code == -signal.SIGKILL, result.err[-2000:]
        kills += 1
        count("kills")
        count(f"kills aimed at {aim}")
        row = state_row(pg_db)  # the commit never runs ahead of the durable output
        assert row["offset"] <= (output.stat().st_size if output.exists() else 0)
    else:
        pytest.fail(f"never completed (seed {SEED})")
    assert kills >= KILLS, f"only {kills} kills landed (seed {SEED})"
    lines = read_lines(output)
    check_delivery(lines, emu.events, complete=True)
    assert state_row(pg_db)["offset"] == output.stat().st_size


@pytest.mark.slow
def test_a_run_frozen_past_its_lease_is_fenced_and_writes_nothing_after(
    tmp_path: Path, pg_db: Database
) -> None:
    config = EmulatorConfig(events=3000, days=30, fault_rate=1.0, faults=("delay",),
                            delay_seconds=0.15)
    with PostmanEmulator(config) as emu:
        pipeline = pg_pipeline(tmp_path, emu.url, lease_seconds=2)
        output = tmp_path / "out.jsonl"
        environ = pg_env(pg_db)
        frozen = Child("run", pipeline, cwd=tmp_path, environ=environ)
        wait_until(lambda: state_row(pg_db)["commits"] >= 3, timeout=30)
        sent = emu.request_count
        wait_until(lambda: emu.request_count > sent)  # it waits on a (delayed) answer
        frozen.signal(signal.SIGSTOP)
        count("runs frozen past their lease")
        try:
            emu.config.fault_rate = 0.0
            taker = until_not_busy("run", pipeline, cwd=tmp_path, environ=environ)
            assert taker.code == 0, taker.err
            check_delivery(read_lines(output), emu.events, complete=True)
            finished, stamp = output.read_bytes(), output.stat().st_mtime_ns
            row = state_row(pg_db)
            assert row["epoch"] == 2 and row["offset"] == len(finished)
        finally:
            frozen.signal(signal.SIGCONT)
        result = frozen.wait(timeout=30)
        line = one_error_line(result, 6, "another runner took pipeline postman over")
        assert "wrote nothing more" in line
        # nothing written after the fence (its bytes would be the same records at the same
        # offsets as the taker's: the file's modification time tells a write)
        assert output.read_bytes() == finished and output.stat().st_mtime_ns == stamp
        assert state_row(pg_db)["offset"] == len(finished)
        again = cli("run", pipeline, cwd=tmp_path, environ=environ)
        assert again.code == 0, again.err
        check_delivery(read_lines(output), emu.events, complete=True)


@pytest.mark.slow
def test_a_database_restart_mid_run_is_ridden_out(tmp_path: Path, pg_db: Database) -> None:
    config = EmulatorConfig(events=3000, days=30, fault_rate=1.0, faults=("delay",),
                            delay_seconds=0.05)
    with PostmanEmulator(config) as emu:
        pipeline = pg_pipeline(tmp_path, emu.url)
        environ = pg_env(pg_db)
        child = Child("run", pipeline, cwd=tmp_path, environ=environ)
        wait_until(lambda: state_row(pg_db)["commits"] >= 2, timeout=30)
        pg_db.server.restart()
        count("database restarts mid-run")
        result = child.wait(timeout=60)
        assert result.code == 0, result.err[-3000:]
        assert "connection lost" in result.err and "connected again" in result.err
        check_delivery(read_lines(tmp_path / "out.jsonl"), emu.events, complete=True)
        assert state_row(pg_db)["epoch"] == 1  # the same run to the end


@pytest.mark.slow
def test_a_database_down_past_the_reconnect_window_stops_the_run_with_exit_5(
    tmp_path: Path, pg_db: Database
) -> None:
    config = EmulatorConfig(events=3000, days=30, fault_rate=1.0, faults=("delay",),
                            delay_seconds=0.05)
    with PostmanEmulator(config) as emu:
        pipeline = pg_pipeline(tmp_path, emu.url, lease_seconds=2)  # reconnects for 5 s
        environ = pg_env(pg_db)
        output = tmp_path / "out.jsonl"
        child = Child("run", pipeline, cwd=tmp_path, environ=environ)
        wait_until(lambda: state_row(pg_db)["commits"] >= 2, timeout=30)
        pg_db.server.stop()
        try:
            result = child.wait(timeout=60)
        finally:
            pg_db.server.start()
        line = one_error_line(result, 5, "state database postgresql://")
        # the commit's reconnects run out ("unreachable"), or the heartbeat finds the
        # connection closed first: either way exit 5 and one line
        assert "unreachable" in line or "closed the connection" in line, line
        assert pg_db.password not in result.err
        assert "the state stays at its last commit" in line
        emu.config.fault_rate = 0.0
        again = until_not_busy("run", pipeline, cwd=tmp_path, environ=environ)
        assert again.code == 0, again.err
        check_delivery(read_lines(output), emu.events, complete=True)
        assert state_row(pg_db)["offset"] == output.stat().st_size


@pytest.mark.slow
def test_a_server_wait_longer_than_the_lease_keeps_it(tmp_path: Path, pg_db: Database) -> None:
    config = EmulatorConfig(events=900, days=30, rate_limit=3, rate_window=4.0)
    with PostmanEmulator(config) as emu:
        pipeline = pg_pipeline(tmp_path, emu.url, lease_seconds=1.5, retry_budget_seconds=60)
        environ = pg_env(pg_db)
        child = Child("run", pipeline, cwd=tmp_path, environ=environ)
        wait_until(lambda: emu.request_count >= 3, timeout=30)  # the window is spent
        time.sleep(2.5)  # longer than the lease, while the run waits on the server
        assert child.running()
        second = cli("run", pipeline, cwd=tmp_path, environ=environ)
        one_error_line(second, 6, "already running")
        result = child.wait(timeout=60)
        assert result.code == 0, result.err
        assert "rate-limit wait" in result.err
        row = state_row(pg_db)
        assert row["epoch"] == 1 and row["holder"] is None  # never taken over; released
        check_delivery(read_lines(tmp_path / "out.jsonl"), emu.events, complete=True)
        count("lease kept through a wait longer than it")


@pytest.mark.slow
def test_pipelines_sharing_an_api_key_run_one_at_a_time_and_stay_under_its_limit(
    tmp_path: Path, pg_db: Database
) -> None:
    limit = {"requests": 10, "per_seconds": 1}  # Postman's 300 per 60 s, scaled down
    # 6,000 events at page 100 and 10 requests a second: a run of about 6 s, so the second
    # run, started once the first holds the key, meets it however slowly this machine starts
    # a process.
    config = EmulatorConfig(events=6000, days=30, rate_limit=10, rate_window=1.0)
    with PostmanEmulator(config) as emu:
        pipelines = {name: pg_pipeline(tmp_path, emu.url, name=name, file=f"{name}.yaml",
                                       output=f"{name}.jsonl", rate_limit=limit)
                     for name in ("alpha", "beta")}
        environ = pg_env(pg_db)
        first = Child("run", pipelines["alpha"], cwd=tmp_path, environ=environ)
        wait_until(lambda: key_held(pg_db), timeout=30)
        second = Child("run", pipelines["beta"], cwd=tmp_path, environ=environ)
        results = {"beta": second.wait(timeout=60), "alpha": first.wait(timeout=60)}
        assert results["alpha"].code == 0, results["alpha"].err
        assert results["beta"].code == 6, results["beta"].err
        one_error_line(results["beta"], 6, "shares its API key with pipeline alpha")
        time.sleep(1.1)  # the next scheduled run: past the last rate window
        again = cli("run", pipelines["beta"], cwd=tmp_path, environ=environ)
        assert again.code == 0, again.err
        assert emu.status_counts[429] == 0
        for name in pipelines:
            check_delivery(read_lines(tmp_path / f"{name}.jsonl"), emu.events, complete=True)
        with pg_db.connect() as conn:
            keys = [r[0] for r in conn.execute("SELECT name FROM plugin_host_key_leases")]
        assert len(keys) == 1 and emu.config.api_key not in keys[0]


@pytest.mark.slow
def test_interval_runners_on_two_machines_take_turns_and_one_takes_over_a_killed_one(
    tmp_path: Path, pg_db: Database
) -> None:
    """Two `run --interval` processes of one pipeline (as on two machines, one output file
    they share): one syncs, the other waits its turns; kill -9 the syncing one and the
    other carries on from its last commit; every event once."""
    config = EmulatorConfig(events=1500, days=30, fault_rate=1.0, faults=("delay",),
                            delay_seconds=0.05)  # the first sync outlasts the other's start
    with PostmanEmulator(config) as emu:
        pipeline = pg_pipeline(tmp_path, emu.url)
        output = tmp_path / "out.jsonl"
        environ = pg_env(pg_db)
        runners = [Child("--log-level", "INFO", "run", pipeline, "--interval", "0.3",
                         cwd=tmp_path, environ=environ) for _ in range(2)]
        wait_until(lambda: line_count(output) == 1500, timeout=30)
        seen = {"holder": ""}

        def held() -> bool:  # a sync in progress: whose?
            seen["holder"] = state_row(pg_db)["holder"] or ""
            return bool(seen["holder"])

        wait_until(held, timeout=10)
        first = next(r for r in runners if f"pid {r.pid} " in seen["holder"])
        standby = next(r for r in runners if r is not first)
        first.signal(signal.SIGKILL)
        killed = first.wait()
        assert killed.code == -signal.SIGKILL
        emu.config.fault_rate = 0.0
        emu.add_events(200)
        wait_until(lambda: line_count(output) == 1700, timeout=30)
        standby.signal(signal.SIGTERM)
        result = standby.wait(timeout=30)
        assert result.code == 0, result.err[-3000:]
        waited = killed.err + result.err  # the one that lost the first sync waited a turn
        assert "already running" in waited and "trying again" in waited
        check_delivery(read_lines(output), emu.events, complete=True)
        assert state_row(pg_db)["offset"] == output.stat().st_size
        count("interval runners taken over")
