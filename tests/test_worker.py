"""`plugin-host worker` and `plugin-host status`, through the real CLI in subprocesses, against
the emulator and a real PostgreSQL server: --check, the refusals (exit 2), a bounded stop on
SIGTERM, the status table, and two workers never running one pipeline at once."""

from __future__ import annotations

import json
import re
import signal
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from pg import Database
from postman_audit.emulator import EmulatorConfig, PostmanEmulator
from reliability.support import (
    Child,
    check_delivery,
    cli,
    env,
    line_count,
    one_error_line,
    read_lines,
    wait_until,
    write_pipeline,
)

pytestmark = pytest.mark.reliability

URL_ENV = "WORKER_STATE_URL"
SYNC_LINE = re.compile(r"^(\S+ \S+) (?:INFO|WARNING) plugin_host\.worker: sync pipeline=(\S+) "
                       r"outcome=(\S+) records=(\d+) requests=(\d+) duration=([\d.]+)s")


def worker_pipeline(folder: Path, base_url: str, name: str, *, every: float | None = 2,
                    key_env: str = "RELIABILITY_API_KEY", **settings: Any) -> Path:
    """A postman_audit pipeline into NAME.jsonl, its state in $WORKER_STATE_URL, synced every
    ``every`` seconds by a worker."""
    path = write_pipeline(folder, base_url, name=name, file=f"{name}.yaml",
                          output=f"{name}.jsonl", secrets={"api_key": {"env": key_env}},
                          **settings)
    doc = yaml.safe_load(path.read_text())
    doc["state"] = {"url": {"env": URL_ENV}, "lease_seconds": 3}
    if every is not None:
        doc["schedule"] = {"every": every}
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def worker_env(db: Database, **extra: str) -> dict[str, str]:
    """A child's environment: the emulator's key and the state database's URL."""
    return env(**{URL_ENV: db.url}, **extra)


def start_worker(files: list[Path], cwd: Path, environ: dict[str, str], *options: Any
                 ) -> Child:
    """A `plugin-host worker` child on ``files``."""
    return Child("worker", *options, *files, cwd=cwd, environ=environ)


def sync_lines(text: str) -> list[dict[str, Any]]:
    """The worker's one line per sync, parsed: pipeline, outcome, records, requests, and the
    interval it ran in (its end from the log's time, its start from its duration)."""
    found = []
    for line in text.splitlines():
        m = SYNC_LINE.match(line)
        if m:
            end = datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()
            found.append({"pipeline": m[2], "outcome": m[3], "records": int(m[4]),
                          "requests": int(m[5]), "start": end - float(m[6]), "end": end})
    return found


def finished(db: Database) -> int:
    """How many pipelines have a sync that ended, as the workers recorded it."""
    with db.connect() as conn:
        if conn.execute("SELECT to_regclass('plugin_host_syncs')").fetchone()[0] is None:
            return 0
        return int(conn.execute("SELECT count(*) FROM plugin_host_syncs "
                                "WHERE finished_at IS NOT NULL").fetchone()[0])


def test_check_validates_every_file_and_makes_the_tables_once(
    tmp_path: Path, pg_db: Database
) -> None:
    files = [worker_pipeline(tmp_path, "http://127.0.0.1:9", name) for name in ("a", "b")]
    environ = worker_env(pg_db)
    checks = [Child("worker", "--check", *files, cwd=tmp_path, environ=environ)
              for _ in range(3)]  # three workers starting at once
    results = [c.wait() for c in checks]
    assert [r.code for r in results] == [0, 0, 0], [r.err for r in results]
    made = [r for r in results if "procrastinate's tables made" in r.out]
    assert len(made) == 1, [r.out for r in results]
    assert "2 pipelines valid, all on state database postgresql://" in made[0].out
    assert pg_db.password not in made[0].out
    with pg_db.connect() as conn:
        assert conn.execute("SELECT count(*) FROM procrastinate_jobs").fetchone()[0] == 0
        version = conn.execute("SELECT value FROM plugin_host_meta WHERE key = "
                               "'schema_version'").fetchone()[0]
    assert version == "2"
    again = cli("worker", "--check", *files, cwd=tmp_path, environ=environ)
    assert again.code == 0 and "made" not in again.out


