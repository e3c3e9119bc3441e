"""Long waits are said while they last: a rate limit (the client's own or the server's) or a
retry after a failure shows on the progress line, a retry logs one WARNING line the first
time, a run without a terminal logs one line per long wait, and the summary says how long
the run waited on each. Real parts: the CLI in a subprocess (under a pseudo-terminal or with
pipes), the Postman emulator on loopback with its rate limit scaled down, a closed port."""

from __future__ import annotations

import logging
import os
import pty
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from helpers import read_terminal
from postman_audit.client import PostmanClient
from postman_audit.emulator import EmulatorConfig, PostmanEmulator

from plugin_host import InputContext, UpstreamError, discover
from plugin_host._contract import LONG_WAIT_SECONDS
from plugin_host._pipeline import load_pipeline
from plugin_host._runner import RunSummary, run_once

KEY_ENV = "POSTMAN_WAITS_TEST_KEY"
FAST = {"requests": 1_000_000, "per_seconds": 1}
RETRY_WARNING = "retrying for at most"


def emulator(**switches: Any) -> PostmanEmulator:
    """The emulator, its newest event a minute old, its events over the last 30 days."""
    switches.setdefault("now", datetime.now(timezone.utc) - timedelta(minutes=1))
    switches.setdefault("days", 30)
    return PostmanEmulator(EmulatorConfig(**switches))


def write_pipeline(folder: Path, base_url: str, **settings: Any) -> Path:
    """A postman_audit pipeline backfilling 31 days into out.jsonl; no limit unless set."""
    start = datetime.now(timezone.utc) - timedelta(days=31)
    values = {"base_url": base_url, "backfill_start_time": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
              "page_size": 100, "rate_limit": FAST, "retry_initial_backoff_seconds": 0.05,
              **settings}
    doc = {"version": 1, "name": "waits",
           "input": {"type": "postman_audit", "settings": values,
                     "secrets": {"api_key": {"env": KEY_ENV}}},
           "output": {"type": "jsonl", "settings": {"path": "out.jsonl"}},
           "state": {"path": "state.db"}}
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def env(key: str) -> dict[str, str]:
    values = {k: v for k, v in os.environ.items() if not k.startswith("PLUGIN_HOST_")}
    values[KEY_ENV] = key
    return values


