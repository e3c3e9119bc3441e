"""Crash safety: a real run SIGKILLed at random instants, restarted until it completes,
leaves every record in the jsonl output exactly once, in order, with no partial line."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from helpers import CRASH_DRIVER, TOKEN_ENV, Venv, clean_env, pipeline_doc, write_pipeline

from plugin_host import StateStore

pytestmark = [pytest.mark.slow, pytest.mark.reliability]

MIN_KILLS = 30


@dataclass(frozen=True)
class Round:
    """One pipeline run to completion through kills, and how often it commits."""

    total: int
    page_size: int
    commit_pages: int
    commit_seconds: float
    pad: int = 0
    delay_ms: float = 1.0
    aim_at_tails: bool = False  # half the kills wait until the file runs past the commit


ROUNDS = [
    # a commit every 3 pages: kills land between commits, on a commit, or inside one
    Round(total=20_000, page_size=50, commit_pages=3, commit_seconds=60),
    # the default policy
    Round(total=20_000, page_size=50, commit_pages=10, commit_seconds=1.0),
    # ~50 KB pages, a commit every 40: the 1 MiB buffer reaches the file between commits,
    # so a kill leaves an uncommitted tail (often a torn line) for the restart to cut
    Round(total=6_000, page_size=50, commit_pages=40, commit_seconds=60, pad=1000, delay_ms=3,
          aim_at_tails=True),
]


def verify(out: Path, rnd: Round, seed: int) -> None:
    data = out.read_bytes()
    assert data.endswith(b"\n"), f"partial last line (seed {seed})"
    numbers = []
    for line in data.split(b"\n")[:-1]:
        record = json.loads(line)
        if rnd.pad:
            assert record["pad"] == "x" * rnd.pad
        numbers.append(record["n"])
    if numbers != list(range(rnd.total)):
        seen = set(numbers)
        duplicates = len(numbers) - len(seen)
        missing = sorted(set(range(rnd.total)) - seen)[:10]
        pytest.fail(f"seed {seed}: {len(numbers)} records, {duplicates} duplicates, "
                    f"first missing {missing}")


def committed(state_file: Path) -> int:
    """The output length the state file holds (0 before the first commit)."""
    if not state_file.exists():
        return 0
    db = sqlite3.connect(f"file:{state_file}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT output FROM pipelines WHERE name = 'crash'").fetchone()
    except sqlite3.OperationalError:  # created but not yet holding the table
        return 0
    finally:
        db.close()
    return int(json.loads(row[0])["offset"]) if row and row[0] else 0


def size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def wait_for_a_tail(proc: subprocess.Popen[str], out: Path, state_file: Path) -> None:
    """Return once ``out`` runs past the committed length, or the run has ended."""
    deadline = time.monotonic() + 60
    while proc.poll() is None and size(out) <= committed(state_file):
        assert time.monotonic() < deadline, "the run never wrote past its commit"
        time.sleep(0.001)


def run_with_kills(folder: Path, rnd: Round, kills_wanted: int, rng: random.Random,
                   seed: int, token: str) -> tuple[int, int, int]:
    """Run ``rnd`` to completion, killing it ``kills_wanted`` times (an aimed round: more
    until a kill has left a tail).

    Returns (kills made, kills that left a tail past the commit, restarts that cut one)."""
    pipeline = write_pipeline(folder / "p.yaml", pipeline_doc(
        name="crash",
        settings={"total": rnd.total, "page_size": rnd.page_size, "pad": rnd.pad,
                  "delay_ms": rnd.delay_ms},
        output={"type": "jsonl", "settings": {"path": "out.jsonl"}},
        state={"path": "state.db"},
    ))
    env = clean_env(**{TOKEN_ENV: token})
    argv = [sys.executable, str(CRASH_DRIVER), str(pipeline), str(rnd.commit_pages),
            str(rnd.commit_seconds)]
    out, state_file = folder / "out.jsonl", folder / "state.db"
    kills = tails = cuts = 0
    for attempt in range(kills_wanted + 50):
        log = folder / f"stderr-{attempt}.txt"
        with log.open("w") as stderr:
            proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=stderr,
                                    text=True)
        assert proc.stdout is not None
        if kills < kills_wanted or (rnd.aim_at_tails and not tails):
            if rnd.aim_at_tails and kills % 2 == 0:  # once the file runs past the commit
                wait_for_a_tail(proc, out, state_file)
            elif rng.random() < 0.2:  # while starting up, opening the state or cutting a tail
                time.sleep(rng.uniform(0.0, 0.4))
            else:  # while running
                proc.stdout.readline()
                time.sleep(rng.uniform(0.0, 0.12))
            if proc.poll() is None:
                os.kill(proc.pid, signal.SIGKILL)
        printed, _ = proc.communicate(timeout=120)
        text = log.read_text()
        cuts += "cutting" in text
        if proc.returncode == -signal.SIGKILL:
            kills += 1
            tails += size(out) > committed(state_file)
            continue
        assert proc.returncode == 0, f"seed {seed}, attempt {attempt}: {text}"
        assert json.loads(printed.splitlines()[-1])["pipeline"] == "crash"
        verify(folder / "out.jsonl", rnd, seed)
        with StateStore(folder / "state.db") as store:
            saved = store.load("crash")
        assert saved is not None and saved.checkpoint == {"next": rnd.total}
        assert saved.output == {"path": str(folder / "out.jsonl"),
                                "offset": (folder / "out.jsonl").stat().st_size}
        return kills, tails, cuts
    pytest.fail(f"seed {seed}: the run never completed")


def test_sigkill_at_random_instants_loses_and_repeats_nothing(tmp_path: Path) -> None:
    seed = random.SystemRandom().randrange(2**32)
    rng = random.Random(seed)
    token = "tok-crash-" + format(seed, "x")
    kills = tails = cuts = rounds = 0
    while rounds < len(ROUNDS) or kills < MIN_KILLS:
        rnd = ROUNDS[rounds % len(ROUNDS)]
        left = len(ROUNDS) - rounds
        wanted = max(0, -(-(MIN_KILLS - kills) // max(left, 1)))
        made, left_tails, cut = run_with_kills(tmp_path / f"round-{rounds}", rnd, wanted, rng,
                                               seed, token)
        if rnd.aim_at_tails:
            assert left_tails > 0, f"seed {seed}: no kill of round {rounds} left a tail"
            assert cut > 0, f"seed {seed}: round {rounds} left tails, no restart cut one"
        kills, tails, cuts = kills + made, tails + left_tails, cuts + cut
        rounds += 1
        print(f"round {rounds}: {rnd}, {made} kills of {wanted} wanted, {left_tails} left a "
              f"tail, {cut} tails cut")
    assert kills >= MIN_KILLS
    assert tails > 0 and cuts > 0, f"seed {seed}: {tails} tails left, {cuts} cut"
    print(f"seed {seed}: {kills} kills over {rounds} rounds, {tails} left a tail, {cuts} "
          "restarts cut one")


@pytest.mark.slow
def test_sigterm_stops_after_the_page_in_hand(plugin_venv: Venv, tmp_path: Path) -> None:
    write_pipeline(tmp_path / "p.yaml", pipeline_doc(
        settings={"total": 100_000, "page_size": 10, "delay_ms": 2}))
    env = clean_env(**{TOKEN_ENV: "tok-sigterm-test"})
    proc = subprocess.Popen([plugin_venv.python, "-m", "plugin_host", "run", "p.yaml"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    out = tmp_path / "out.jsonl"
    deadline = time.monotonic() + 60
    while (not out.exists() or out.stat().st_size == 0) and proc.poll() is None:
        assert time.monotonic() < deadline, "the run wrote nothing"
        time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "received SIGTERM: finishing the page in hand" in err
    assert err.rstrip().endswith("[stopped early]")
    numbers = [json.loads(line)["n"] for line in out.read_text().splitlines()]
    assert 0 < len(numbers) < 100_000
    assert numbers == list(range(len(numbers)))
    with StateStore(tmp_path / ".plugin-host" / "state.db") as store:
        saved = store.load("counter")
    assert saved is not None and saved.checkpoint == {"next": len(numbers)}
