"""End to end: ``python -m plugin_host`` in a subprocess, a pipeline file, a real SQLite state,
a jsonl output, and the Postman emulator serving on loopback in this process.

Each unconfirmed reading of Postman's contract (``since`` by date or instant, inclusive or
exclusive bounds, how the last page ends, int or string cursors, both error body styles,
``limit`` over the maximum) gets the same scenario: a 30-day backfill with same-second
bursts split across pages, new events, late events inside the lookback.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import yaml
from postman_audit.emulator import EmulatorConfig, PostmanEmulator
from postman_audit.timeutil import epoch_of, format_instant, parse_start

KEY_ENV = "POSTMAN_E2E_API_KEY"
DAY = 86400


# ------------------------------------------------------------------ helpers


@dataclass(frozen=True)
class Result:
    code: int
    out: str
    err: str

    @property
    def error_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def run_cli(*args: str | Path, cwd: Path, key: str | None, timeout: float = 90) -> Result:
    """``python -m plugin_host ARGS`` in a subprocess, the key in the environment."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("PLUGIN_HOST_") and k != KEY_ENV}
    if key is not None:
        env[KEY_ENV] = key
    done = subprocess.run([sys.executable, "-m", "plugin_host", *map(str, args)], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=timeout, check=False)
    return Result(done.returncode, done.stdout, done.stderr)


class Pipe:
    """A pipeline folder: pipeline.yaml, state.db and out.jsonl, driven through the CLI."""

    def __init__(self, folder: Path, key: str, **settings: Any) -> None:
        self.folder = folder
        self.key = key
        self.path = folder / "pipeline.yaml"
        self.out = folder / "out.jsonl"
        self.settings: dict[str, Any] = {}
        self.read_lines = 0
        folder.mkdir(parents=True, exist_ok=True)
        self.configure(**settings)

    def configure(self, **settings: Any) -> None:
        self.settings.update({k: v for k, v in settings.items() if v is not None})
        for name in [k for k, v in settings.items() if v is None]:
            self.settings.pop(name, None)
        doc = {
            "version": 1,
            "name": "postman-e2e",
            "input": {"type": "postman_audit", "settings": self.settings,
                      "secrets": {"api_key": {"env": KEY_ENV}}},
            "output": {"type": "jsonl", "settings": {"path": "out.jsonl"}},
            "state": {"path": "state.db"},
        }
        self.path.write_text(yaml.safe_dump(doc, sort_keys=False))

    def cli(self, *args: str, key: str | None = None) -> Result:
        return run_cli(*args, cwd=self.folder, key=self.key if key is None else key)

    def run(self, *flags: str, key: str | None = None) -> Result:
        return self.cli(*flags, "run", str(self.path), key=key)

    def records(self) -> list[dict[str, Any]]:
        if not self.out.exists():
            return []
        data = self.out.read_bytes()
        assert data == b"" or data.endswith(b"\n"), "the output ends in a partial line"
        return [json.loads(line) for line in data.decode("utf-8").splitlines()]

    def new_ids(self) -> list[int]:
        """Ids written since the last call."""
        records = self.records()
        fresh = records[self.read_lines:]
        self.read_lines = len(records)
        return [r["id"] for r in fresh]

    def checkpoint(self) -> dict[str, Any]:
        """The committed checkpoint, read straight from the SQLite state file."""
        with contextlib.closing(sqlite3.connect(self.folder / "state.db")) as db:
            (text,) = db.execute("SELECT checkpoint FROM pipelines WHERE name = ?",
                                 ("postman-e2e",)).fetchone()
        checkpoint: dict[str, Any] = json.loads(text)
        return checkpoint

    def state(self) -> dict[str, Any]:
        """The saved state, as ``plugin-host state show`` prints it."""
        shown = self.cli("state", "show", str(self.path))
        assert shown.code == 0, shown.err
        state: dict[str, Any] = json.loads(shown.out)["state"]
        return state


def epoch(record: dict[str, Any]) -> int:
    value = epoch_of(record["timestamp"])
    assert value is not None
    return value


def ids_since(emulator: PostmanEmulator, start: int) -> list[int]:
    return [e["id"] for e in emulator.events if epoch(e) >= start]


