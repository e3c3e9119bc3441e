"""What the protocol modes guarantee when a run ends early: a client that keeps the last
STATE it received and starts the next run from it loses nothing, and sees again only the
records printed after that STATE (at least once). ``tap-postman-audit`` and
``source-postman-audit`` in subprocesses, the emulator on loopback."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from postman_audit.emulator import PostmanEmulator
from protocol_support import (
    backfill_start,
    emulator_config,
    mode_env,
    postman_config,
    run,
    script,
    singer_problems,
    write_json,
)

pytestmark = pytest.mark.reliability

MODES = ["singer", "airbyte"]


@pytest.fixture
def emulator() -> Iterator[PostmanEmulator]:
    # every answer 20 ms late: a run of 40 pages takes long enough to be stopped midway
    with PostmanEmulator(emulator_config(events=20000, faults=("delay",), fault_rate=1.0,
                                         delay_seconds=0.02)) as emu:
        yield emu


def argv(mode: str, folder: Path, state: Any | None) -> list[str | Path]:
    """The tap's or the source's command for a read, resuming from ``state`` if given."""
    if state is not None:
        write_json(folder / "state.json", state)
    if mode == "singer":
        return [script("tap-postman-audit"), "--config", "config.json",
                *(["--state", "state.json"] if state is not None else [])]
    write_json(folder / "catalog.json", {"streams": [
        {"stream": {"name": "audit_logs"}, "sync_mode": "incremental"}]})
    return [script("source-postman-audit"), "read", "--config", "config.json", "--catalog",
            "catalog.json", *(["--state", "state.json"] if state is not None else [])]


def parse(mode: str, lines: list[str]) -> tuple[list[int], list[int], Any]:
    """The record ids before the last STATE, those after it, and that state as a client
    passes it back (None when there was none)."""
    before: list[int] = []
    after: list[int] = []
    state = None
    for line in lines:
        message = json.loads(line)
        if message["type"] == "RECORD":
            after.append(message["record"]["id"] if mode == "singer"
                         else message["record"]["data"]["id"])
        elif message["type"] == "STATE":
            state = message["value"] if mode == "singer" else [message["state"]]
            before, after = before + after, []
    return before, after, state


def blocked_writing(pid: int) -> bool:
    """Whether process ``pid`` waits inside a write into a full pipe (Linux's wchan)."""
    try:
        return "pipe_write" in Path(f"/proc/{pid}/wchan").read_text()
    except OSError:
        return False


def wait_until_blocked(child: subprocess.Popen[bytes]) -> None:
    """Return once ``child`` is blocked writing into its full stdout pipe, however slowly a
    loaded machine lets it fill the pipe; fail after 60 s."""
    deadline = time.monotonic() + 60
    while not blocked_writing(child.pid):
        assert child.poll() is None, "the run ended before its pipe filled up"
        assert time.monotonic() < deadline, "the run never filled its stdout pipe"
        time.sleep(0.01)


def stopped_run(mode: str, folder: Path, state: Any, kind: str, count: int,
                signum: int, mid_write: bool = False) -> tuple[int, list[str]]:
    """A run sent ``signum`` once it has printed ``count`` messages of ``kind`` (STATE or
    RECORD) and, with ``mid_write``, once its reader has stopped reading until the run is
    blocked writing into the full pipe: its exit code and its whole lines (a line cut by a
    kill is dropped, as a client would fail on it)."""
    child = subprocess.Popen([str(a) for a in argv(mode, folder, state)], cwd=folder,
                             env=mode_env(), stdout=subprocess.PIPE,
                             stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    assert child.stdout is not None
    lines: list[bytes] = []
    seen = 0
    for line in child.stdout:
        lines.append(line)
        if line.startswith(b'{"type":"' + kind.encode() + b'"'):
            seen += 1
            if seen == count:
                if mid_write:
                    wait_until_blocked(child)
                child.send_signal(signum)
                break
    fired = threading.Event()

    def kill() -> None:
        fired.set()
        child.kill()

    hung = threading.Timer(60, kill)  # a run that does not end fails, never hangs the suite
    hung.start()
    try:
        lines += child.stdout.read().splitlines(keepends=True)  # through the same buffer
        code = child.wait()
    finally:
        hung.cancel()
        child.stdout.close()
    assert not fired.is_set(), f"the {mode} run did not end within 60 s of signal {signum}"
    return code, [x.decode() for x in lines if x.endswith(b"\n")]


def exactly(delivered: list[int], expected: list[int]) -> None:
    twice = [i for i, n in Counter(delivered).items() if n > 1]
    assert twice == [] and sorted(delivered) == sorted(expected), (
        f"{len(delivered)} delivered, {len(expected)} expected, twice: {twice[:5]}")


@pytest.mark.parametrize("mode", MODES)
def test_killed_runs_resumed_from_their_last_state_lose_nothing_and_repeat_only_what_followed_it(
    emulator: PostmanEmulator, tmp_path: Path, mode: str
) -> None:
    start, truth = backfill_start(emulator)
    # a page and its STATE are written in one call; the reader stops before each kill until
    # the pipe is full and the tap is blocked halfway through writing a page: the kill lands
    # between that page's first records and its STATE
    postman_config(tmp_path, emulator, start, page_size=300)
    rng = random.Random(f"{mode}-kills")
    kept: list[int] = []  # the records a client keeps: those its last STATE covers
    unstated: list[int] = []  # printed after the last STATE of the run before
    repeated = 0
    state = None
    for _ in range(3):
        code, lines = stopped_run(mode, tmp_path, state, "RECORD", rng.randint(350, 1200),
                                  signal.SIGKILL, mid_write=True)
        assert code == -signal.SIGKILL
        before, after, last = parse(mode, lines)
        assert last is not None
        assert set(unstated) <= set(before + after)  # printed again by the next run
        repeated += len(unstated)
        kept += before
        unstated, state = after, last
    done = run(argv(mode, tmp_path, state), tmp_path, mode_env())
    assert done.code == 0, done.err
    rest, after, _ = parse(mode, done.lines)
    assert after == [] and set(unstated) <= set(rest)
    repeated += len(unstated)
    exactly(kept + rest, truth)  # nothing lost, nothing twice for a client keeping states
    assert repeated, "no kill landed between a page's first records and its STATE"


@pytest.mark.parametrize("mode", MODES)
def test_sigterm_ends_the_run_after_the_page_in_hand_and_its_state(
    emulator: PostmanEmulator, tmp_path: Path, mode: str
) -> None:
    start, truth = backfill_start(emulator)
    postman_config(tmp_path, emulator, start, page_size=50)
    code, lines = stopped_run(mode, tmp_path, None, "STATE", 3, signal.SIGTERM)
    assert code == 0
    before, after, state = parse(mode, lines)
    assert after == [] and 0 < len(before) < len(truth)
    if mode == "singer":
        assert singer_problems(lines)[0] == []
    else:
        statuses = [json.loads(x)["trace"]["stream_status"]["status"] for x in lines
                    if '"STREAM_STATUS"' in x]
        assert statuses[-1] == "COMPLETE"
    done = run(argv(mode, tmp_path, state), tmp_path, mode_env())
    rest, _, _ = parse(mode, done.lines)
    exactly(before + rest, truth)


@pytest.mark.parametrize("mode", MODES)
def test_a_quota_spent_mid_run_exits_4_after_the_pages_before_it_and_their_states(
    emulator: PostmanEmulator, tmp_path: Path, mode: str
) -> None:
    start, truth = backfill_start(emulator)
    postman_config(tmp_path, emulator, start, page_size=50)
    emulator.config.fault_rate = 0.0
    emulator.config.quota = emulator.quota_used + 6
    failed = run(argv(mode, tmp_path, None), tmp_path, mode_env())
    assert failed.code == 4 and "quota" in failed.err
    assert len(failed.err.strip().splitlines()) == 1
    before, after, state = parse(mode, failed.lines)
    assert after == [] and len(before) == 6 * 50
    if mode == "airbyte":
        error = json.loads(failed.lines[-1])["trace"]["error"]
        assert error["failure_type"] == "transient_error" and "quota" in error["message"]
    emulator.config.quota = None
    done = run(argv(mode, tmp_path, state), tmp_path, mode_env())
    assert done.code == 0, done.err
    rest, _, _ = parse(mode, done.lines)
    exactly(before + rest, truth)