def test_a_file_without_a_postgresql_state_is_refused_with_exit_2(
    tmp_path: Path, pg_db: Database
) -> None:
    good = worker_pipeline(tmp_path, "http://127.0.0.1:9", "good")
    local = write_pipeline(tmp_path, "http://127.0.0.1:9", name="local", file="local.yaml")
    for args in (("--check",), ()):
        result = cli("worker", *args, good, local, cwd=tmp_path, environ=worker_env(pg_db))
        one_error_line(result, 2, "local.yaml: a worker needs the state on PostgreSQL")
    other = pg_db.server.new_database()
    elsewhere = worker_pipeline(tmp_path / "x", "http://127.0.0.1:9", "elsewhere")
    doc = yaml.safe_load(elsewhere.read_text())
    doc["state"]["url"] = {"env": "OTHER_URL"}
    elsewhere.write_text(yaml.safe_dump(doc))
    result = cli("worker", "--check", good, elsewhere, cwd=tmp_path,
                 environ=worker_env(pg_db, OTHER_URL=other.url))
    line = one_error_line(result, 2, "elsewhere.yaml: its state database", "a worker's "
                          "pipelines share one")
    assert other.password not in line and pg_db.password not in line
    same = cli("worker", "--check", good, good, cwd=tmp_path, environ=worker_env(pg_db))
    one_error_line(same, 2, "pipeline name good is also the name of")
    with pg_db.connect() as conn:  # nothing was made by a refused start
        assert conn.execute("SELECT to_regclass('procrastinate_jobs')").fetchone()[0] is None


def test_sigterm_commits_the_page_in_hand_releases_the_lease_and_exits_0(
    tmp_path: Path, pg_db: Database
) -> None:
    config = EmulatorConfig(events=3000, days=30, fault_rate=1.0, faults=("delay",),
                            delay_seconds=0.15)  # a sync of many seconds
    with PostmanEmulator(config) as emu:
        pipeline = worker_pipeline(tmp_path, emu.url, "slow", every=1)
        output = tmp_path / "slow.jsonl"
        environ = worker_env(pg_db)
        worker = start_worker([pipeline], tmp_path, environ)
        wait_until(lambda: line_count(output) >= 300, timeout=30)
        worker.signal(signal.SIGTERM)
        result = worker.wait(timeout=60)
        assert result.code == 0, result.err[-3000:]
        assert "received SIGTERM: taking no new sync" in result.err
        lines = sync_lines(result.err)
        assert lines[-1]["outcome"] == "stopped" and 0 < lines[-1]["records"] < 3000
        with pg_db.connect() as conn:
            holder, state = conn.execute(
                "SELECT holder, output FROM plugin_host_state WHERE name = 'slow'").fetchone()
        assert holder is None  # given back: the next worker starts at once
        assert json.loads(state)["offset"] == output.stat().st_size  # committed what it wrote
        emu.config.fault_rate = 0.0
        again = start_worker([pipeline], tmp_path, environ)
        wait_until(lambda: line_count(output) == 3000, timeout=30)
        again.signal(signal.SIGTERM)
        assert again.wait(timeout=60).code == 0
        check_delivery(read_lines(output), emu.events, complete=True)


