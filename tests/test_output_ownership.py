"""An output file belongs to one pipeline: every way two pipelines can meet on one jsonl
file (one state file or two, one after the other or at once) refuses the second with one
line naming both, cuts nothing, and leaves the first pipeline's events exactly once.

Runs go through the real CLI (``python -m plugin_host``) of a venv with the fixture
distribution installed, so discovery, the state file and the output are all real.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    CRASH_DRIVER,
    TOKEN_ENV,
    Venv,
    clean_env,
    pipeline_doc,
    read_jsonl,
    write_pipeline,
)

from plugin_host._ownership import owner_path

TOKEN = "tok-ownership-0123"
ENV = clean_env(**{TOKEN_ENV: TOKEN})


def pipeline(folder: Path, file: str, name: str, *, state: str = "state.db", total: int = 30,
             page_size: int = 5, **settings: Any) -> Path:
    """A fixture_counter pipeline into ``folder/shared.jsonl``."""
    return write_pipeline(folder / file, pipeline_doc(
        name=name, settings={"total": total, "page_size": page_size, **settings},
        output={"type": "jsonl", "settings": {"path": "shared.jsonl"}},
        state={"path": state},
    ))


def run(venv: Venv, path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``plugin-host run PIPELINE`` in the fixture venv."""
    return venv.plugin_host(*args, "run", path, cwd=path.parent, env=ENV)


def numbers(out: Path) -> list[int]:
    """The ``n`` of every record in the output, in order."""
    return [r["n"] for r in read_jsonl(out)]


def committed(state: Path, name: str) -> Mapping[str, Any]:
    """The output position pipeline ``name`` last committed, read from the state file."""
    with sqlite3.connect(state) as db:
        row = db.execute("SELECT output FROM pipelines WHERE name = ?", (name,)).fetchone()
    position: Mapping[str, Any] = json.loads(row[0])
    return position


def assert_refused(result: subprocess.CompletedProcess[str], *names: str) -> None:
    """Exit 2, one line on stderr that names each of ``names``, no traceback."""
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    for name in names:
        assert name in lines[0], lines[0]
    assert "belongs to" in lines[0]


@pytest.mark.parametrize("states", [("state.db", "state.db"), ("a.db", "b.db")],
                         ids=["one-state-file", "two-state-files"])
def test_a_second_pipeline_is_refused_one_after_the_other_and_the_first_goes_on(
    plugin_venv: Venv, tmp_path: Path, states: tuple[str, str]
) -> None:
    a = pipeline(tmp_path, "a.yaml", "team-a", state=states[0])
    b = pipeline(tmp_path, "b.yaml", "team-b", state=states[1], total=50)
    out = tmp_path / "shared.jsonl"
    assert run(plugin_venv, a).returncode == 0
    before = out.read_bytes()

    assert_refused(run(plugin_venv, b), "team-a", "team-b")
    assert out.read_bytes() == before  # nothing cut, nothing written

    pipeline(tmp_path, "a.yaml", "team-a", state=states[0], total=45)
    again = run(plugin_venv, a)
    assert again.returncode == 0, again.stderr
    assert "cutting" not in again.stderr
    assert numbers(out) == list(range(45))


def test_the_same_name_on_another_state_file_is_another_pipeline(
    plugin_venv: Venv, tmp_path: Path
) -> None:
    first = pipeline(tmp_path, "first.yaml", "audit", state="first.db")
    copy = pipeline(tmp_path, "copy.yaml", "audit", state="copy.db")
    out = tmp_path / "shared.jsonl"
    assert run(plugin_venv, first).returncode == 0
    before = out.read_bytes()
    refused = run(plugin_venv, copy)
    assert_refused(refused, "audit", str(tmp_path / "first.db"), str(tmp_path / "copy.db"))
    assert out.read_bytes() == before


