"""The HTTP toolkit the host offers inputs: a client-side rate limiter, retries inside a
time budget, ``Retry-After`` parsing, bounded response bodies, and no redirects.

Inputs build a ``JsonHttpClient`` and call ``get``; API-specific meaning (which 400 is
which, what a quota looks like) comes in through ``on_error``. Every wait is said before
it starts, through the input's context (``InputContext.waiting``: the progress line, or a
log line for a long wait), and the first retry after a failure logs one WARNING.
"""

from __future__ import annotations

import collections
import email.utils
import logging
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from ._contract import LONG_WAIT_SECONDS, InputContext, RunStats, duration
from ._deadline import Deadline, transport_with_deadline
from ._exceptions import PluginHostError, ProtocolError, StopRequested, UpstreamError
from ._jsonl import loads

__all__ = ["JsonHttpClient", "RateLimiter", "RetryPolicy", "retry_after_seconds"]

log = logging.getLogger("plugin_host.http")


class RateLimiter:
    """At most ``requests`` calls in any ``per_seconds`` window (a sliding log, no bursts over)."""

    def __init__(self, requests: int, per_seconds: float, margin: float = 0.02) -> None:
        if requests < 1 or per_seconds <= 0:
            raise ValueError("a rate limit needs at least 1 request per positive window")
        self.requests = requests
        self.per_seconds = per_seconds
        self.window = per_seconds * (1.0 + margin)
        self._sent: collections.deque[float] = collections.deque(maxlen=requests)
        self._lock = threading.Lock()
        self._paused_until = 0.0

    def pause_until(self, monotonic_deadline: float) -> None:
        """Send nothing before ``monotonic_deadline`` (the server said the window is spent)."""
        with self._lock:
            self._paused_until = max(self._paused_until, monotonic_deadline)

    def delay(self) -> float:
        """Seconds to wait before the next call may be sent (0 when it may go now)."""
        now = time.monotonic()
        with self._lock:
            wait = self._paused_until - now
            if len(self._sent) >= self.requests:
                wait = max(wait, self._sent[0] + self.window - now)
            return max(0.0, wait)

    def reason(self) -> str:
        """Why the next call waits: the server's spent window, or this limit."""
        with self._lock:
            if self._paused_until > time.monotonic():
                return "the server's rate limit is spent (RateLimit-Remaining: 0)"
        return f"rate limit {self.requests}/{self.per_seconds:g} s"

    def acquire(
        self,
        stop: threading.Event | None = None,
        on_wait: Callable[[float, str], None] | None = None,
    ) -> float:
        """Wait for a slot (interrupted by ``stop``; each wait first told to ``on_wait`` with
        its reason), record the call, return seconds waited."""
        waited = 0.0
        while True:
            wait = self.delay()
            if wait <= 0:
                break
            if on_wait is not None:
                on_wait(wait, self.reason())
            if stop is not None and stop.wait(wait):
                break
            if stop is None:
                time.sleep(wait)
            waited += wait
        with self._lock:
            self._sent.append(time.monotonic())
        return waited