def cli_on_a_terminal(*args: str | Path, key: str, cwd: Path) -> tuple[int, str]:
    """``python -m plugin_host ARGS`` with stderr on a pseudo-terminal: exit code, stderr."""
    master, slave = pty.openpty()
    process = subprocess.Popen([sys.executable, "-m", "plugin_host", *map(str, args)],
                               cwd=cwd, env=env(key), stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    seen = read_terminal(master)
    return process.wait(timeout=120), seen.decode("utf-8", "replace")


def cli(*args: str | Path, key: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """``python -m plugin_host ARGS`` with stdout and stderr on pipes (no terminal)."""
    return subprocess.run([sys.executable, "-m", "plugin_host", *map(str, args)], cwd=cwd,
                          env=env(key), capture_output=True, text=True, timeout=120,
                          check=False)


def summary_waits(text: str) -> tuple[int, float, float]:
    """Rate-limit waits, seconds waited on rate limits and before retries, from the summary."""
    found = re.search(r"(\d+) rate-limit waits?(?: \(\d+ after a 429\))?; waited ([\d.]+) s on "
                      r"rate limits, ([\d.]+) s before retries", text)
    assert found, text
    return int(found.group(1)), float(found.group(2)), float(found.group(3))


@pytest.fixture
def dead_port() -> int:
    """A loopback port where nothing listens (bound, then closed: connecting is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def key(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    value = EmulatorConfig().api_key
    monkeypatch.setenv(KEY_ENV, value)
    yield value


# ------------------------------------------------------------------ the client's own limit


def test_a_rate_limit_wait_shows_on_the_progress_line_and_in_the_summary(
    tmp_path: Path, key: str
) -> None:
    with emulator(events=900) as emu:
        pipeline = write_pipeline(tmp_path, emu.url,
                                  rate_limit={"requests": 4, "per_seconds": 1.5})
        code, text = cli_on_a_terminal("run", pipeline, key=key, cwd=tmp_path)
    assert code == 0, text
    shown = text.replace("\r", "\n").split("\n")
    assert any(re.search(r"^\x1b\[2Kwaiting \d s: rate limit 4/1\.5 s$", line)
               for line in shown), text
    assert "900 records in " in text
    waits, on_limits, on_retries = summary_waits(text)
    assert waits >= 1 and on_limits >= 1.0 and on_retries == 0.0
    assert "WARNING" not in text  # on a terminal the waits are on the progress line only


def test_without_a_terminal_short_waits_are_not_logged(tmp_path: Path, key: str) -> None:
    with emulator(events=900) as emu:
        pipeline = write_pipeline(tmp_path, emu.url,
                                  rate_limit={"requests": 4, "per_seconds": 1.5})
        done = cli("run", pipeline, key=key, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "waiting" not in done.stderr and "\x1b[" not in done.stderr
    waits, on_limits, _ = summary_waits(done.stderr)
    assert waits >= 1 and on_limits >= 1.0  # waited, under LONG_WAIT_SECONDS each


def test_without_a_terminal_each_long_wait_is_one_warning_line(tmp_path: Path, key: str) -> None:
    per = LONG_WAIT_SECONDS + 0.5  # the third request waits a whole window
    with emulator(events=300) as emu:
        pipeline = write_pipeline(tmp_path, emu.url, rate_limit={"requests": 2, "per_seconds": per})
        done = cli("run", pipeline, key=key, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    said = [line for line in done.stderr.splitlines() if "waiting" in line]
    assert len(said) == 1, done.stderr
    assert re.search(rf" WARNING plugin_host\.input\.postman_audit: waiting \d s: rate limit "
                     rf"2/{per:g} s$", said[0]), said
    waits, on_limits, _ = summary_waits(done.stderr)
    assert waits >= 1 and on_limits >= LONG_WAIT_SECONDS


# ------------------------------------------------------------------ the server's limit


def test_a_429_is_shown_while_waited_out_and_counted_apart_from_retries(
    tmp_path: Path, key: str, capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with emulator(events=300, rate_limit=3, rate_window=3.0) as emu:
        pipeline = load_pipeline(write_pipeline(tmp_path, emu.url, page_size=300), discover())
        with httpx.Client(base_url=emu.url, headers={"X-API-Key": key}) as other_tool:
            while True:  # spend the key's window, with more than a second of it left
                answer = other_tool.get("/audit-actions")
                if answer.status_code == 429 and float(answer.headers["RateLimit-Reset"]) > 1.2:
                    break
        before = emu.status_counts[429]
        with caplog.at_level(logging.INFO):
            summary = run_once(pipeline, progress=True)
        answered_429 = emu.status_counts[429] - before
    shown = capsys.readouterr().err.replace("\r", "\n")
    assert re.search(r"waiting \d s: rate limited by the server \(HTTP 429\)", shown), shown
    figures = summary.as_dict()
    assert figures["records"] == 300
    assert figures["rate_limited_responses"] == answered_429 >= 1
    assert figures["rate_limit_waits"] >= 1 and figures["wait_seconds_rate_limit"] >= 1.0
    assert figures["wait_seconds_retry"] == 0
    assert f"({answered_429} after a 429)" in summary.line()
    assert not [r for r in caplog.records if RETRY_WARNING in r.getMessage()]


# ------------------------------------------------------------------ retries after failures


def test_check_against_a_dead_address_warns_once_then_exits_4(
    tmp_path: Path, key: str, dead_port: int
) -> None:
    pipeline = write_pipeline(tmp_path, f"http://127.0.0.1:{dead_port}",
                              retry_budget_seconds=3, retry_initial_backoff_seconds=0.2)
    done = cli("check", pipeline, key=key, cwd=tmp_path)
    assert done.returncode == 4, done.stderr
    lines = done.stderr.splitlines()
    warned = [n for n, line in enumerate(lines) if RETRY_WARNING in line]
    failed = [n for n, line in enumerate(lines) if line.startswith("plugin-host: error:")]
    assert len(warned) == 1 and len(failed) == 1, done.stderr
    assert warned[0] < failed[0]  # said while retrying, not only when it gave up
    assert re.search(rf" WARNING plugin_host\.http: 127\.0\.0\.1: connection refused; "
                     rf"{RETRY_WARNING} 3 s more \(retry budget 3 s\)$", lines[warned[0]])
    attempts = re.search(r"gave up after (\d+) attempts", lines[failed[0]])
    assert attempts and int(attempts.group(1)) >= 3, lines[failed[0]]  # one warning, many


def test_check_against_a_dead_address_says_at_once_how_long_it_may_retry(
    tmp_path: Path, key: str, dead_port: int
) -> None:
    pipeline = write_pipeline(tmp_path, f"http://127.0.0.1:{dead_port}")  # the 120 s budget
    process = subprocess.Popen([sys.executable, "-m", "plugin_host", "check", str(pipeline)],
                               cwd=tmp_path, env=env(key), stdout=subprocess.DEVNULL,
                               stderr=subprocess.PIPE, text=True)
    try:
        assert process.stderr is not None
        first = process.stderr.readline()  # the first line, long before the budget ends
    finally:
        process.kill()
        process.wait(timeout=30)
    assert first.rstrip().endswith(
        f"127.0.0.1: connection refused; {RETRY_WARNING} 2 min more (retry budget 2 min)"), first


def test_a_retry_wait_is_shown_on_the_progress_line(
    dead_port: int, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    context = InputContext("waits", logging.getLogger("plugin_host.input.waits"),
                           progress_enabled=True)
    settings = {"base_url": f"http://127.0.0.1:{dead_port}", "retry_budget_seconds": 2.5,
                "retry_initial_backoff_seconds": 2.2}  # a first wait of 1.1 to 2.2 s
    client = PostmanClient(settings, "PMAK-waits-test", context)
    with caplog.at_level(logging.INFO), pytest.raises(UpstreamError, match="connection refused"):
        client.audit_logs({"limit": 1})
    client.close()
    shown = capsys.readouterr().err.replace("\r", "\n")
    assert re.search(r"\x1b\[2Kwaiting \d s: retrying after connection refused \(attempt 2, "
                     r"up to \d s more\)", shown), shown
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and RETRY_WARNING in warnings[0].getMessage()
    assert context.stats.retry_wait_seconds >= 1.1
    assert context.stats.rate_limit_wait_seconds == 0 and context.stats.rate_limit_waits == 0


def test_retries_all_through_a_run_warn_once_and_add_up_in_the_summary(
    tmp_path: Path, key: str, caplog: pytest.LogCaptureFixture
) -> None:
    with emulator(events=300, fault_rate=0.3, faults=("500", "reset"), seed=7) as emu:
        pipeline = load_pipeline(write_pipeline(tmp_path, emu.url, page_size=20,
                                                retry_budget_seconds=30), discover())
        with caplog.at_level(logging.INFO):
            summary = run_once(pipeline)
        faults = sum(emu.fault_counts.values())
    figures = summary.as_dict()
    assert figures["records"] == 300
    assert figures["retries"] == faults >= 3
    assert len([r for r in caplog.records if RETRY_WARNING in r.getMessage()]) == 1
    assert figures["wait_seconds_retry"] > 0
    assert figures["wait_seconds_rate_limit"] == 0 and figures["rate_limit_waits"] == 0
    assert summary_waits(summary.line())[2] > 0


# ------------------------------------------------------------------ no wait, and plurals


def test_a_run_that_never_waited_says_zero_and_counts_in_the_singular(
    tmp_path: Path, key: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with emulator(events=1) as emu:
        pipeline = load_pipeline(write_pipeline(tmp_path, emu.url), discover())
        summary = run_once(pipeline, progress=True)
    figures = summary.as_dict()
    assert (figures["records"], figures["pages"], figures["requests"]) == (1, 1, 1)
    assert figures["retries"] == figures["rate_limit_waits"] == 0
    assert figures["rate_limited_responses"] == 0
    assert figures["wait_seconds_rate_limit"] == figures["wait_seconds_retry"] == 0
    assert summary.line().startswith("waits: 1 record in 1 page, 1 request, ")
    assert "wait" not in summary.line().removeprefix("waits:")
    shown = capsys.readouterr().err
    assert "postman_audit: 1 event, at " in shown and "waiting" not in shown


def test_the_summary_line_counts_in_the_singular_and_the_plural() -> None:
    one = RunSummary("p", records=1, pages=1, seconds=1.0)
    one.stats.requests = one.stats.retries = one.stats.rate_limit_waits = 1
    one.stats.rate_limit_wait_seconds, one.stats.retry_wait_seconds = 2.5, 1.5
    assert one.line() == ("p: 1 record in 1 page, 1 request, 1.00s (1 records/s), 1 retry, "
                          "1 rate-limit wait; waited 2.5 s on rate limits, 1.5 s before retries")
    two = RunSummary("p", records=2, pages=2, seconds=1.0)
    two.stats.requests = two.stats.retries = two.stats.rate_limit_waits = 2
    two.stats.rate_limited_responses = 1
    assert two.line().startswith("p: 2 records in 2 pages, 2 requests, 1.00s (2 records/s), "
                                 "2 retries, 2 rate-limit waits (1 after a 429); waited ")