def test_an_interrupted_runs_tail_is_cut_only_by_its_own_pipeline(
    plugin_venv: Venv, tmp_path: Path
) -> None:
    """The reported loss: A is killed with written but uncommitted pages; B's run must not
    cut them (it is refused first), and A's next run cuts its own tail and completes."""
    total = 3000
    a = pipeline(tmp_path, "a.yaml", "team-a", total=total, page_size=50, pad=1000,
                 delay_ms=30)
    b = pipeline(tmp_path, "b.yaml", "team-b")
    out = tmp_path / "shared.jsonl"
    # the crash driver commits only at the end here, so the 1 MiB buffer reaches the file
    # (at about page 21 of 60) long before anything past offset 0 is committed
    proc = subprocess.Popen(
        [str(plugin_venv.python), str(CRASH_DRIVER), str(a), "1000", "600"], cwd=tmp_path,
        env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while not (out.exists() and out.stat().st_size) and time.monotonic() < deadline:
            time.sleep(0.005)
        assert proc.poll() is None, "the run ended before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    tail = out.stat().st_size - committed(tmp_path / "state.db", "team-a")["offset"]
    assert tail > 0, "the kill left no uncommitted tail: the test proves nothing"
    before = out.read_bytes()

    assert_refused(run(plugin_venv, b), "team-a", "team-b")
    assert out.read_bytes() == before  # B cut nothing of A's

    resumed = run(plugin_venv, a)
    assert resumed.returncode == 0, resumed.stderr
    assert f"cutting {tail} bytes" in resumed.stderr
    assert numbers(out) == list(range(total))


def test_a_second_pipeline_started_while_the_first_runs_is_refused(
    plugin_venv: Venv, tmp_path: Path
) -> None:
    # slow enough (a minute) that team-b's whole run fits inside it on a loaded machine;
    # team-a is then stopped with SIGTERM and a later run of it completes
    a = pipeline(tmp_path, "a.yaml", "team-a", total=300, delay_ms=200)
    b = pipeline(tmp_path, "b.yaml", "team-b", state="b.db")
    out = tmp_path / "shared.jsonl"
    proc = subprocess.Popen([str(plugin_venv.python), "-m", "plugin_host", "run", str(a)],
                            cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not owner_path(out).exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        refused = run(plugin_venv, b)
        running = proc.poll() is None
        proc.send_signal(signal.SIGTERM)
    finally:
        _, err = proc.communicate(timeout=120)
    assert running, "team-a finished before team-b started: not a test of two at once"
    assert_refused(refused, "team-a", "team-b")
    assert proc.returncode == 0, err
    pipeline(tmp_path, "a.yaml", "team-a", total=300)
    rest = run(plugin_venv, a)
    assert rest.returncode == 0, rest.stderr
    assert numbers(out) == list(range(300))


def test_two_pipelines_started_together_one_wins_the_file(
    plugin_venv: Venv, tmp_path: Path
) -> None:
    paths = [pipeline(tmp_path, f"{n}.yaml", f"team-{n}", state=f"{n}.db", total=100,
                      delay_ms=5) for n in ("a", "b")]
    procs = [subprocess.Popen([str(plugin_venv.python), "-m", "plugin_host", "run", str(p)],
                              cwd=tmp_path, env=ENV, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for p in paths]
    results = [(p.wait(timeout=120), p.communicate()[1]) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser_err = next(err for code, err in results if code == 2)
    assert "team-a" in loser_err and "team-b" in loser_err
    assert numbers(tmp_path / "shared.jsonl") == list(range(100))


def test_deleting_the_record_hands_the_file_over(plugin_venv: Venv, tmp_path: Path) -> None:
    a = pipeline(tmp_path, "a.yaml", "team-a", total=10)
    b = pipeline(tmp_path, "b.yaml", "team-b", total=20)
    out = tmp_path / "shared.jsonl"
    assert run(plugin_venv, a).returncode == 0
    refused = run(plugin_venv, b)
    record = owner_path(out)
    assert str(record) in refused.stderr  # the line says which file to delete
    record.unlink()
    handed = run(plugin_venv, b)
    assert handed.returncode == 0, handed.stderr
    assert numbers(out) == list(range(10)) + list(range(20))
    assert json.loads(record.read_text())["pipeline"] == "team-b"
    assert_refused(run(plugin_venv, a), "team-a", "team-b")


def test_a_reset_pipeline_still_owns_its_file(plugin_venv: Venv, tmp_path: Path) -> None:
    a = pipeline(tmp_path, "a.yaml", "team-a", total=10)
    out = tmp_path / "shared.jsonl"
    assert run(plugin_venv, a).returncode == 0
    reset = plugin_venv.plugin_host("state", "reset", a, cwd=tmp_path, env=ENV)
    assert reset.returncode == 0, reset.stderr
    again = run(plugin_venv, a)
    assert again.returncode == 0, again.stderr
    assert numbers(out) == list(range(10)) * 2  # delivered again, as reset says


def test_moving_the_state_file_keeps_the_pipeline_the_owner(
    plugin_venv: Venv, tmp_path: Path
) -> None:
    a = pipeline(tmp_path, "a.yaml", "team-a", total=10, state="old.db")
    assert run(plugin_venv, a).returncode == 0
    (tmp_path / "old.db").rename(tmp_path / "new.db")
    a = pipeline(tmp_path, "a.yaml", "team-a", total=20, state="new.db")
    moved = run(plugin_venv, a)
    assert moved.returncode == 0, moved.stderr
    assert numbers(tmp_path / "shared.jsonl") == list(range(20))


def test_a_damaged_record_exits_5_and_changes_nothing(plugin_venv: Venv, tmp_path: Path) -> None:
    a = pipeline(tmp_path, "a.yaml", "team-a", total=10)
    out = tmp_path / "shared.jsonl"
    assert run(plugin_venv, a).returncode == 0
    owner_path(out).write_text("{not json")
    before = out.read_bytes()
    result = run(plugin_venv, a)
    assert result.returncode == 5, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "damaged" in result.stderr and str(owner_path(out)) in result.stderr
    assert out.read_bytes() == before


def test_a_tail_without_a_record_is_kept_not_cut(plugin_venv: Venv, tmp_path: Path) -> None:
    """A file from before ownership records (or whose record was deleted): whole lines past
    the commit are kept with a warning; a torn last line is refused, nothing cut."""
    a = pipeline(tmp_path, "a.yaml", "team-a", total=10)
    out = tmp_path / "shared.jsonl"
    assert run(plugin_venv, a).returncode == 0
    owner_path(out).unlink()
    with out.open("ab") as f:
        f.write(b'{"n": 99}\n{"n": 10')
    torn = out.read_bytes()
    refused = run(plugin_venv, a)
    assert refused.returncode == 5, refused.stderr
    assert "incomplete line" in refused.stderr and "nothing was cut" in refused.stderr
    assert out.read_bytes() == torn
    out.write_bytes(torn[: torn.rindex(b"\n") + 1])
    pipeline(tmp_path, "a.yaml", "team-a", total=12)
    kept = run(plugin_venv, a)
    assert kept.returncode == 0, kept.stderr
    assert "were kept" in kept.stderr
    assert numbers(out) == [*range(10), 99, 10, 11]


def test_a_device_is_no_file_to_own(plugin_venv: Venv, tmp_path: Path) -> None:
    """/dev/null (or a FIFO) takes any pipeline's records and gets no record beside it."""
    for name in ("team-a", "team-b"):
        path = write_pipeline(tmp_path / f"{name}.yaml", pipeline_doc(
            name=name, settings={"total": 5},
            output={"type": "jsonl", "settings": {"path": "/dev/null"}},
            state={"path": "state.db"},
        ))
        result = run(plugin_venv, path)
        assert result.returncode == 0, result.stderr
    assert not owner_path(Path("/dev/null")).exists()
