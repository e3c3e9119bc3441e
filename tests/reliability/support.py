"""What the reliability tests share: pipeline files, the real CLI in a subprocess, checks of
the output against the state, and the figures the suite reports at the end."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
KEY_ENV = "RELIABILITY_API_KEY"
EMULATOR_KEY = "PMAK-emulator-demo-key"
FAST_RATE = {"requests": 1_000_000, "per_seconds": 1}

#: Figures the suite reports at its end (kills, faults, hostile inputs, losses, duplicates).
FIGURES: Counter[str] = Counter()
#: The seed of every random choice in the suite; set RELIABILITY_SEED to replay a run.
SEED = int(os.environ.get("RELIABILITY_SEED") or random.randrange(1 << 31))


def count(name: str, n: int = 1) -> None:
    """Add ``n`` to one of the suite's figures."""
    FIGURES[name] += n


def figures() -> dict[str, Any]:
    """The figures so far: the seed, then losses, duplicates and foreign lines (0 when none
    was counted), then the others by name."""
    result: dict[str, Any] = {"seed (RELIABILITY_SEED)": SEED}
    for name in ("lost", "duplicates", "foreign_lines"):
        result[name] = FIGURES.get(name, 0)
    result.update(sorted((k, v) for k, v in FIGURES.items() if k not in result))
    return result


