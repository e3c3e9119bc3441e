"""``PostmanEmulator``: the emulated API's events, clock, server thread and answers."""

from __future__ import annotations

import bisect
import math
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from types import TracebackType
from typing import Any

from .config import MAX_LIMIT, EmulatorConfig
from .errors import (
    INVALID_ACTION,
    INVALID_CURSOR,
    NOT_FOUND,
    QUOTA_EXHAUSTED,
    RATE_LIMITED,
    SERVER_ERROR,
    TEXT_503,
    BadRequest,
    error_body,
    forbidden_body,
)
from .fakedata import ACTIONS, dumps, generate_timestamps, make_event
from .http import EmulatorHandler, EmulatorServer

__all__ = ["PostmanEmulator"]

_SPAN = 1 << 40  # composite sort key: timestamp * _SPAN + id
_FIRST_ID = 555_000_000
_DAY = 86400

_RE_DATE = re.compile(r"(\d{4})-(\d{2})-(\d{2})\Z")
_RE_DATETIME = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})?\Z"
)
_RE_ACTION = re.compile(r"[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)+\Z")
_RE_INT = re.compile(r"-?\d{1,18}\Z")

_Headers = list[tuple[str, str]]


@dataclass(frozen=True)
class _Snapshot:
    """Immutable view of the event store; replaced wholesale (copy-on-write) on additions."""

    keys: list[int] = field(default_factory=list)
    ids: list[int] = field(default_factory=list)
    rows: list[bytes] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    people: list[tuple[int, ...]] = field(default_factory=list)
    by_id: dict[int, int] = field(default_factory=dict)


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


def _people(event: dict[str, Any]) -> tuple[int, ...]:
    data = event["data"]
    return tuple(p["id"] for p in (data.get("actor"), data.get("user")) if p)