def retry_after_seconds(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """The wait a 429 or 503 asks for, from Retry-After, X-RateLimit-RetryAfter or
    RateLimit-Reset (seconds, an HTTP date, or epoch seconds); None when absent or not positive.
    """
    now = time.time() if now is None else now
    lowered = {k.lower(): v for k, v in headers.items()}
    for name in ("retry-after", "x-ratelimit-retryafter", "ratelimit-reset", "x-ratelimit-reset"):
        raw = lowered.get(name)
        if raw is None:
            continue
        raw = raw.strip()
        seconds: float | None
        try:
            seconds = float(raw)
            if seconds > 1_000_000_000:  # an epoch timestamp, not a delta
                seconds -= now
        except ValueError:
            try:
                parsed = email.utils.parsedate_to_datetime(raw)
                seconds = parsed.timestamp() - now
            except (TypeError, ValueError, IndexError):
                seconds = None
        if seconds is not None and seconds > 0:
            return seconds
    return None


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter, inside a total time budget per call."""

    budget_seconds: float = 120.0
    initial_backoff: float = 1.0
    max_backoff: float = 30.0
    max_rate_limit_wait: float = 300.0

    def backoff(self, attempt: int, rng: random.Random) -> float:
        """The jittered wait before retry number ``attempt`` (1-based)."""
        ceiling = min(self.max_backoff, self.initial_backoff * (2 ** (attempt - 1)))
        return rng.uniform(self.initial_backoff / 2, max(self.initial_backoff / 2, ceiling))


class _Retry(Exception):
    def __init__(self, reason: str, wait: float | None = None, rate_limited: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.wait = wait
        self.rate_limited = rate_limited


ErrorHook = Callable[[int, Any, httpx.Headers], "PluginHostError | None"]


class JsonHttpClient:
    """GET JSON from one host with rate limiting, retries and bounded bodies; never redirects."""

    def __init__(
        self,
        base_url: str,
        headers: Mapping[str, str],
        *,
        limiter: RateLimiter | None = None,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
        max_body_bytes: int = 32 * 1024 * 1024,
        stats: RunStats | None = None,
        stop: threading.Event | None = None,
        on_error: ErrorHook | None = None,
        describe: Callable[[int, Any], str] | None = None,
        seed: int | None = None,
        transport: httpx.BaseTransport | None = None,
        context: InputContext | None = None,
    ) -> None:
        self._deadline = Deadline()  # timeout bounds the whole exchange, not each read
        self._client = httpx.Client(
            base_url=base_url,
            headers=dict(headers),
            timeout=httpx.Timeout(timeout, connect=min(timeout, 10.0)),
            follow_redirects=False,
            transport=transport or transport_with_deadline(self._deadline),
        )
        self.host = httpx.URL(base_url).host
        base = self._client.base_url
        # the fast URL below is httpx's merge for a base without query or fragment
        self._prefix = None if base.query or base.fragment else str(base).rstrip("/") + "/"
        self.timeout = timeout
        self.limiter = limiter
        self.retry = retry or RetryPolicy()
        self.max_body_bytes = max_body_bytes
        self.context = context  # where waits are said; stats and stop default to its own
        self.stats = stats or (context.stats if context is not None else RunStats())
        self.stop = stop or (context.stop_event if context is not None else threading.Event())
        self.on_error = on_error
        self.describe = describe or (lambda status, body: f"HTTP {status}")
        self._rng = random.Random(seed)
        self._warned = False  # the first retry after a failure is a WARNING, later ones INFO

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

    def _sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.stop.wait(seconds)

    def _waiting(self, seconds: float, reason: str) -> None:
        """Say a wait before it starts: through the context, or a log line if it is long."""
        if self.context is not None:
            self.context.waiting(seconds, reason)
        elif seconds >= LONG_WAIT_SECONDS:
            log.warning("%s: waiting %s: %s", self.host, duration(seconds), reason)

    def _warn_retrying(self, reason: str, left: float) -> None:
        self._warned = True
        if self.context is not None:
            self.context.progress("")  # the warning on a line of its own, not after progress
        log.warning("%s: %s; retrying for at most %s more (retry budget %s)", self.host,
                    reason, duration(left), duration(self.retry.budget_seconds))

    def get(self, path: str, params: Mapping[str, Any] | None = None) -> Any:
        """The parsed JSON body of a 200 for GET ``path``; retries what retrying can fix."""
        started = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            if self.limiter is not None:
                must_wait = self.limiter.delay() > 0
                waited = self.limiter.acquire(self.stop, self._waiting if must_wait else None)
                if waited > 0.05:  # shorter ones are the pace between requests, not a wait
                    self.stats.rate_limit_waits += 1
                    self.stats.rate_limit_wait_seconds += waited
                if must_wait and self.stop.is_set():  # stopped while waiting: send nothing
                    raise StopRequested(f"{self.host}: stopping as asked") from None
            try:
                return self._attempt(path, params)
            except _Retry as retry:
                elapsed = time.monotonic() - started
                if retry.rate_limited:
                    self.stats.rate_limited_responses += 1
                wait = retry.wait if retry.wait is not None else self.retry.backoff(
                    attempt, self._rng)
                if retry.rate_limited and retry.wait is not None:
                    wait = min(wait, self.retry.max_rate_limit_wait) + self._rng.uniform(0, 0.1)
                if self.stop.is_set():
                    raise StopRequested(f"{self.host}: {retry.reason}; stopping as asked") from None
                if elapsed + wait > self.retry.budget_seconds:
                    raise UpstreamError(
                        f"{self.host}: {retry.reason}; gave up after {attempt} "
                        f"attempt{'s' if attempt > 1 else ''} in {elapsed:.0f}s (retry budget "
                        f"{self.retry.budget_seconds:g}s); the next run resumes from the last "
                        "delivered page"
                    ) from None
                self.stats.retries += 1
                left = self.retry.budget_seconds - elapsed
                if retry.rate_limited:
                    self.stats.rate_limit_waits += 1
                    self.stats.rate_limit_wait_seconds += wait
                    why = retry.reason
                else:
                    self.stats.retry_wait_seconds += wait
                    if not self._warned:
                        self._warn_retrying(retry.reason, left)
                    why = (f"retrying after {retry.reason} (attempt {attempt + 1}, up to "
                           f"{duration(left)} more)")
                log.info("%s: %s; retry %d in %.2fs", self.host, retry.reason, attempt, wait)
                self._waiting(wait, why)
                self._sleep(wait)
                if self.stop.is_set():
                    raise StopRequested(f"{self.host}: {retry.reason}; stopping as asked") from None

    def _attempt(self, path: str, params: Mapping[str, Any] | None) -> Any:
        self.stats.requests += 1
        deadline = self._deadline.at = time.monotonic() + self.timeout
        try:
            with self._client.stream("GET", self.url(path, params)) as response:
                body = self._read(response, deadline)
        except httpx.TimeoutException:
            raise _Retry("timed out") from None
        except httpx.TransportError as exc:
            if isinstance(exc, httpx.ConnectError) and "refused" in str(exc).lower():
                raise _Retry("connection refused") from None
            raise _Retry(f"connection failed ({type(exc).__name__})") from None
        finally:
            self._deadline.at = None
        status = response.status_code
        self._note_rate_headers(response.headers)
        if status == 200:
            try:
                return loads(body)
            except (ValueError, RecursionError):
                kind = response.headers.get("content-type", "unknown type").split(";")[0]
                raise _Retry(f"a 200 whose body is not JSON ({kind}, {len(body)} bytes)") from None
        parsed: Any = None
        try:
            parsed = loads(body) if body else None
        except (ValueError, RecursionError):
            parsed = None
        if self.on_error is not None:
            error = self.on_error(status, parsed, response.headers)
            if error is not None:
                raise error
        if 300 <= status < 400:
            target = httpx.URL(response.headers.get("location", "")).host or "another place"
            raise UpstreamError(
                f"{self.host} answered HTTP {status}, a redirect to {target}; redirects are "
                "not followed so the key stays with the configured host: check base_url"
            )
        if status == 429:
            raise _Retry("rate limited by the server (HTTP 429)",
                         retry_after_seconds(response.headers), True)
        if status == 503 or status == 408 or status >= 500:
            raise _Retry(f"HTTP {status}", retry_after_seconds(response.headers)
                         if status == 503 else None)
        raise UpstreamError(f"{self.host}: {self.describe(status, parsed)}")

    def url(self, path: str, params: Mapping[str, Any] | None = None) -> httpx.URL:
        """The URL of ``path`` under the base URL with ``params``, exactly as httpx would
        merge them, parsed once rather than three times."""
        if self._prefix is None:
            return self._client.build_request("GET", path, params=params).url
        return httpx.URL(self._prefix + path.lstrip("/"), params=params)

    def _read(self, response: httpx.Response, deadline: float) -> bytes:
        declared = response.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > self.max_body_bytes:
            raise ProtocolError(
                f"{self.host} sent a {int(declared)} byte response, over the "
                f"{self.max_body_bytes} byte limit"
            )
        chunks: list[bytes] = []
        size = 0
        for chunk in response.iter_bytes():
            size += len(chunk)
            if size > self.max_body_bytes:
                raise ProtocolError(
                    f"{self.host} sent a response over the {self.max_body_bytes} byte limit"
                )
            chunks.append(chunk)
            if time.monotonic() > deadline:  # a body dripped slower than the timeout
                raise httpx.ReadTimeout("the response took longer than the timeout")
        return b"".join(chunks)

    def _note_rate_headers(self, headers: httpx.Headers) -> None:
        remaining = headers.get("ratelimit-remaining") or headers.get("x-ratelimit-remaining")
        if self.limiter is None or remaining is None or remaining.strip() != "0":
            return
        wait = retry_after_seconds({"ratelimit-reset": headers.get("ratelimit-reset", "")})
        if wait is not None:
            self.limiter.pause_until(time.monotonic() + min(wait, self.retry.max_rate_limit_wait))