class _Report:
    """Prints the figures in pytest's terminal summary and writes them to a JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        found = figures()
        self.path.write_text(json.dumps(found, indent=2) + "\n")
        terminalreporter.section("reliability figures")
        width = max(len(name) for name in found)
        for name, value in found.items():
            terminalreporter.write_line(f"{name:<{width}}  {value}")
        terminalreporter.write_line(f"(also in {self.path})")


def report_figures(config: Any, path: Path) -> None:
    """Report the figures when the pytest session of ``config`` ends (printed whether or not
    output is captured, and written to ``path`` as JSON); once per session."""
    if not config.pluginmanager.has_plugin("reliability-figures"):
        config.pluginmanager.register(_Report(path), "reliability-figures")


def iso(dt: datetime) -> str:
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def days_ago(days: float) -> str:
    """An RFC 3339 instant ``days`` before now."""
    return iso(datetime.now(timezone.utc) - timedelta(days=days))


def write_pipeline(
    folder: Path,
    base_url: str,
    *,
    name: str = "postman",
    file: str = "pipeline.yaml",
    output: str = "out.jsonl",
    state: str = "state.db",
    start_days: float = 31,
    secrets: Mapping[str, Any] | None = None,
    stdout: bool = False,
    **settings: Any,
) -> Path:
    """A postman_audit pipeline into a jsonl file (or stdout); fast retries and no client
    rate limit unless ``settings`` say otherwise."""
    values: dict[str, Any] = {
        "base_url": base_url,
        "backfill_start_time": days_ago(start_days),
        "page_size": 100,
        "rate_limit": FAST_RATE,
        "retry_initial_backoff_seconds": 0.05,
        "retry_budget_seconds": 3,
        "timeout_seconds": 5,
    }
    values.update(settings)
    doc = {
        "version": 1,
        "name": name,
        "input": {
            "type": "postman_audit",
            "settings": {k: v for k, v in values.items() if v is not None},
            "secrets": dict(secrets or {"api_key": {"env": KEY_ENV}}),
        },
        "output": {"type": "stdout"} if stdout else {"type": "jsonl",
                                                      "settings": {"path": output}},
        "state": {"path": state},
    }
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / file
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    return path


def env(key: str = EMULATOR_KEY, **extra: str) -> dict[str, str]:
    """The environment for a child: the key in $RELIABILITY_API_KEY, no plugin-host switches."""
    result = {k: v for k, v in os.environ.items() if not k.startswith("PLUGIN_HOST_")}
    result[KEY_ENV] = key
    result.update(extra)
    return result


@dataclass
class Result:
    code: int
    out: str
    err: str
    seconds: float
    max_rss_kb: int = 0

    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.startswith("plugin-host: error:")]


def argv(*args: Any) -> list[str]:
    return [sys.executable, "-m", "plugin_host", *(str(a) for a in args)]


def cli(*args: Any, cwd: Path, environ: Mapping[str, str] | None = None,
        timeout: float = 60) -> Result:
    """``python -m plugin_host ARGS`` in a subprocess, to completion."""
    started = time.monotonic()
    proc = subprocess.run(argv(*args), cwd=cwd, env=dict(environ or env()), capture_output=True,
                          text=True, timeout=timeout, check=False)
    return Result(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - started)


class Child:
    """A CLI child whose stdout/stderr go to files (no pipe can fill up), reaped with wait4 so
    its peak memory is known."""

    def __init__(self, *args: Any, cwd: Path, environ: Mapping[str, str] | None = None,
                 preexec_fn: Callable[[], None] | None = None, measure_rss: bool = False) -> None:
        self._out = (cwd / f".child-{id(self)}.out").open("w+b")
        self._err = (cwd / f".child-{id(self)}.err").open("w+b")
        command = argv(*args)
        self._rss_report: Path | None = None
        if measure_rss:  # through peak_rss.py: its own fork, so the figure is the CLI's alone
            self._rss_report = cwd / f".child-{id(self)}.rss"
            command = [sys.executable, str(Path(__file__).with_name("peak_rss.py")),
                       str(self._rss_report), *command]
        self.started = time.monotonic()
        self.proc = subprocess.Popen(command, cwd=cwd, env=dict(environ or env()),
                                     stdout=self._out, stderr=self._err,
                                     preexec_fn=preexec_fn)
        self.pid = self.proc.pid
        self._result: Result | None = None

    def signal(self, signum: int) -> None:
        """Send a signal (a child that exited but is not reaped yet ignores it)."""
        if self._result is None:
            os.kill(self.pid, signum)

    def running(self) -> bool:
        """Still running (looked at without reaping it)."""
        if self._result is not None:
            return False
        return os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None

    def wait(self, timeout: float = 60) -> Result:
        """Wait (killing it past ``timeout``, which fails the caller) and collect the result."""
        if self._result is not None:
            return self._result
        deadline = time.monotonic() + timeout
        timed_out = False
        while True:
            pid, status, usage = os.wait4(self.pid, os.WNOHANG)
            if pid == self.pid:
                break
            if time.monotonic() > deadline:
                os.kill(self.pid, signal.SIGKILL)
                timed_out = True
                pid, status, usage = os.wait4(self.pid, 0)
                break
            time.sleep(0.005)
        self.proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - self.started
        outputs = []
        for handle in (self._out, self._err):
            handle.seek(0)
            outputs.append(handle.read().decode("utf-8", "replace"))
            handle.close()
            Path(handle.name).unlink()
        peak = usage.ru_maxrss  # includes what the test process held when it forked
        if self._rss_report is not None and self._rss_report.exists():
            peak = int(self._rss_report.read_text())
            self._rss_report.unlink()
        self._result = Result(self.proc.returncode, outputs[0], outputs[1], seconds, peak)
        assert not timed_out, f"child ran over {timeout}s and was killed: {outputs[1][-2000:]}"
        return self._result


def wait_until(predicate: Callable[[], bool], timeout: float = 20, step: float = 0.002) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(step)


# -- reading what a run left behind ------------------------------------------------------------


def read_lines(path: Path) -> list[Any]:
    """Every line of a jsonl file, parsed; fails on a partial last line."""
    if not path.exists():
        return []
    data = path.read_bytes()
    assert data == b"" or data.endswith(b"\n"), f"{path} ends in a partial line"
    return [json.loads(line) for line in data.splitlines()]


def line_count(path: Path) -> int:
    """Complete lines in a file being written (safe to poll: nothing is parsed)."""
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def saved_state(state_file: Path, name: str = "postman") -> dict[str, Any] | None:
    """A pipeline's committed row read straight from SQLite (fast; the CLI's view is the same)."""
    if not state_file.exists():
        return None
    db = sqlite3.connect(f"file:{state_file}?mode=ro", uri=True)
    try:
        row = db.execute("SELECT checkpoint, output, commits FROM pipelines WHERE name = ?",
                         (name,)).fetchone()
    finally:
        db.close()
    if row is None:
        return None
    return {"checkpoint": json.loads(row[0]) if row[0] else None,
            "output": json.loads(row[1]) if row[1] else None, "commits": row[2]}


def state_show(pipeline: Path, cwd: Path) -> dict[str, Any]:
    """``plugin-host state show`` through the CLI."""
    result = cli("state", "show", pipeline, cwd=cwd)
    assert result.code == 0, result.err
    data: dict[str, Any] = json.loads(result.out)
    return data


def committed_offset(show: Mapping[str, Any]) -> int:
    state = show.get("state") or {}
    output = state.get("output") or {}
    return int(output.get("offset", 0))


def key_of(record: Any) -> str:
    """The identity a record is delivered under (as the input computes it)."""
    from postman_audit.cursor_rules import record_key

    return record_key(record)


def check_delivery(lines: Iterable[Any], sent: Iterable[Any], *, complete: bool) -> None:
    """Every delivered line is one the server sent, none twice; with ``complete``, all of them.

    Counts what was lost and duplicated into the suite's figures before asserting.
    """
    sent_keys = {key_of(r): r for r in sent}
    delivered = [key_of(r) for r in lines]
    dups = len(delivered) - len(set(delivered))
    foreign = [k for k in delivered if k not in sent_keys]
    lost = len(set(sent_keys) - set(delivered)) if complete else 0
    count("records_checked", len(delivered))
    count("duplicates", dups)
    count("lost", lost)
    count("foreign_lines", len(foreign))
    assert not foreign, f"{len(foreign)} lines the server never sent, e.g. {foreign[:3]}"
    assert dups == 0, f"{dups} duplicated records"
    assert lost == 0, f"{lost} records lost"
    for line in lines:
        assert line == sent_keys[key_of(line)], "a delivered record differs from the one sent"


def check_consistent(pipeline: Path, cwd: Path, output: Path) -> dict[str, Any]:
    """``state show`` never beyond what was delivered: the committed offset is the file size."""
    show = state_show(pipeline, cwd)
    size = output.stat().st_size if output.exists() else 0
    assert committed_offset(show) == size, (committed_offset(show), size)
    return show


def one_error_line(result: Result, code: int, *needles: str) -> str:
    """The run exited ``code`` with exactly one ``plugin-host: error:`` line and no traceback."""
    assert result.code == code, (result.code, result.err[-3000:])
    assert "Traceback" not in result.err, result.err[-3000:]
    lines = result.error_lines()
    assert len(lines) == 1, result.err[-3000:]
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]
    return lines[0]