class PostmanEmulator:
    """In-process fake of the Postman audit-log API; see the module docstring."""

    def __init__(
        self, config: EmulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        """Generate the events (deterministically from ``config.seed``); does not bind yet."""
        self.config = config if config is not None else EmulatorConfig()
        self.config.validate()
        self._host, self._port = host, port
        self._now = _utc(self.config.now or datetime.now(timezone.utc))
        self._write_lock = threading.Lock()
        self._stats_lock = threading.Lock()
        self._add_rng = random.Random(f"add:{self.config.seed}")
        self._fault_rng = random.Random(f"fault:{self.config.seed}")
        self.request_count = 0
        self.status_counts: Counter[int] = Counter()
        self.fault_counts: Counter[str] = Counter()
        self.requests_log: deque[tuple[str, dict[str, str]]] = deque(maxlen=10000)
        self.quota_used = 0
        self._rate: dict[str, tuple[int, int]] = {}
        self._t0 = time.monotonic()
        self._server: EmulatorServer | None = None
        self._thread: threading.Thread | None = None
        self._snap = _Snapshot()
        self._max_id = _FIRST_ID
        rng = random.Random(f"gen:{self.config.seed}")
        end = int(self._now.timestamp())
        stamps = generate_timestamps(
            rng,
            self.config.events,
            end - self.config.days * _DAY,
            end,
            self.config.same_second_burst,
        )
        self._max_id += rng.randrange(100000)
        self._append([self._new_event(rng, ts) for ts in stamps])

    # ----------------------------------------------------------------- event store

    def _new_event(self, rng: random.Random, ts: int) -> tuple[int, dict[str, Any]]:
        self._max_id += rng.randint(1, 1500)
        return ts, make_event(rng, self._max_id, ts)

    def _append(self, new: list[tuple[int, dict[str, Any]]]) -> None:
        """Publish a new snapshot holding the old events plus ``new`` (caller serializes)."""
        old = self._snap
        entries = [
            (ts * _SPAN + e["id"], e["id"], dumps(e), e, e["action"], _people(e)) for ts, e in new
        ]
        entries.sort(key=lambda x: x[0])
        if old.keys and entries and entries[0][0] < old.keys[-1]:
            merged = sorted(
                [
                    *zip(
                        old.keys,
                        old.ids,
                        old.rows,
                        old.events,
                        old.actions,
                        old.people,
                        strict=True,
                    ),
                    *entries,
                ],
                key=lambda x: x[0],
            )
            cols: list[list[Any]] = [list(c) for c in zip(*merged, strict=True)]
        else:
            cols = [
                list(c) for c in (old.keys, old.ids, old.rows, old.events, old.actions, old.people)
            ]
            for entry in entries:
                for col, value in zip(cols, entry, strict=True):
                    col.append(value)
        by_id = dict(old.by_id)
        by_id.update((e[1], e[0]) for e in entries)
        keys, ids, rows, events, actions, people = cols
        self._snap = _Snapshot(keys, ids, rows, events, actions, people, by_id)

    @property
    def events(self) -> list[dict[str, Any]]:
        """All events, ascending by (timestamp, id) (a fresh list; do not mutate the dicts)."""
        return list(self._snap.events)

    @property
    def now(self) -> datetime:
        """The emulated current time (UTC)."""
        return self._now

    def set_now(self, dt: datetime) -> None:
        """Set the emulated current time (naive means UTC)."""
        self._now = _utc(dt)

    def advance(self, delta: timedelta) -> None:
        """Move the emulated current time by ``delta``."""
        self._now += delta

    def add_events(
        self, n: int, *, at: datetime | None = None, late_by: timedelta | None = None
    ) -> list[dict[str, Any]]:
        """Add ``n`` events with new higher ids and return them.

        Default: timestamps from ``max(now, newest + 1 s)`` on, with same-second bursts; ``now``
        moves forward to the last one. ``at``: all at that second. ``late_by``: all at
        ``newest - late_by`` (late arrivals, visible only from now on). Thread-safe.
        """
        if at is not None and late_by is not None:
            raise ValueError("give at or late_by, not both")
        if n <= 0:
            return []
        with self._write_lock:
            rng = self._add_rng
            newest = self._snap.keys[-1] // _SPAN if self._snap.keys else None
            if at is not None:
                stamps = [int(_utc(at).timestamp())] * n
            elif late_by is not None:
                base = newest if newest is not None else int(self._now.timestamp())
                stamps = [base - int(late_by.total_seconds())] * n
            else:
                start = int(self._now.timestamp())
                if newest is not None:
                    start = max(start, newest + 1)
                burst = max(1, self.config.same_second_burst)
                stamps, t = [], start
                while len(stamps) < n:
                    stamps.extend([t] * rng.randint(1, burst))
                    t += rng.randint(1, 3)
                del stamps[n:]
            new = [self._new_event(rng, ts) for ts in stamps]
            self._append(new)
            if at is None and late_by is None and stamps:
                last = datetime.fromtimestamp(stamps[-1], timezone.utc)
                self._now = max(self._now, last)
            return [e for _, e in new]

    # ----------------------------------------------------------------- lifecycle

    def start(self) -> PostmanEmulator:
        """Bind and serve in a daemon thread; returns self."""
        if self._server is not None:
            return self
        server = EmulatorServer((self._host, self._port), EmulatorHandler)
        server.emulator = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="postman-emulator",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and drop any open keep-alive connections."""
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.close_connections()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> PostmanEmulator:
        """Start (if needed) and return self."""
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Stop."""
        self.stop()

    @property
    def port(self) -> int:
        """The bound port (after start())."""
        if self._server is None:
            raise RuntimeError("emulator not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT`` (after start())."""
        return f"http://{self._host}:{self.port}"

    # ----------------------------------------------------------------- request handling

    def _error(
        self, status: int, legacy: tuple[str, str], problem: tuple[str, str, str]
    ) -> tuple[int, dict[str, Any]]:
        return status, error_body(self.config.error_style, status, legacy, problem)

    def _bad_param(self, message: str) -> BadRequest:
        _, body = self._error(
            400, ("invalidParamsError", message), ("bad-request", "Malformed request", message)
        )
        return BadRequest(body)

    def _auth(
        self, headers: dict[str, str], query: dict[str, str]
    ) -> tuple[int, dict[str, Any]] | None:
        key = headers.get("x-api-key") or query.get("apikey")
        if key == self.config.api_key:
            return None
        legacy = (
            "AuthenticationError",
            "Invalid API Key. Every request requires a valid API Key to be sent.",
        )
        if not key:
            detail = "An API key must be provided in the request header or query string"
        else:
            detail = "A valid API key must be provided in the request header."
        return self._error(401, legacy, ("unauthorized", "Unauthorized", detail))

    def _limits(self, headers: _Headers) -> tuple[int, dict[str, Any]] | None:
        """Quota and rate-limit accounting; fills ``headers``; returns a 429 or None."""
        cfg = self.config
        with self._stats_lock:
            self.quota_used += 1
            used = self.quota_used
            count = reset = 0.0
            window = max(cfg.rate_window, 1e-3)
            if cfg.rate_limit is not None:
                elapsed = time.monotonic() - self._t0
                idx = int(elapsed // window)
                w_idx, n = self._rate.get(cfg.api_key, (idx, 0))
                n = n + 1 if w_idx == idx else 1
                self._rate[cfg.api_key] = (idx, n)
                count, reset = n, (idx + 1) * window - elapsed
        if cfg.quota is not None:
            left = max(0, cfg.quota - used)
            headers += [
                ("RateLimit-Limit-Month", str(cfg.quota)),
                ("RateLimit-Remaining-Month", str(left)),
                ("X-RateLimit-Limit-Month", str(cfg.quota)),
                ("X-RateLimit-Remaining-Month", str(left)),
            ]
            if used > cfg.quota:
                return 429, QUOTA_EXHAUSTED
        if cfg.rate_limit is None:
            return None
        limit = cfg.rate_limit
        remaining = max(0, limit - int(count))
        reset_int = str(max(1, math.ceil(reset)))
        # The reset in whole seconds of the real 60-second window: a window scaled down
        # keeps that relative precision (a 60th of the window), not a whole second.
        unit = min(1.0, window / 60)
        reset_units = _num(round(max(1, math.ceil(round(reset / unit, 6))) * unit, 6))
        headers += [
            ("RateLimit-Policy", f"{limit};w={_num(cfg.rate_window)}"),
            ("RateLimit", f"limit={limit}, remaining={remaining}, reset={reset_units}"),
            ("RateLimit-Limit", str(limit)),
            ("X-RateLimit-Limit", str(limit)),
            ("RateLimit-Remaining", str(remaining)),
            ("X-RateLimit-Remaining", str(remaining)),
            ("X-RateLimit-Reset", reset_units),
        ]
        if count <= limit:
            headers.append(("RateLimit-Reset", reset_units))
            return None
        precise = f"{max(reset, 0.001):.3f}".rstrip("0").rstrip(".")
        headers += [
            ("RateLimit-Reset", precise),
            ("Retry-After", reset_int),
            ("X-RateLimit-RetryAfter", reset_int),
        ]
        return self._error(429, *RATE_LIMITED)

    def _pick_fault(self) -> str | None:
        cfg = self.config
        if cfg.fault_rate <= 0 or not cfg.faults:
            return None
        with self._stats_lock:
            if self._fault_rng.random() >= cfg.fault_rate:
                return None
            kind = self._fault_rng.choice(cfg.faults)
            self.fault_counts[kind] += 1
        return kind

    def _bound(self, value: str, name: str, upper: bool) -> int:
        """Epoch-second bound (inclusive) for since (lower) or until (upper)."""
        cfg = self.config
        exclusive = cfg.bounds == "exclusive"
        fmt = "YYYY-MM-DD" if cfg.since_mode == "date" else "YYYY-MM-DD or an RFC 3339 date-time"
        m = _RE_DATE.match(value)
        try:
            if m:
                day = date(int(m[1]), int(m[2]), int(m[3]))
                start = int(datetime(day.year, day.month, day.day, tzinfo=timezone.utc).timestamp())
                if name == "since":
                    self._check_retention(day)
                if upper:
                    return start - 1 if exclusive else start + _DAY - 1
                return start + _DAY if exclusive else start
            m = _RE_DATETIME.match(value) if cfg.since_mode == "datetime" else None
            if not m:
                raise ValueError(value)
            frac = int((m[7] or "0")[:6].ljust(6, "0"))
            tz = timezone.utc
            if m[8] and m[8] not in "Zz":
                sign = -1 if m[8][0] == "-" else 1
                tz = timezone(sign * timedelta(hours=int(m[8][1:3]), minutes=int(m[8][4:6])))
            dt = datetime(
                int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]), int(m[6]), frac, tzinfo=tz
            )
        except ValueError:
            raise self._bad_param(f"Invalid '{name}': expected {fmt}.") from None
        if name == "since":
            self._check_retention(dt.astimezone(timezone.utc).date())
        secs = int(dt.timestamp() // 1)
        whole = frac == 0
        if upper:  # ts <= until (inclusive) / ts < until (exclusive)
            return secs if not exclusive else (secs - 1 if whole else secs)
        return (secs if whole else secs + 1) if not exclusive else secs + 1

    def _floor_day(self) -> date:
        return (self._now - timedelta(days=self.config.retention_days)).date()

    def _check_retention(self, day: date) -> None:
        floor = self._floor_day()
        if day < floor:
            raise self._bad_param(
                f"Invalid 'since': date cannot be older than {floor.isoformat()}."
            )

    def _logs(self, q: dict[str, str]) -> bytes:
        """The 200 body of GET /audit/logs, or raise BadRequest."""
        cfg = self.config
        action = q.get("action")
        if action is not None and not _RE_ACTION.match(action):
            raise BadRequest(INVALID_ACTION)
        user_id = None
        if "userId" in q:
            if not _RE_INT.match(q["userId"]):
                raise self._bad_param("Invalid 'userId': expected an integer.")
            user_id = int(q["userId"])
        limit = cfg.default_limit
        if "limit" in q:
            if not _RE_INT.match(q["limit"]) or int(q["limit"]) < 1:
                raise self._bad_param("Invalid 'limit': expected a positive integer.")
            limit = int(q["limit"])
            if limit > MAX_LIMIT:
                if cfg.limit_over_max == "reject":
                    raise self._bad_param(
                        f"Invalid 'limit': must be less than or equal to {MAX_LIMIT}."
                    )
                limit = MAX_LIMIT
        order = (q.get("orderBy") or q.get("order_by") or "desc").lower()
        if order not in ("asc", "desc"):
            raise self._bad_param("Invalid 'orderBy': expected 'asc' or 'desc'.")
        floor = self._floor_day()
        lo_ts = int(datetime(floor.year, floor.month, floor.day, tzinfo=timezone.utc).timestamp())
        hi_ts = 1 << 40
        if "since" in q:
            lo_ts = max(lo_ts, self._bound(q["since"], "since", upper=False))
        if "until" in q:
            hi_ts = self._bound(q["until"], "until", upper=True)
        snap = self._snap
        cursor_key = None
        if "cursor" in q:
            raw = q["cursor"]
            cid = int(raw) if _RE_INT.match(raw) else None
            cursor_key = snap.by_id.get(cid) if cid is not None else None
            if cursor_key is None:
                raise BadRequest(INVALID_CURSOR)
        keys = snap.keys
        lo = bisect.bisect_left(keys, lo_ts * _SPAN)
        hi = bisect.bisect_right(keys, hi_ts * _SPAN + _SPAN - 1)
        pred: Callable[[int], bool] | None = None
        if action is not None or user_id is not None:
            acts, ppl = snap.actions, snap.people

            def match(i: int) -> bool:
                return (action is None or acts[i] == action) and (
                    user_id is None or user_id in ppl[i]
                )

            pred = match

        picked: list[int]
        nxt: int | None = None
        if order == "asc":
            start = lo if cursor_key is None else max(lo, bisect.bisect_left(keys, cursor_key))
            if pred is None:
                end = min(hi, start + limit)
                rows = snap.rows[start:end] if start < end else []
                nxt = snap.ids[end] if end < hi else None
            else:
                picked = self._scan(range(start, hi), pred, limit + 1)
                rows, nxt = self._split(snap, picked, limit)
        else:
            top = hi - 1
            if cursor_key is not None:
                top = min(top, bisect.bisect_left(keys, cursor_key))
            if pred is None:
                bottom = max(lo, top - limit + 1)
                rows = snap.rows[bottom : top + 1][::-1] if bottom <= top else []
                nxt = snap.ids[bottom - 1] if bottom - 1 >= lo and bottom <= top else None
            else:
                picked = self._scan(range(top, lo - 1, -1), pred, limit + 1)
                rows, nxt = self._split(snap, picked, limit)
        return b'{"trails":[' + b",".join(rows) + b"]" + self._cursor_bytes(nxt) + b"}"

    @staticmethod
    def _scan(indexes: range, pred: Callable[[int], bool], want: int) -> list[int]:
        out: list[int] = []
        for i in indexes:
            if pred(i):
                out.append(i)
                if len(out) == want:
                    break
        return out

    @staticmethod
    def _split(snap: _Snapshot, picked: list[int], limit: int) -> tuple[list[bytes], int | None]:
        nxt = snap.ids[picked[limit]] if len(picked) > limit else None
        return [snap.rows[i] for i in picked[:limit]], nxt

    def _cursor_bytes(self, nxt: int | None) -> bytes:
        if nxt is None:
            return {"missing": b"", "null": b',"nextCursor":null', "empty": b',"nextCursor":""'}[
                self.config.end_signal
            ]
        if self.config.cursor_style == "string":
            return b',"nextCursor":"%d"' % nxt
        return b',"nextCursor":%d' % nxt

    def _respond(
        self, path: str, query: dict[str, str], headers: dict[str, str]
    ) -> tuple[int, _Headers, bytes | dict[str, Any], str | None]:
        """Compute (status, extra headers, body, fault) for one GET."""
        self.requests_log.append((path, query))
        query = {k: v for k, v in query.items() if v}  # empty values count as absent
        with self._stats_lock:
            self.request_count += 1
        route = path.rstrip("/") or "/"
        if route not in ("/audit/logs", "/audit-actions"):
            return 404, [], NOT_FOUND, None
        denied = self._auth(headers, query)
        if denied:
            return denied[0], [], denied[1], None
        extra: _Headers = []
        limited = self._limits(extra)
        if limited:
            return limited[0], extra, limited[1], None
        fault = self._pick_fault()
        if fault == "500":
            status, body = self._error(500, *SERVER_ERROR)
            return status, extra, body, fault
        if fault in ("503", "reset"):
            return 503, extra, TEXT_503, fault
        if fault == "delay":
            time.sleep(self.config.delay_seconds)
        if self.config.forbidden:
            what = "team Audit logs" if route == "/audit/logs" else "audit actions"
            return 403, extra, forbidden_body(what), fault
        if route == "/audit-actions":
            return 200, extra, _ACTIONS_BODY, fault
        try:
            return 200, extra, self._logs(query), fault
        except BadRequest as bad:
            return 400, extra, bad.body, fault


_ACTIONS_BODY = dumps([{"name": n, "displayName": d} for n, d in ACTIONS])
