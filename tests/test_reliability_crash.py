"""Crash safety: SIGKILL at random instants of a real backfill, SIGTERM during a sync, during
`--interval` and during a retry or rate-limit wait. Real CLI subprocesses, the emulator in
this process, real SQLite and files."""

from __future__ import annotations

import json
import random
import re
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from postman_audit.emulator import EmulatorConfig, PostmanEmulator
from reliability.support import (
    SEED,
    Child,
    check_consistent,
    check_delivery,
    cli,
    count,
    line_count,
    read_lines,
    saved_state,
    state_show,
    wait_until,
    write_pipeline,
)

pytestmark = pytest.mark.reliability

MIN_KILLS = 40
KILLS_PER_ROUND = 30  # then the round's last run is left to finish, however slow the machine
BACKFILL_EVENTS = 20_000
_ID = re.compile(rb'^\{"id":(\d+),', re.MULTILINE)


@pytest.fixture(scope="module")
def backfill_emulator() -> Iterator[PostmanEmulator]:
    """20k events over 30 days; the kill test changes only its fault switches."""
    with PostmanEmulator(EmulatorConfig(events=BACKFILL_EVENTS, days=30)) as emulator:
        yield emulator


def _check_after_kill(state_file: Path, output: Path, expected_ids: set[int]) -> int:
    """What a SIGKILL left: a committed prefix of whole, distinct lines the emulator sent,
    and maybe a tail past it. Returns the tail's length (the next run must cut it)."""
    data = output.read_bytes() if output.exists() else b""
    saved = saved_state(state_file)
    offset = int(((saved or {}).get("output") or {}).get("offset", 0))
    assert offset <= len(data), f"committed {offset} bytes, the file holds {len(data)}"
    committed = data[:offset]
    assert committed == b"" or committed.endswith(b"\n"), "the commit ends inside a line"
    ids = [int(i) for i in _ID.findall(committed)]
    assert len(ids) == committed.count(b"\n"), "a committed line is not an event"
    assert len(ids) == len(set(ids)), "a committed event is duplicated"
    assert set(ids) <= expected_ids, "a committed event the emulator never sent"
    return len(data) - offset


def _wait_for_writes(child: Child, output: Path, writes: int) -> None:
    """Return as soon as the output has grown ``writes`` times (the runner writes its buffer
    just before fsync and the commit), or the child has ended."""
    size = output.stat().st_size if output.exists() else 0
    deadline = time.monotonic() + 10
    while child.running() and time.monotonic() < deadline:
        now = output.stat().st_size if output.exists() else 0
        if now > size:
            writes -= 1
            if writes == 0:
                return
            size = now
        time.sleep(0.0001)


@pytest.mark.slow
def test_sigkill_at_random_instants_of_a_backfill_loses_and_duplicates_nothing(
    tmp_path: Path, backfill_emulator: PostmanEmulator
) -> None:
    emu = backfill_emulator
    expected = emu.events
    expected_ids = {e["id"] for e in expected}
    rng = random.Random(SEED)
    kills = tails = cuts = rounds = 0
    while (kills < MIN_KILLS or rounds < 3 or not tails) and rounds < 12:
        delayed = rounds % 3 == 1  # a third of the rounds: some answers arrive late
        emu.config.fault_rate = 0.3 if delayed else 0.0
        emu.config.faults = ("delay",)
        emu.config.delay_seconds = 0.02
        folder = tmp_path / f"round-{rounds}"
        pipeline = write_pipeline(folder, emu.url, page_size=100)
        output, state_file = folder / "out.jsonl", folder / "state.db"
        for attempt in range(KILLS_PER_ROUND + 1):
            before = emu.request_count
            child = Child("run", pipeline, "--quiet", cwd=folder)
            if attempt == KILLS_PER_ROUND:
                result = child.wait(timeout=120)
                cuts += "cutting" in result.err
                assert result.code == 0, result.err[-2000:]
                break
            # where to aim: start-up (lock take-over, state open, output cut), anywhere in
            # the fetching, or right after an output write (inside fsync and the commit)
            aim = rng.choices(["start-up", "fetching", "commit"], weights=[2, 5, 3])[0]
            if aim == "start-up":
                time.sleep(rng.uniform(0, 0.3))
            elif aim == "fetching":
                wait_until(lambda c=child, b=before: emu.request_count > b or not c.running())
                time.sleep(rng.uniform(0, 0.3))
            else:
                _wait_for_writes(child, output, rng.randrange(1, 4))
            fetched = emu.request_count > before
            child.signal(signal.SIGKILL)
            result = child.wait()
            cuts += "cutting" in result.err  # a tail an earlier kill left
            if result.code == 0:
                break
            assert result.code == -signal.SIGKILL, result.err[-2000:]
            kills += 1
            count("kills")
            count(f"kills aimed at {aim}")
            if not fetched:
                count("kills before the first request")
            if delayed and fetched:
                count("kills while answers were delayed")
            if _check_after_kill(state_file, output, expected_ids):
                tails += 1
                count("kills leaving written but uncommitted bytes (cut by the next run)")
        assert "Traceback" not in result.err
        lines = read_lines(output)
        check_delivery(lines, expected, complete=True)
        assert len(lines) == BACKFILL_EVENTS
        check_consistent(pipeline, folder, output)
        rounds += 1
    count("kill_rounds", rounds)
    count("faults_injected", sum(emu.fault_counts.values()))
    emu.config.fault_rate = 0.0
    assert kills >= MIN_KILLS, f"only {kills} kills landed (seed {SEED})"
    assert tails > 0, f"no kill left uncommitted bytes for a restart to cut (seed {SEED})"
    assert cuts > 0, f"{tails} kills left uncommitted bytes, no restart cut them (seed {SEED})"