def test_status_lists_last_success_lag_holder_and_last_error(
    tmp_path: Path, pg_db: Database
) -> None:
    with PostmanEmulator(EmulatorConfig(events=500, days=30)) as emu:
        good = worker_pipeline(tmp_path, emu.url, "good", every=30)
        bad = worker_pipeline(tmp_path, emu.url, "bad", every=30, key_env="BAD_KEY")
        idle = worker_pipeline(tmp_path, emu.url, "idle", every=30)
        environ = worker_env(pg_db, BAD_KEY="PMAK-not-the-key-1234")
        worker = start_worker([good, bad], tmp_path, environ)
        wait_until(lambda: finished(pg_db) == 2, timeout=30)
        worker.signal(signal.SIGTERM)
        assert worker.wait(timeout=60).code == 0
        shown = cli("status", good, bad, idle, cwd=tmp_path, environ=environ)
        assert shown.code == 0, shown.err
        rows = {line.split()[0]: line for line in shown.out.splitlines()[1:]}
        assert re.match(r"good +\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ +\d+s +ok", rows["good"])
        assert re.match(r"bad +never +- +failed +.*(key|API key|401|refused)", rows["bad"],
                        re.I), rows["bad"]
        assert re.match(r"idle +never +- +-", rows["idle"])
        assert "PMAK-not-the-key-1234" not in shown.out
        data = json.loads(cli("status", "--json", good, bad, cwd=tmp_path,
                              environ=environ).out)
        assert [r["pipeline"] for r in data] == ["bad", "good"]
        assert data[1]["last_records"] == 500 and data[1]["holder"] is None
        assert data[1]["lag_seconds"] < 30 and data[1]["every_seconds"] == 30
        local = write_pipeline(tmp_path, emu.url, name="local", file="local.yaml")
        one_error_line(cli("status", local, cwd=tmp_path, environ=environ), 2,
                       "status needs the state on PostgreSQL")
        by_url = cli("status", "--state-url-env", URL_ENV, cwd=tmp_path, environ=environ)
        assert by_url.code == 0, by_url.err
        assert [line.split()[0] for line in by_url.out.splitlines()[1:]] == ["bad", "good"]
        assert [line.split()[:2] for line in by_url.out.splitlines()[1:]] == \
            [line.split()[:2] for line in shown.out.splitlines()[1:3]]  # the same successes
        assert pg_db.password not in by_url.out + by_url.err
        one_error_line(cli("status", cwd=tmp_path, environ=environ), 2,
                       "status needs pipeline files, or --state-url-env VARIABLE")
        one_error_line(cli("status", "--state-url-env", "NO_SUCH_VAR", cwd=tmp_path,
                           environ=environ), 2, "the environment variable NO_SUCH_VAR is not set")


def test_a_worker_without_procrastinate_installed_names_the_extra_and_exits_2(
    tmp_path: Path, pg_db: Database
) -> None:
    """The base install (no `worker` extra) is told what to install, before anything is
    made in the database."""
    missing = tmp_path / "site" / "procrastinate"
    missing.mkdir(parents=True)  # an install without procrastinate: importing it fails
    (missing / "__init__.py").write_text("raise ImportError(\"No module named 'procrastinate'\")\n")
    pipeline = worker_pipeline(tmp_path, "http://127.0.0.1:9", "a")
    environ = worker_env(pg_db, PYTHONPATH=str(tmp_path / "site"))
    for args in (("--check",), ()):
        result = cli("worker", *args, pipeline, cwd=tmp_path, environ=environ)
        one_error_line(result, 2, "plugin-host worker needs procrastinate",
                       "pip install 'plugin-host[worker]'")
    with pg_db.connect() as conn:
        assert conn.execute("SELECT to_regclass('plugin_host_state')").fetchone()[0] is None


