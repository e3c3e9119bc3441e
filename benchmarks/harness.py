"""The benchmark's plumbing: measuring a child process, the pipelines and emulators it runs
against, and the figures' containers. ``run.py`` holds the sections and the report;
``profile.py`` reuses the fixtures.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Collection, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
PY = sys.executable
API_KEY = "PMAK-benchmark-key"
UNLIMITED = {"requests": 1_000_000, "per_seconds": 1}
DOC_RATE = 300  # the documented Postman limit: 300 requests per window
LOOKBACK = 30 * 60  # the input's default lookback_minutes, in seconds
LIMITER_MARGIN = 0.02  # plugin_host.http.RateLimiter's default: windows 2 % longer than said
OUTPUT_BYTES_PER_EVENT = 600  # a JSON line of the emulator's events is about 560 bytes
HEADERS = ("Section", "Measure", "Host", "Bare loop", "Host / bare", "Target")


# --------------------------------------------------------------------------- measuring


@dataclass
class Proc:
    """One measured child process."""

    argv: list[str]
    rc: int
    wall: float
    cpu: float
    user: float
    system: float
    rss_mib: float
    started: float
    stdout: str
    stderr: str


class _Spawner:
    """``spawner.py``, started once while this process is small: every measured program is
    its child, so its peak RSS is its own (see spawner.py)."""

    def __init__(self) -> None:
        self._proc: subprocess.Popen[str] | None = None

    def run(self, argv: Sequence[str], cwd: Path, timeout: float) -> dict[str, Any]:
        if self._proc is None:
            self._proc = subprocess.Popen([PY, str(HERE / "spawner.py")], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, text=True)
        assert self._proc.stdin is not None and self._proc.stdout is not None
        request = {"argv": list(argv), "cwd": str(cwd), "stdout": str(cwd / ".stdout"),
                   "stderr": str(cwd / ".stderr"), "timeout": timeout}
        self._proc.stdin.write(json.dumps(request) + "\n")
        self._proc.stdin.flush()
        answer: dict[str, Any] = json.loads(self._proc.stdout.readline())
        return answer

    def close(self) -> None:
        if self._proc is not None and self._proc.stdin is not None:
            self._proc.stdin.close()
            self._proc.wait(timeout=30)


SPAWNER = _Spawner()


def measure(argv: Sequence[str], cwd: Path, timeout: float = 900.0) -> Proc:
    """Run ``argv`` in ``cwd`` (a child of the spawner) and read its own rusage."""
    done = SPAWNER.run(argv, cwd, timeout)
    return Proc(
        argv=list(argv), rc=done["rc"], wall=done["wall"],
        cpu=done["user"] + done["system"], user=done["user"], system=done["system"],
        rss_mib=done["maxrss_kib"] / 1024.0, started=done["started"],
        stdout=(cwd / ".stdout").read_text(errors="replace"),
        stderr=(cwd / ".stderr").read_text(errors="replace"),
    )


def checked(proc: Proc, what: str) -> Proc:
    """``proc``, or an error naming ``what`` with the end of its stderr."""
    if proc.rc != 0:
        raise RuntimeError(f"{what} exited {proc.rc}:\n{proc.stderr[-2000:]}")
    return proc


_SUMMARY = re.compile(r"(\d+) records? in (\d+) pages?, (\d+) requests?, ([\d.]+)s")
_WAITS = re.compile(r"(\d+) retr(?:y|ies), \d+ rate-limit waits?(?: \((\d+) after a 429\))?")
_BARE = re.compile(r"(\d+) records, (\d+) requests")


def host_summary(stderr: str) -> dict[str, int]:
    """Records, pages, requests, retries and waits after a 429 from the host's summary line."""
    found = _SUMMARY.findall(stderr)
    if not found:
        raise RuntimeError(f"no summary line in the host's stderr:\n{stderr[-2000:]}")
    records, pages, requests, _ = found[-1]
    waits = _WAITS.findall(stderr)
    retries, after_429 = waits[-1] if waits else ("0", "0")
    return {"records": int(records), "pages": int(pages), "requests": int(requests),
            "retries": int(retries), "waits_after_429": int(after_429 or 0)}


def count_lines(path: Path) -> int:
    """Newlines in ``path`` (0 when it does not exist)."""
    if not path.exists():
        return 0
    lines = 0
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            lines += chunk.count(b"\n")
    return lines


