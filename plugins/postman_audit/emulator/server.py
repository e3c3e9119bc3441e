"""``PostmanEmulator``: the emulated API's events, clock, server thread and answers."""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter, deque
from datetime import datetime, timedelta, timezone
from types import TracebackType
from typing import Any

from .config import EmulatorConfig
from .errors import (
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
from .query import LogsQuery
from .store import SPAN, Snapshot

__all__ = ["PostmanEmulator"]

_FIRST_ID = 555_000_000
_DAY = 86400

_Headers = list[tuple[str, str]]


def _utc(dt: datetime) -> datetime:
    return dt.replace(tzinfo=timezone.utc) if dt.tzinfo is None else dt.astimezone(timezone.utc)


def _num(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else repr(float(x))


class PostmanEmulator:
    """In-process fake of the Postman audit-log API; see ``postman_audit.emulator``."""

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
        self._snap = Snapshot()
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
        self._snap = self._snap.with_events([self._new_event(rng, ts) for ts in stamps])

    # ----------------------------------------------------------------- event store

    def _new_event(self, rng: random.Random, ts: int) -> tuple[int, dict[str, Any]]:
        self._max_id += rng.randint(1, 1500)
        return ts, make_event(rng, self._max_id, ts)

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
            newest = self._snap.keys[-1] // SPAN if self._snap.keys else None
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
            self._snap = self._snap.with_events(new)
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
            return 200, extra, LogsQuery(self.config, self._now).page(self._snap, query), fault
        except BadRequest as bad:
            return 400, extra, bad.body, fault


_ACTIONS_BODY = dumps([{"name": n, "displayName": d} for n, d in ACTIONS])