def test_sigterm_mid_sync_in_interval_mode_finishes_the_page_in_hand(tmp_path: Path) -> None:
    config = EmulatorConfig(events=3000, days=30, fault_rate=1.0, faults=("delay",),
                            delay_seconds=0.05)
    with PostmanEmulator(config) as emu:
        pipeline = write_pipeline(tmp_path, emu.url)
        output = tmp_path / "out.jsonl"
        child = Child("run", pipeline, "--interval", "1", cwd=tmp_path)
        wait_until(lambda: emu.request_count >= 12)
        count("faults_injected", 12)
        child.signal(signal.SIGTERM)
        signalled = time.monotonic()
        result = child.wait(timeout=15)
        assert result.code == 0, result.err
        assert time.monotonic() - signalled < 3
        assert "received SIGTERM" in result.err and "[stopped early]" in result.err
        show = check_consistent(pipeline, tmp_path, output)  # the page in hand was committed
        delivered = read_lines(output)
        check_delivery(delivered, emu.events, complete=False)
        assert 0 < len(delivered) < 3000
        assert show["state"]["checkpoint"]["sweep"] is not None  # mid-sweep, resumable

        emu.config.fault_rate = 0.0
        again = cli("run", pipeline, cwd=tmp_path)
        assert again.code == 0, again.err
        check_delivery(read_lines(output), emu.events, complete=True)
        check_consistent(pipeline, tmp_path, output)


def test_sigterm_between_interval_syncs_exits_promptly_after_delivering_each_once(
    tmp_path: Path,
) -> None:
    with PostmanEmulator(EmulatorConfig(events=500, days=30)) as emu:
        pipeline = write_pipeline(tmp_path, emu.url)
        output = tmp_path / "out.jsonl"
        child = Child("run", pipeline, "--interval", "1", cwd=tmp_path)
        wait_until(lambda: line_count(output) == 500)
        emu.add_events(40)
        wait_until(lambda: line_count(output) == 540 and (saved_state(tmp_path / "state.db")
                   or {})["output"]["offset"] == output.stat().st_size)
        time.sleep(0.2)  # now in the wait between syncs
        child.signal(signal.SIGTERM)
        signalled = time.monotonic()
        result = child.wait(timeout=10)
        assert result.code == 0, result.err
        assert time.monotonic() - signalled < 1.5
        assert result.err.count("records in") >= 2  # one summary line per sync
        check_delivery(read_lines(output), emu.events, complete=True)
        check_consistent(pipeline, tmp_path, output)