def delivery_problems(path: Path, expected: Collection[int]) -> list[str]:
    """What keeps the JSON lines in ``path`` from holding each event id in ``expected``
    exactly once (ids lost, ids delivered more than once, ids never sent, lines that are not
    events); an empty list when the run is verified."""
    delivered: Counter[Any] = Counter()
    broken = 0
    if path.exists():
        with open(path, "rb") as f:
            for line in f:
                try:
                    delivered[json.loads(line)["id"]] += 1
                except (ValueError, TypeError, KeyError):
                    broken += 1
    wanted = set(expected)
    lost = sorted(wanted - delivered.keys())
    repeated = sorted((k for k, n in delivered.items() if n > 1), key=str)
    foreign = sorted(delivered.keys() - wanted, key=str)
    problems = [f"{len(found)} {what} (e.g. {', '.join(map(str, found[:3]))})"
                for found, what in ((lost, "ids lost"), (repeated, "ids delivered twice or more"),
                                    (foreign, "ids the emulator never sent")) if found]
    if broken:
        problems.append(f"{broken} lines that are not events")
    return problems


def emulator_ids(events: int, days: int, now: datetime) -> frozenset[int]:
    """The event ids ``python -m postman_audit.emulator --events EVENTS --days DAYS --now NOW``
    serves (the same seed generates the same events)."""
    from postman_audit.emulator import EmulatorConfig, PostmanEmulator

    emulator = PostmanEmulator(EmulatorConfig(api_key=API_KEY, events=events, days=days,
                                              now=now))
    return frozenset(e["id"] for e in emulator.events)


@dataclass
class Stat:
    """Repetitions of one figure."""

    values: list[float] = field(default_factory=list)

    @property
    def median(self) -> float:
        return statistics.median(self.values) if self.values else math.nan

    def fmt(self, digits: int = 2, unit: str = "") -> str:
        if not self.values:
            return "n/a"
        text = f"{self.median:,.{digits}f}{unit}"
        if len(self.values) > 1 and min(self.values) != max(self.values):
            text += f" ({min(self.values):,.{digits}f}–{max(self.values):,.{digits}f})"
        return text


def ratio(a: float, b: float) -> str:
    """``a / b`` as ``1.23×``."""
    return "n/a" if not b or math.isnan(a) or math.isnan(b) else f"{a / b:.2f}×"


# --------------------------------------------------------------------------- fixtures


def day_of(moment: datetime) -> str:
    """``YYYY-MM-DD`` of ``moment``."""
    return moment.strftime("%Y-%m-%d")


def write_pipeline(folder: Path, url: str, start: datetime, page_size: int,
                   rate: dict[str, float]) -> Path:
    """A jsonl pipeline of the Postman input in ``folder``; returns the pipeline file."""
    folder.mkdir(parents=True, exist_ok=True)
    key = folder / "api-key.txt"
    key.write_text(API_KEY + "\n")
    key.chmod(0o600)
    doc = {
        "version": 1,
        "name": "bench",
        "input": {
            "type": "postman_audit",
            "settings": {
                "base_url": url,
                "backfill_start_time": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "page_size": page_size,
                "rate_limit": rate,
            },
            "secrets": {"api_key": {"file": key.name}},
        },
        "output": {"type": "jsonl", "settings": {"path": "events.jsonl"}},
        "state": {"path": "state.db"},
    }
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def host_argv() -> list[str]:
    return [PY, "-m", "plugin_host", "run", "pipeline.yaml"]


def baseline_argv(url: str, since: str, page_size: int) -> list[str]:
    return [PY, str(HERE / "baseline.py"), "--url", url, "--api-key", API_KEY,
            "--since", since, "--out", "events.jsonl", "--page-size", str(page_size)]


def _checked_output(folder: Path, expected: Collection[int] | None) -> dict[str, Any]:
    out = folder / "events.jsonl"
    found: dict[str, Any] = {"lines": count_lines(out)}
    if expected is not None:
        found["problems"] = delivery_problems(out, expected)
    return found


