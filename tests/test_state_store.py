"""The state store: a real SQLite file in WAL mode, atomic commits, locks, the state commands."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import CliResult
from helpers import CRASH_DRIVER, TOKEN_ENV, clean_env, read_jsonl, write_pipeline

from plugin_host import LocalStorageError, PipelineBusy, StateStore

Cli = Callable[..., CliResult]

_HOLD_LOCK = """
import sys
from pathlib import Path
from plugin_host import StateStore
store = StateStore(Path(sys.argv[1]))
with store.lock(sys.argv[2]):
    print("locked", flush=True)
    sys.stdin.readline()
print("released", flush=True)
"""


@contextmanager
def lock_holder(state: Path, name: str) -> Iterator[subprocess.Popen[str]]:
    """Another live process holding pipeline ``name``'s lock until the block ends."""
    proc = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK, str(state), name],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "locked\n"
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate()


def one_error_line(result: CliResult, code: int) -> str:
    assert result.code == code, result.err
    assert "Traceback" not in result.err
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("plugin-host: error: ")
    return lines[0]


def test_the_state_file_is_sqlite_in_wal_mode(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "state.db"
    with StateStore(path) as store:
        store.commit("p", "fixture_counter", {"next": 3}, None)
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        db.close()


def test_commit_and_load_round_trip_across_reopening(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    checkpoint = {"next": 12, "cursor": "é✓", "nested": {"ids": [1, 2, 3]}}
    with StateStore(path) as store:
        assert store.load("p") is None
        store.commit("p", "fixture_counter", {"next": 3}, {"path": "/x", "offset": 10})
        store.commit("p", "fixture_counter", checkpoint, {"path": "/x", "offset": 99})
        store.commit("q", "fixture_echo", None, None)
    with StateStore(path) as store:
        saved = store.load("p")
        assert saved is not None
        assert saved.checkpoint == checkpoint
        assert saved.output == {"path": "/x", "offset": 99}
        assert saved.input_type == "fixture_counter"
        assert saved.commits == 2
        assert saved.as_dict()["pipeline"] == "p"
        assert saved.created_at <= saved.updated_at
        q = store.load("q")
        assert q is not None and q.checkpoint is None and q.output is None
        assert store.names() == ["p", "q"]


def test_reset_forgets_one_pipeline_only(tmp_path: Path) -> None:
    with StateStore(tmp_path / "state.db") as store:
        store.commit("p", "fixture_counter", {"next": 1}, None)
        store.commit("q", "fixture_counter", {"next": 2}, None)
        assert store.reset("p") is True
        assert store.reset("p") is False
        assert store.load("p") is None
        q = store.load("q")
        assert q is not None and q.checkpoint == {"next": 2}


def test_opening_a_missing_file_without_create_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(LocalStorageError, match="does not exist"):
        StateStore(tmp_path / "state.db", create=False)
    assert not (tmp_path / "state.db").exists()


def test_a_state_file_from_a_newer_host_is_refused(
    tmp_path: Path, cli: Cli, token: str
) -> None:
    path = write_pipeline(tmp_path / "p.yaml", state={"path": "state.db"})
    StateStore(tmp_path / "state.db").close()
    db = sqlite3.connect(tmp_path / "state.db")
    with db:
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    db.close()
    line = one_error_line(cli("run", path), 5)
    assert "written by a newer plugin-host (schema 99); upgrade plugin-host" in line


def test_state_show_and_reset_through_the_cli(
    tmp_path: Path, cli: Cli, token: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write_pipeline(tmp_path / "p.yaml", state={"path": "state.db"})
    state_file = tmp_path / "state.db"

    shown = cli("state", "show", path)
    assert shown.code == 0
    assert json.loads(shown.out) == {"pipeline": "counter", "state_file": str(state_file),
                                     "state": None}
    assert not state_file.exists()

    assert cli("run", path).code == 0
    monkeypatch.delenv(TOKEN_ENV)  # the state commands never need the secrets
    shown = cli("state", "show", path)
    assert shown.code == 0, shown.err
    state = json.loads(shown.out)["state"]
    out = tmp_path / "out.jsonl"
    assert state["pipeline"] == "counter"
    assert state["input_type"] == "fixture_counter"
    assert state["checkpoint"] == {"next": 10}
    assert state["output"] == {"path": str(out), "offset": out.stat().st_size}
    assert state["commits"] >= 2
    assert token not in shown.out

    reset = cli("state", "reset", path)
    assert (reset.code, reset.out) == (0, (
        f"counter: state cleared in {state_file}; the next run starts again from the input's "
        "start (such as its backfill start) and delivers again what was delivered before\n"))
    assert json.loads(cli("state", "show", path).out)["state"] is None
    again = cli("state", "reset", path)
    assert (again.code, again.out) == (0, f"counter: state was already empty in {state_file}\n")

    monkeypatch.setenv(TOKEN_ENV, token)
    assert cli("run", path).code == 0  # collects from the start again, appended
    assert read_jsonl(out) == [{"n": i} for i in range(10)] * 2


def test_state_reset_of_a_pipeline_without_a_state_file(tmp_path: Path, cli: Cli) -> None:
    path = write_pipeline(tmp_path / "p.yaml")
    result = cli("state", "reset", path)
    assert result.code == 0
    assert "was already empty" in result.out
    assert not (tmp_path / ".plugin-host").exists()


def _garbage(path: Path) -> None:
    path.write_bytes(b"this is not a database, it is garbage\x00\xff\x13" * 200)


def _garbled_pages(path: Path) -> None:
    with StateStore(path) as store:
        store.commit("counter", "fixture_counter", {"next": 5}, None)
    data = bytearray(path.read_bytes())
    data[100:] = b"\xa5" * (len(data) - 100)  # the header survives, the pages do not
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", [_garbage, _garbled_pages])
@pytest.mark.parametrize("command", [("run",), ("state", "show"), ("state", "reset")])
def test_a_corrupt_state_file_is_one_line_exit_5_and_left_untouched(
    tmp_path: Path, cli: Cli, token: str, damage: Callable[[Path], None],
    command: tuple[str, ...],
) -> None:
    path = write_pipeline(tmp_path / "p.yaml", state={"path": "state.db"})
    damage(tmp_path / "state.db")
    before = (tmp_path / "state.db").read_bytes()
    line = one_error_line(cli(*command, path), 5)
    assert f"state file {tmp_path / 'state.db'} is damaged or not a plugin-host state file" in line
    assert "restore it from a backup, or move it aside to start over" in line
    assert (tmp_path / "state.db").read_bytes() == before
    assert not (tmp_path / "out.jsonl").exists()


def test_a_live_lock_from_another_process_makes_the_pipeline_busy(
    tmp_path: Path, cli: Cli, token: str
) -> None:
    state = tmp_path / "state.db"
    path = write_pipeline(tmp_path / "p.yaml", state={"path": "state.db"})
    with lock_holder(state, "counter") as holder:
        with StateStore(state) as store, pytest.raises(PipelineBusy) as info, store.lock(
            "counter"
        ):
            pytest.fail("the lock was taken while another process holds it")
        assert f"pipeline counter is already running (pid {holder.pid} on " in str(info.value)
        assert "wait for it to finish" in str(info.value)
        assert "already running" in one_error_line(cli("run", path), 6)
        assert "already running" in one_error_line(cli("state", "reset", path), 6)
        assert not (tmp_path / "out.jsonl").exists()
        assert holder.stdin is not None
        holder.stdin.write("\n")
        holder.stdin.flush()
        assert holder.stdout is not None
        assert holder.stdout.readline() == "released\n"
    assert cli("run", path).code == 0
    assert len(read_jsonl(tmp_path / "out.jsonl")) == 10


def test_the_lock_of_a_dead_process_is_taken_over(tmp_path: Path, cli: Cli, token: str) -> None:
    state = tmp_path / "state.db"
    path = write_pipeline(tmp_path / "p.yaml", state={"path": "state.db"})
    with lock_holder(state, "counter") as holder:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        dead = holder.pid
    db = sqlite3.connect(state)
    try:  # the dead holder never released it
        assert db.execute("SELECT pid FROM locks WHERE name = 'counter'").fetchall() == [(dead,)]
    finally:
        db.close()
    result = cli("run", path)
    assert result.code == 0, result.err
    assert read_jsonl(tmp_path / "out.jsonl") == [{"n": i} for i in range(10)]
    with StateStore(state) as store, store.lock("counter"):
        pass


def test_two_pipelines_share_one_state_file_side_by_side(
    tmp_path: Path, cli: Cli, token: str
) -> None:
    def pipeline(name: str, total: int) -> Path:
        return write_pipeline(
            tmp_path / f"{name}.yaml", name=name, settings={"total": total},
            output={"type": "jsonl", "settings": {"path": f"{name}.jsonl"}},
            state={"path": "shared.db"})

    alpha, beta = pipeline("alpha", 4), pipeline("beta", 7)
    with lock_holder(tmp_path / "shared.db", "alpha"):
        assert one_error_line(cli("run", alpha), 6)
        result = cli("run", beta)
        assert result.code == 0, result.err
    assert cli("run", alpha).code == 0
    assert read_jsonl(tmp_path / "alpha.jsonl") == [{"n": i} for i in range(4)]
    assert read_jsonl(tmp_path / "beta.jsonl") == [{"n": i} for i in range(7)]
    with StateStore(tmp_path / "shared.db") as store:
        assert store.names() == ["alpha", "beta"]
        a, b = store.load("alpha"), store.load("beta")
        assert a is not None and a.checkpoint == {"next": 4}
        assert b is not None and b.checkpoint == {"next": 7}


def test_two_pipelines_run_concurrently_in_real_processes(tmp_path: Path, token: str) -> None:
    paths = [
        write_pipeline(
            tmp_path / f"{name}.yaml", name=name,
            settings={"total": 400, "page_size": 5, "delay_ms": 1},
            output={"type": "jsonl", "settings": {"path": f"{name}.jsonl"}},
            state={"path": "shared.db"})
        for name in ("alpha", "beta")
    ]
    env = clean_env(**{TOKEN_ENV: token})
    procs = [subprocess.Popen([sys.executable, str(CRASH_DRIVER), str(p), "2", "60"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for p in paths]
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert json.loads(out.splitlines()[-1])["records"] == 400
    for name in ("alpha", "beta"):
        assert read_jsonl(tmp_path / f"{name}.jsonl") == [{"n": i} for i in range(400)]
    with StateStore(tmp_path / "shared.db") as store:
        assert store.names() == ["alpha", "beta"]


def test_state_of_another_input_type_is_refused(tmp_path: Path, cli: Cli, token: str) -> None:
    assert cli("run", write_pipeline(tmp_path / "p.yaml", name="same")).code == 0
    other = write_pipeline(tmp_path / "p.yaml", name="same", input_type="fixture_echo",
                           settings={"records": [{"a": 1}]})
    line = one_error_line(cli("run", other), 2)
    assert "belongs to input fixture_counter, not fixture_echo" in line
    assert "`plugin-host state reset same`" in line
    assert os.path.getsize(tmp_path / "out.jsonl") > 0
    assert cli("state", "reset", other).code == 0
    assert cli("run", other).code == 0
    assert read_jsonl(tmp_path / "out.jsonl")[-1] == {"a": 1}