def test_sigterm_during_a_retry_backoff_exits_promptly_with_the_state_unchanged(
    tmp_path: Path,
) -> None:
    with PostmanEmulator(EmulatorConfig(events=300, days=30)) as emu:
        pipeline = write_pipeline(tmp_path, emu.url, retry_initial_backoff_seconds=6,
                                  retry_budget_seconds=120)
        output = tmp_path / "out.jsonl"
        assert cli("run", pipeline, cwd=tmp_path).code == 0
        before = state_show(pipeline, tmp_path)
        emu.add_events(25)
        emu.config.fault_rate, emu.config.faults = 1.0, ("503",)
        sent = emu.request_count
        child = Child("run", pipeline, cwd=tmp_path)
        wait_until(lambda: emu.request_count > sent)
        time.sleep(0.4)  # the first 503 is answered: the input waits 3 to 6 s to retry
        child.signal(signal.SIGTERM)
        signalled = time.monotonic()
        result = child.wait(timeout=10)
        assert result.code == 0, result.err
        assert time.monotonic() - signalled < 1.5, "the backoff was not interrupted"
        assert emu.request_count == sent + 1  # no retry was sent after the stop
        assert state_show(pipeline, tmp_path) == before
        count("faults_injected", 1)

        emu.config.fault_rate = 0.0
        assert cli("run", pipeline, cwd=tmp_path).code == 0
        check_delivery(read_lines(output), emu.events, complete=True)
        check_consistent(pipeline, tmp_path, output)


def test_sigterm_during_a_rate_limit_wait_commits_the_page_in_hand_and_sends_nothing_more(
    tmp_path: Path,
) -> None:
    config = EmulatorConfig(events=600, days=30, rate_limit=1, rate_window=30)
    with PostmanEmulator(config) as emu:
        pipeline = write_pipeline(tmp_path, emu.url)
        output = tmp_path / "out.jsonl"
        child = Child("run", pipeline, cwd=tmp_path)
        # Page 1 says RateLimit-Remaining: 0, reset in 30 s: the input waits before page 2.
        wait_until(lambda: emu.request_count >= 1)
        time.sleep(0.5)
        child.signal(signal.SIGTERM)
        signalled = time.monotonic()
        result = child.wait(timeout=10)
        assert result.code == 0, result.err
        assert time.monotonic() - signalled < 1.5, "the rate-limit wait was not interrupted"
        assert emu.request_count == 1, "a request was sent after the stop, against the limit"
        delivered = read_lines(output)
        assert len(delivered) == 100  # the first page, committed on the way out
        check_delivery(delivered, emu.events, complete=False)
        check_consistent(pipeline, tmp_path, output)

        emu.config.rate_limit = None
        assert cli("run", pipeline, cwd=tmp_path).code == 0
        check_delivery(read_lines(output), emu.events, complete=True)
        check_consistent(pipeline, tmp_path, output)


def test_stdout_is_at_least_once_across_a_kill(tmp_path: Path) -> None:
    """A pipe cannot be cut back: what a killed run printed after its last commit is printed
    again by the next run. Nothing is lost; the repeats are the uncommitted pages."""
    with PostmanEmulator(EmulatorConfig(events=5000, days=30, fault_rate=1.0,
                                        faults=("delay",), delay_seconds=0.02)) as emu:
        pipeline = write_pipeline(tmp_path, emu.url, stdout=True)
        child = Child("run", pipeline, "--quiet", cwd=tmp_path)
        state_file = tmp_path / "state.db"
        wait_until(lambda: ((saved_state(state_file) or {}).get("checkpoint") or {}).get("sweep")
                   is not None)  # a first commit of a checkpoint mid-sweep
        while True:  # then five pages past the last commit, with no commit after them
            commits = (saved_state(state_file) or {})["commits"]
            committed_at = emu.request_count
            wait_until(lambda at=committed_at: emu.request_count >= at + 5)
            if (saved_state(state_file) or {})["commits"] == commits:
                break
        child.signal(signal.SIGKILL)
        killed = child.wait()
        assert killed.code == -signal.SIGKILL
        count("kills of a stdout run")
        emu.config.fault_rate = 0.0
        again = cli("run", pipeline, "--quiet", cwd=tmp_path)
        assert again.code == 0, again.err

    first = [json.loads(line) for line in killed.out.splitlines(keepends=True)
             if line.endswith("\n")]  # the killed run may end inside a line
    second = [json.loads(line) for line in again.out.splitlines()]
    ids = [r["id"] for r in first + second]
    expected = {e["id"] for e in emu.events}
    assert set(ids) == expected, "an event was lost"
    assert len(second) < len(expected), "the second run started over instead of resuming"
    repeats = len(ids) - len(set(ids))
    assert repeats > 0, "nothing printed after the last commit was printed again"
    count("stdout_lines_printed_again_after_a_kill", repeats)