def run_host(work: Path, url: str, start: datetime, page_size: int, rate: dict[str, float],
             expected: Collection[int] | None = None) -> dict[str, Any]:
    """One host run in a fresh folder, its output checked against the ``expected`` ids
    (``problems``); the folder is removed afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="host-", dir=work))
    try:
        write_pipeline(folder, url, start, page_size, rate)
        proc = checked(measure(host_argv(), folder), "plugin-host run")
        return {**asdict(proc), **host_summary(proc.stderr), **_checked_output(folder, expected)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_baseline(work: Path, url: str, start: datetime, page_size: int,
                 expected: Collection[int] | None = None) -> dict[str, Any]:
    """One bare-loop run in a fresh folder, checked like ``run_host``; the folder is removed
    afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="bare-", dir=work))
    try:
        proc = checked(measure(baseline_argv(url, day_of(start), page_size), folder),
                       "baseline")
        found = _BARE.findall(proc.stderr)
        records, requests = (int(x) for x in found[-1])
        return {**asdict(proc), "records": records, "requests": requests,
                **_checked_output(folder, expected)}
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def process_cpu(pid: int) -> float:
    """CPU seconds a running process has used so far (from /proc; NaN where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class EmulatorProcess:
    """The URL and pid of an emulator running in its own process."""

    url: str
    pid: int

    def cpu(self) -> float:
        return process_cpu(self.pid)


@contextlib.contextmanager
def emulator_process(events: int, days: int, now: datetime) -> Iterator[EmulatorProcess]:
    """``python -m postman_audit.emulator`` in its own process, serving on loopback."""
    argv = [PY, "-m", "postman_audit.emulator", "--port", "0", "--events", str(events),
            "--days", str(days), "--now", now.isoformat(), "--api-key", API_KEY]
    child = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        url = child.stdout.readline().strip()
        if not url.startswith("http://"):
            _, err = child.communicate(timeout=10)
            raise RuntimeError(f"the emulator did not start:\n{err[-2000:]}")
        yield EmulatorProcess(url, child.pid)
    finally:
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()
        for stream in (child.stdout, child.stderr):
            if stream is not None:
                stream.close()


class _TimedLog(deque[Any]):
    """A stand-in for the emulator's ``requests_log`` that also notes when each came."""

    def __init__(self, maxlen: int) -> None:
        super().__init__(maxlen=maxlen)
        self.times: list[float] = []

    def append(self, item: Any) -> None:
        if item and item[0].rstrip("/") == "/audit/logs":
            self.times.append(time.monotonic())
        super().append(item)


@contextlib.contextmanager
def emulator_in_process(**config: Any) -> Iterator[tuple[Any, _TimedLog]]:
    """A ``PostmanEmulator`` in this process whose /audit/logs requests are timestamped."""
    from postman_audit.emulator import EmulatorConfig, PostmanEmulator

    emulator = PostmanEmulator(EmulatorConfig(api_key=API_KEY, **config))
    log = _TimedLog(maxlen=emulator.requests_log.maxlen or 10000)
    emulator.requests_log = log
    with emulator:
        yield emulator, log


# --------------------------------------------------------------------------- sections


@dataclass
class Report:
    """The table rows, the raw data behind them, and a note per run that was not verified
    (any note makes the benchmark exit 1)."""

    rows: list[tuple[str, ...]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def row(self, *cells: str) -> None:
        self.rows.append(tuple(cells) + ("",) * (len(HEADERS) - len(cells)))

    def verify(self, what: str, run: dict[str, Any]) -> None:
        """Note each problem ``delivery_problems`` found in ``run``'s output."""
        self.notes.extend(f"{what}: {problem}" for problem in run.get("problems", ()))


def say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def prefault(work: Path, size: int) -> None:
    """Write ``size`` bytes to a file in ``work``, sync and delete it: the page cache the
    measured runs write their output into is then memory the machine has used before. (On a
    virtual machine, memory the guest never touched costs a host page fault per page: a
    program writing its output there spent up to 6 times as long in write(2) as one given
    recycled pages, whichever of the two it happened to be.)"""
    path = work / "prefault.bin"
    chunk = b"\0" * (8 << 20)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(max(1, size // len(chunk))):
            os.write(fd, chunk)
        os.fsync(fd)
    finally:
        os.close(fd)
        path.unlink()


def compile_bytecode() -> None:
    """Compile the host's and the Postman input's modules to bytecode, as a regular
    ``pip install`` does. (An editable install compiles nothing, and with
    ``PYTHONDONTWRITEBYTECODE`` set Python never caches what it compiles: every measured run
    of the host would then compile its ~40 modules again, ~20 ms that an installed host does
    not spend, while the bare loop's libraries were compiled by pip.)"""
    import compileall
    import importlib.util

    for package in ("plugin_host", "postman_audit"):
        spec = importlib.util.find_spec(package)
        if spec is not None and spec.submodule_search_locations:
            for folder in spec.submodule_search_locations:
                compileall.compile_dir(folder, quiet=2)