@pytest.mark.slow
def test_two_workers_never_run_one_pipeline_at_once(tmp_path: Path, pg_db: Database) -> None:
    """Two workers, three pipelines whose backfills outlast their period (so syncs of one
    pipeline are dispatched while one runs): those that got past the lease never overlap in
    time, across both workers; the others ended busy without a request."""
    keys = [f"PMAK-team-{i}-key" for i in range(3)]  # a key each: no key lease between them
    emulators = [PostmanEmulator(EmulatorConfig(
        events=3000, days=30, fault_rate=1.0, faults=("delay",), delay_seconds=0.05,
        api_key=key)).start() for key in keys]
    try:
        files = [worker_pipeline(tmp_path, emu.url, f"p{i}", every=1, page_size=50,
                                 key_env=f"KEY_{i}") for i, emu in enumerate(emulators)]
        environ = worker_env(pg_db, **{f"KEY_{i}": key for i, key in enumerate(keys)})
        workers = [start_worker(files, tmp_path, environ, "--concurrency", "3")
                   for _ in range(2)]
        wait_until(lambda: all(line_count(tmp_path / f"p{i}.jsonl") == 3000
                               for i in range(3)), timeout=90)
        time.sleep(4)  # a few more periods of syncs with nothing new
        for w in workers:
            w.signal(signal.SIGTERM)
        results = [w.wait(timeout=60) for w in workers]
        assert [r.code for r in results] == [0, 0]
        syncs = [s for r in results for s in sync_lines(r.err)]
        ran = [s for s in syncs if s["outcome"] != "busy"]
        assert {s["pipeline"] for s in ran} == {"p0", "p1", "p2"}
        assert all(sum(s["pipeline"] == p for s in ran) >= 2 for p in ("p0", "p1", "p2")), ran
        for p in ("p0", "p1", "p2"):
            spans = sorted((s["start"], s["end"]) for s in ran if s["pipeline"] == p)
            for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
                assert start >= end - 0.01, f"two syncs of {p} overlapped"
        busy = [s for s in syncs if s["outcome"] == "busy"]
        assert busy, "no sync was dispatched while its pipeline's backfill ran"
        assert all(s["requests"] == 0 for s in busy)
        for i, emu in enumerate(emulators):
            check_delivery(read_lines(tmp_path / f"p{i}.jsonl"), emu.events, complete=True)
    finally:
        for emu in emulators:
            emu.stop()


def state_sessions(db: Database) -> dict[int, int]:
    """plugin-host's sessions on the server now (the state's and the heartbeats'): each
    backend's pid and the advisory locks it holds."""
    with db.connect() as conn:
        return {int(r[0]): int(r[1]) for r in conn.execute(
            "SELECT a.pid, count(l.pid) FROM pg_stat_activity a LEFT JOIN pg_locks l "
            "ON l.pid = a.pid AND l.locktype = 'advisory' AND l.granted "
            "WHERE a.application_name = 'plugin-host' AND a.datname = current_database() "
            "GROUP BY a.pid")}


def test_a_worker_thread_reuses_its_state_connections_and_holds_no_lease_between_syncs(
    tmp_path: Path, pg_db: Database
) -> None:
    """Syncs one after another on one thread go through the same backends (no connection
    made per sync); between syncs those sessions hold no advisory lock, so a pipeline's
    next runner sees no live holder."""
    with PostmanEmulator(EmulatorConfig(events=100, days=30)) as emu:
        often = worker_pipeline(tmp_path, emu.url, "often", every=1)
        environ = worker_env(pg_db)
        worker = start_worker([often], tmp_path, environ, "--concurrency", "1")
        seen: set[int] = set()

        def sampled() -> bool:
            seen.update(state_sessions(pg_db))
            return emu.request_count >= 10

        wait_until(sampled, timeout=60, step=0.02)
        worker.signal(signal.SIGTERM)
        result = worker.wait(timeout=60)
        assert result.code == 0, result.err[-3000:]
        ok = [s for s in sync_lines(result.err) if s["outcome"] == "ok"]
        assert len(ok) >= 6, ok
        assert 1 <= len(seen) <= 2, f"{len(seen)} backends for {len(ok)} syncs"

        idle = worker_pipeline(tmp_path, emu.url, "idle", every=600)
        worker = start_worker([idle], tmp_path, environ, "--concurrency", "1")
        try:
            def synced() -> bool:
                with pg_db.connect() as conn:
                    row = conn.execute("SELECT outcome FROM plugin_host_syncs WHERE name = "
                                       "'idle' AND finished_at IS NOT NULL").fetchone()
                return row is not None and row[0] == "ok"

            wait_until(synced, timeout=60)
            sessions = state_sessions(pg_db)
            assert sessions, "the worker kept no state connection"
            assert sum(sessions.values()) == 0, f"advisory locks held between syncs: {sessions}"
        finally:
            worker.signal(signal.SIGTERM)
            assert worker.wait(timeout=60).code == 0
        check_delivery(read_lines(tmp_path / "idle.jsonl"), emu.events, complete=True)