def assert_exactly(delivered: list[int], expected: list[int]) -> None:
    """The same multiset, each id once: no duplicate, no miss, nothing extra."""
    counts = Counter(delivered)
    twice = sorted(i for i, n in counts.items() if n > 1)
    missing = sorted(set(expected) - set(counts))
    extra = sorted(set(counts) - set(expected))
    assert not twice and not missing and not extra, (
        f"duplicates {twice[:10]}, missing {missing[:10]} (of {len(missing)}), "
        f"extra {extra[:10]} (of {len(extra)})")
    assert len(expected) == len(set(expected))


def summary_number(result: Result, what: str) -> int:
    found = re.search(rf"(\d+) {what}", result.err)
    return int(found.group(1)) if found else 0


def boundary_start(emulator: PostmanEmulator) -> tuple[int, int]:
    """A backfill start at a mid-day same-second burst with earlier events the same day,
    and a page size that splits another burst across the first page boundary."""
    events = emulator.events
    stamps = [epoch(e) for e in events]
    lo, hi = len(events) // 20, len(events) // 3  # some 27 to 20 days back
    for i in range(lo, hi):
        t = stamps[i]
        same_day_before = any(s // DAY == t // DAY and s < t for s in stamps[:i])
        burst = stamps[i + 1] == t and (i == 0 or stamps[i - 1] != t)
        if burst and same_day_before and t % DAY not in (0, DAY - 1):
            start = t
            break
    else:  # pragma: no cover - the seeds below all have one
        raise AssertionError("no mid-day burst with earlier events that day")
    newest_first = sorted((s for s in stamps if s >= start), reverse=True)
    for j in range(20, min(80, len(newest_first) - 1)):
        if newest_first[j] == newest_first[j + 1]:
            return start, j + 1
    raise AssertionError("no burst to split across a page boundary")  # pragma: no cover


def real_now() -> datetime:
    return datetime.now(timezone.utc)


def emulator_config(**switches: Any) -> EmulatorConfig:
    """An emulator whose newest event is a minute old, so 'now' in the CLI is after it."""
    switches.setdefault("now", real_now() - timedelta(minutes=1))
    switches.setdefault("events", 300)
    switches.setdefault("days", 30)
    return EmulatorConfig(**switches)


@pytest.fixture
def emulator(request: pytest.FixtureRequest) -> Iterator[PostmanEmulator]:
    """The emulator with the switches of ``request.param`` (or the defaults)."""
    switches = dict(getattr(request, "param", {}) or {})
    with PostmanEmulator(emulator_config(**switches)) as emu:
        yield emu


def make_pipe(tmp_path: Path, emulator: PostmanEmulator, **settings: Any) -> Pipe:
    settings.setdefault("page_size", 50)
    settings.setdefault("retry_initial_backoff_seconds", 0.05)
    return Pipe(tmp_path / "pipe", emulator.config.api_key, base_url=emulator.url, **settings)


# ------------------------------------------------------------------ the variant matrix


MATRIX = [
    pytest.param({"since_mode": s, "bounds": b, "end_signal": e, "seed": 11 + n},
                 id=f"{s}-{b}-{e}")
    for n, (s, b, e) in enumerate(
        (s, b, e) for s in ("date", "datetime") for b in ("inclusive", "exclusive")
        for e in ("missing", "null", "empty"))
] + [
    pytest.param({"cursor_style": "string", "bounds": "exclusive", "seed": 31}, id="cursor-string"),
    pytest.param({"cursor_style": "int", "end_signal": "empty", "seed": 32}, id="cursor-int"),
    pytest.param({"error_style": "problem", "since_mode": "datetime", "seed": 33},
                 id="errors-problem"),
    pytest.param({"limit_over_max": "reject", "bounds": "exclusive", "seed": 34, "events": 900},
                 id="limit-over-max-reject"),
]


@pytest.mark.parametrize("emulator", MATRIX, indirect=True)
def test_backfill_then_new_then_late_events_each_exactly_once(
    emulator: PostmanEmulator, tmp_path: Path
) -> None:
    start, page_size = boundary_start(emulator)
    if emulator.config.limit_over_max == "reject":
        page_size = 300  # the largest page the input asks for: never refused
    pipe = make_pipe(tmp_path, emulator, backfill_start_time=format_instant(start),
                     page_size=page_size, lookback_minutes=30)

    # 1. the backfill: exactly the events since the start instant, bursts and all
    first = pipe.run()
    assert first.code == 0, first.err
    expected = ids_since(emulator, start)
    delivered = pipe.new_ids()
    assert_exactly(delivered, expected)
    by_id = {e["id"]: e for e in emulator.events}
    same_day_before = [e for e in emulator.events
                       if epoch(e) < start and epoch(e) // DAY == start // DAY]
    assert same_day_before, "the scenario needs events earlier on the start's day"
    assert min(epoch(by_id[i]) for i in delivered) == start
    assert Counter(epoch(by_id[i]) for i in delivered).most_common(1)[0][1] > 1
    if page_size < len(expected):
        assert summary_number(first, "pages") > 1

    # 2. a later run: exactly the new events
    emulator.set_now(real_now())
    new = emulator.add_events(90)
    second = pipe.run()
    assert second.code == 0, second.err
    assert_exactly(pipe.new_ids(), [e["id"] for e in new])

    # 3. late arrivals inside the lookback come next run, once; later than it, never
    late = emulator.add_events(6, late_by=timedelta(minutes=12))
    too_late = emulator.add_events(2, late_by=timedelta(minutes=45))
    third = pipe.run()
    assert third.code == 0, third.err
    assert_exactly(pipe.new_ids(), [e["id"] for e in late])
    assert not {e["id"] for e in too_late} & {r["id"] for r in pipe.records()}

    # 4. nothing new: nothing delivered, and the state stays small
    fourth = pipe.run()
    assert fourth.code == 0, fourth.err
    assert pipe.new_ids() == []
    checkpoint = pipe.checkpoint()
    assert checkpoint["sweep"] is None
    high_water = int(parse_start(checkpoint["high_water"]).timestamp())
    in_window = [e for e in emulator.events if epoch(e) >= high_water - 30 * 60]
    assert 0 < len(checkpoint["seen"]) <= len(in_window)
    assert len(pipe.records()) == len(expected) + len(new) + len(late)


@pytest.mark.parametrize("emulator", [
    pytest.param({"bounds": b, "since_mode": s, "seed": 41 + n}, id=f"{s}-{b}")
    for n, (s, b) in enumerate([("date", "inclusive"), ("date", "exclusive"),
                                ("datetime", "inclusive"), ("datetime", "exclusive")])
], indirect=True)
def test_without_backfill_the_first_run_delivers_nothing_and_later_runs_only_newer(
    emulator: PostmanEmulator, tmp_path: Path
) -> None:
    pipe = make_pipe(tmp_path, emulator, page_size=20)
    first = pipe.run()
    assert first.code == 0, first.err
    assert pipe.new_ids() == []
    emulator.set_now(real_now())
    batch = emulator.add_events(45)
    second = pipe.run()
    assert second.code == 0, second.err
    assert_exactly(pipe.new_ids(), [e["id"] for e in batch])
    batch = emulator.add_events(30)
    third = pipe.run()
    assert third.code == 0, third.err
    assert_exactly(pipe.new_ids(), [e["id"] for e in batch])


# ------------------------------------------------------------------ rough weather


@pytest.mark.slow
def test_a_429_storm_from_a_shared_key_still_delivers_everything_once(tmp_path: Path) -> None:
    config = emulator_config(rate_limit=6, rate_window=1.0, seed=51)
    with PostmanEmulator(config) as emulator:
        start = epoch(emulator.events[0]) + 10 * DAY
        pipe = make_pipe(tmp_path, emulator, backfill_start_time=format_instant(start),
                         page_size=25, rate_limit={"requests": 100, "per_seconds": 1})
        stop = threading.Event()

        def other_tool_on_the_same_key() -> None:
            """Spend the key's window until the pipeline has been answered 429 twice."""
            mine = 0
            with httpx.Client(base_url=emulator.url,
                              headers={"X-API-Key": config.api_key}) as client:
                while not stop.wait(0.005):
                    mine += client.get("/audit-actions").status_code == 429
                    if emulator.status_counts[429] - mine >= 2:
                        break

        hammer = threading.Thread(target=other_tool_on_the_same_key, daemon=True)
        hammer.start()
        result = pipe.run()
        stop.set()
        hammer.join(10)
        assert result.code == 0, result.err
        assert summary_number(result, "rate-limit waits") >= 2, result.err
        assert emulator.status_counts[429] >= 1
        assert_exactly(pipe.new_ids(), ids_since(emulator, start))


@pytest.mark.slow
def test_ten_percent_faults_still_deliver_everything_once(tmp_path: Path) -> None:
    # seed 117 puts five kinds of fault (500, 503, reset, truncate, html) in the first 18
    # requests; every run of this scenario makes more than that
    config = emulator_config(fault_rate=0.1, delay_seconds=0.05, seed=117)
    with PostmanEmulator(config) as emulator:
        start = epoch(emulator.events[0]) + 8 * DAY
        pipe = make_pipe(tmp_path, emulator, backfill_start_time=format_instant(start),
                         page_size=10, lookback_minutes=20)
        first = pipe.run()
        assert first.code == 0, first.err
        expected = ids_since(emulator, start)
        emulator.set_now(real_now())
        expected += [e["id"] for e in emulator.add_events(60)]
        expected += [e["id"] for e in emulator.add_events(5, late_by=timedelta(minutes=3))]
        second = pipe.run()
        assert second.code == 0, second.err
        assert_exactly(pipe.new_ids(), expected)
        assert len(set(emulator.fault_counts) - {"delay"}) >= 3, emulator.fault_counts
        assert summary_number(first, "retries") + summary_number(second, "retries") >= 3


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize("emulator", [pytest.param({"error_style": s}, id=s)
                                      for s in ("legacy", "problem")], indirect=True)
def test_a_wrong_key_exits_3_with_one_line(emulator: PostmanEmulator, tmp_path: Path) -> None:
    pipe = make_pipe(tmp_path, emulator, backfill_start_time=format_instant(
        epoch(emulator.events[-1]) - DAY))
    wrong = "PMAK-" + "0badc0ffee" * 4
    result = pipe.run(key=wrong)
    assert result.code == 3, result.err
    (line,) = result.error_lines
    assert line.startswith("plugin-host: error:") and "401" in line
    assert "wrong, expired or revoked" in line
    assert wrong not in result.err + result.out
    assert emulator.request_count == 1


@pytest.mark.parametrize("emulator", [pytest.param({"forbidden": True}, id="forbidden")],
                         indirect=True)
def test_a_key_without_audit_access_exits_3(emulator: PostmanEmulator, tmp_path: Path) -> None:
    pipe = make_pipe(tmp_path, emulator)
    result = pipe.run()
    assert result.code == 3, result.err
    (line,) = result.error_lines
    assert "403" in line and "Team Admin" in line
    assert emulator.request_count == 1


@pytest.mark.parametrize("emulator", [pytest.param({"quota": 2, "seed": 71}, id="quota")],
                         indirect=True)
def test_an_exhausted_quota_exits_4_at_once_and_the_next_run_resumes(
    emulator: PostmanEmulator, tmp_path: Path
) -> None:
    start = epoch(emulator.events[0]) + 5 * DAY
    pipe = make_pipe(tmp_path, emulator, backfill_start_time=format_instant(start),
                     page_size=30)
    result = pipe.run()
    assert result.code == 4, result.err
    (line,) = result.error_lines
    assert "quota" in line
    assert emulator.request_count == 3  # two pages, one refusal, no retry storm
    assert len(pipe.records()) == 60
    emulator.config.quota = None  # the month turns
    again = pipe.run()
    assert again.code == 0, again.err
    assert_exactly(pipe.new_ids(), ids_since(emulator, start))


def test_a_start_past_retention_warns_with_both_dates_and_collects_from_the_floor(
    tmp_path: Path
) -> None:
    with PostmanEmulator(emulator_config(events=600, days=200, seed=81)) as emulator:
        asked = format_instant(int(real_now().timestamp()) - 190 * DAY)
        pipe = make_pipe(tmp_path, emulator, backfill_start_time=asked, page_size=100)
        result = pipe.run()
        assert result.code == 0, result.err
        warning = next(line for line in result.err.splitlines() if "retention" in line)
        assert "WARNING" in warning and asked in warning
        floor_text = re.search(r"retention floor (\S+Z)", warning)
        assert floor_text, warning
        floor = int(parse_start(floor_text.group(1)).timestamp())
        assert floor > int(parse_start(asked).timestamp())
        assert_exactly(pipe.new_ids(), ids_since(emulator, floor))
        assert any(epoch(e) < floor for e in emulator.events)


def test_a_shorter_retention_than_documented_is_adapted_to(tmp_path: Path) -> None:
    config = emulator_config(events=400, days=120, retention_days=90, seed=82)
    with PostmanEmulator(config) as emulator:
        asked = format_instant(int(real_now().timestamp()) - 100 * DAY)
        pipe = make_pipe(tmp_path, emulator, backfill_start_time=asked, page_size=100)
        result = pipe.run()
        assert result.code == 0, result.err
        oldest = (emulator.now - timedelta(days=90)).date().isoformat()
        warning = next(line for line in result.err.splitlines() if "keeps audit logs" in line)
        assert oldest in warning and asked in warning
        floor = int(parse_start(re.search(r"starting at (\S+Z)", warning).group(1)).timestamp())
        assert_exactly(pipe.new_ids(), ids_since(emulator, floor))
        again = pipe.run()
        assert again.code == 0 and "keeps audit logs" not in again.err, again.err
        assert pipe.new_ids() == []


def test_a_future_start_exits_2(emulator: PostmanEmulator, tmp_path: Path) -> None:
    future = format_instant(int(real_now().timestamp()) + 2 * DAY)
    pipe = make_pipe(tmp_path, emulator, backfill_start_time=future)
    result = pipe.run()
    assert result.code == 2, result.err
    assert "backfill_start_time" in result.err and "future" in result.err
    assert emulator.request_count == 0


def test_moving_the_start_earlier_exits_2_until_the_state_is_reset(
    emulator: PostmanEmulator, tmp_path: Path
) -> None:
    start = epoch(emulator.events[-1]) - 5 * DAY
    pipe = make_pipe(tmp_path, emulator, backfill_start_time=format_instant(start))
    assert pipe.run().code == 0
    first = pipe.new_ids()
    assert_exactly(first, ids_since(emulator, start))
    earlier = start - 3 * DAY
    pipe.configure(backfill_start_time=format_instant(earlier))
    refused = pipe.run()
    assert refused.code == 2, refused.err
    (line,) = refused.error_lines
    assert "moved earlier" in line and "plugin-host state reset" in line
    assert pipe.new_ids() == []
    reset = pipe.cli("state", "reset", str(pipe.path))
    assert reset.code == 0, reset.err
    again = pipe.run()
    assert again.code == 0, again.err
    assert_exactly(pipe.new_ids(), ids_since(emulator, earlier))  # everything since, again


def test_plain_http_to_a_remote_host_exits_2(tmp_path: Path) -> None:
    pipe = Pipe(tmp_path / "pipe", "PMAK-never-sent-0123456789",
                base_url="http://api.getpostman.com")
    result = pipe.run()
    assert result.code == 2, result.err
    assert "base_url" in result.err and "plain http is refused" in result.err
    assert "PMAK-never-sent" not in result.err


def test_check_makes_exactly_one_request_for_one_event(
    emulator: PostmanEmulator, tmp_path: Path
) -> None:
    pipe = make_pipe(tmp_path, emulator, backfill_start_time=format_instant(
        epoch(emulator.events[0])))
    result = pipe.cli("check", str(pipe.path))
    assert result.code == 0, result.err
    assert "reachable" in result.out
    assert emulator.request_count == 1
    ((path, query),) = list(emulator.requests_log)
    assert path == "/audit/logs" and query.get("limit") == "1"
    assert not pipe.out.exists()


def test_debug_logging_never_shows_the_key(emulator: PostmanEmulator, tmp_path: Path) -> None:
    pipe = make_pipe(tmp_path, emulator, backfill_start_time=format_instant(
        epoch(emulator.events[-1]) - 2 * DAY))
    result = pipe.run("--log-level", "DEBUG")
    assert result.code == 0, result.err
    assert "GET" in result.err or "HTTP Request" in result.err  # debug lines were written
    key = emulator.config.api_key
    assert key not in result.err and key not in result.out
    for path in pipe.folder.iterdir():
        assert key.encode() not in path.read_bytes(), path


# ------------------------------------------------------------------ interruptions


class QuietHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 keep-alive, no request log, no Nagle delay between headers and body."""

    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, format: str, *args: Any) -> None:
        pass


_Server = TypeVar("_Server", bound="LoopbackServer")


class LoopbackServer:
    """A test server on 127.0.0.1 in a thread; subclasses call ``serve(Handler)``."""

    def serve(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self: _Server) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


class FlakyProxy(LoopbackServer):
    """A loopback proxy to the emulator that answers 500 once ``fail_after`` requests passed."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.fail_after: int | None = None
        self.requests: list[dict[str, str]] = []
        proxy = self

        class Handler(QuietHandler):

            def do_GET(self) -> None:
                url = httpx.URL(self.path)
                proxy.requests.append(dict(url.params))
                if proxy.fail_after is not None and len(proxy.requests) > proxy.fail_after:
                    status, ctype, body = 500, "application/json", b'{"error":{"name":"x"}}'
                else:
                    answer = httpx.get(proxy.upstream + self.path, headers={
                        "X-API-Key": self.headers.get("X-API-Key", "")})
                    status, body = answer.status_code, answer.content
                    ctype = answer.headers.get("content-type", "application/json")
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.serve(Handler)


def test_a_run_that_runs_out_of_retries_resumes_from_its_last_delivered_page(
    emulator: PostmanEmulator, tmp_path: Path
) -> None:
    start = epoch(emulator.events[0]) + 3 * DAY
    expected = ids_since(emulator, start)
    newest_first = sorted(emulator.events, key=lambda e: (epoch(e), e["id"]), reverse=True)
    with FlakyProxy(emulator.url) as proxy:
        pipe = make_pipe(tmp_path, emulator, backfill_start_time=format_instant(start),
                         page_size=20, retry_budget_seconds=0.4)
        pipe.configure(base_url=proxy.url)
        proxy.fail_after = 4
        broken = pipe.run()
        assert broken.code == 4, broken.err
        warning, line = broken.error_lines  # said once while retrying, then the error
        assert "WARNING" in warning and "HTTP 500; retrying for at most" in warning
        assert "gave up after" in line and "HTTP 500" in line
        delivered = pipe.new_ids()
        assert delivered == [e["id"] for e in newest_first[:80]]  # four whole pages

        state = pipe.state()
        assert state["output"]["offset"] == pipe.out.stat().st_size
        sweep = state["checkpoint"]["sweep"]
        lowest = epoch(newest_first[79])
        assert sweep["lower"] == format_instant(lowest)
        assert set(sweep["at_lower"]) == {str(e["id"]) for e in newest_first[:80]
                                          if epoch(e) == lowest}
        assert sweep["cursor"] is not None

        proxy.fail_after = None
        proxy.requests.clear()
        resumed = pipe.run()
        assert resumed.code == 0, resumed.err
        assert proxy.requests[0].get("cursor") == str(sweep["cursor"])
        assert_exactly(delivered + pipe.new_ids(), expected)


# ------------------------------------------------------------------ hostile upstreams


class Hostile(LoopbackServer):
    """A tiny server that pages forever in one of four broken ways."""

    def __init__(self, mode: str) -> None:
        self.mode = mode
        self.count = 0
        hour_ago = int(real_now().timestamp()) - 3600
        stamp = format_instant(hour_ago).replace("Z", ".000Z")
        older = [format_instant(hour_ago - i).replace("Z", ".000Z") for i in range(6)]
        hostile = self

        class Handler(QuietHandler):

            def do_GET(self) -> None:
                hostile.count += 1
                n = hostile.count
                if hostile.mode == "same-cursor":  # new records, the same nextCursor
                    trails = [{"id": 1000 * n + i, "timestamp": stamp} for i in range(3)]
                    cursor: Any = 42
                elif hostile.mode == "same-page":  # the same records, a new nextCursor
                    trails = [{"id": i, "timestamp": stamp} for i in range(3)]
                    cursor = 1000 + n
                elif hostile.mode == "cycle":  # two pages in turn, a new nextCursor each time
                    first = 3 * (n % 2)
                    trails = [{"id": first + i, "timestamp": older[first + i]} for i in range(3)]
                    cursor = str(n)
                else:  # "stuck": new records forever, all in the same second
                    trails = [{"id": 1000 * n + i, "timestamp": stamp} for i in range(50)]
                    cursor = str(n)
                body = json.dumps({"trails": trails, "nextCursor": cursor}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.serve(Handler)


@pytest.mark.parametrize("mode, words, most", [
    ("same-cursor", "same nextCursor", 2),
    ("same-page", "same page", 2),
    ("cycle", "did not move back in time", 22),
    pytest.param("stuck", "events in one second", 201, marks=pytest.mark.slow),
])
def test_a_pagination_loop_exits_4_in_bounded_requests(
    tmp_path: Path, mode: str, words: str, most: int
) -> None:
    with Hostile(mode) as server:
        pipe = Pipe(tmp_path / "pipe", "PMAK-hostile-test-key", base_url=server.url,
                    page_size=50, rate_limit={"requests": 10_000, "per_seconds": 1},
                    backfill_start_time=format_instant(int(real_now().timestamp()) - DAY))
        result = pipe.run()
        assert result.code == 4, result.err
        (line,) = result.error_lines
        assert words in line
        assert server.count <= most

