"""A deliberately hostile HTTP server on loopback, for the reliability tests.

Raw sockets and one thread per connection, so a test can make it do what a well-behaved
server never would: accept and never answer, reset, drip a body one byte at a time, send a
100 MB page, declare one length and send another, redirect elsewhere. Every request it
receives is recorded (method, path, query, headers) so a test can tell what a client sent.

    with HostileServer(lambda req: Reply.json({"trails": []})) as server:
        server.url            # http://127.0.0.1:PORT
        server.requests       # [Request(...), ...]

A behaviour is a function of the :class:`Request` that returns an action: :class:`Reply`,
:class:`Silence`, :class:`Reset`, :class:`Drip` or :class:`Stream`.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import socket
import struct
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

__all__ = [
    "Drip",
    "HostileServer",
    "Reply",
    "Request",
    "Reset",
    "Silence",
    "Stream",
    "event",
    "paged_api",
]

_REASONS = {200: "OK", 301: "Moved Permanently", 302: "Found", 303: "See Other",
            307: "Temporary Redirect", 308: "Permanent Redirect", 400: "Bad Request",
            401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


@dataclass(frozen=True)
class Request:
    """One request as received: header names lower-cased, the first value of each query key."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    raw: bytes


@dataclass(frozen=True)
class Reply:
    """An answer. ``declared`` overrides Content-Length (a lie); ``close`` ends the connection."""

    status: int = 200
    body: bytes = b""
    content_type: str = "application/json"
    headers: Sequence[tuple[str, str]] = ()
    declared: int | None = None
    close: bool = False

    @classmethod
    def json(cls, data: Any, status: int = 200, **kwargs: Any) -> Reply:
        """A JSON answer."""
        return cls(status, json.dumps(data).encode("utf-8"), **kwargs)


@dataclass(frozen=True)
class Silence:
    """Accept the request and never answer (the connection stays open until the server stops)."""


@dataclass(frozen=True)
class Reset:
    """Abort the connection with a TCP RST, before any answer."""


@dataclass(frozen=True)
class Drip:
    """Send the status line and headers, then ``body`` ``step`` bytes every ``every`` seconds."""

    body: bytes
    every: float = 0.2
    step: int = 1
    head_too: bool = False  # drip the status line and headers as well


@dataclass(frozen=True)
class Stream:
    """A 200 of ``size`` bytes (a JSON page that never ends), with or without Content-Length."""

    size: int
    declare: bool = True
    chunk: int = 1 << 16


Action = Reply | Silence | Reset | Drip | Stream
Behaviour = Callable[[Request], Action]


@dataclass
class HostileServer:
    """The server. ``behaviour`` chooses each answer; ``host`` may be any loopback address."""

    behaviour: Behaviour
    host: str = "127.0.0.1"
    requests: list[Request] = field(default_factory=list)
    actions: Counter[str] = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._sock: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []

    # -- lifecycle --------------------------------------------------------------------------

    def start(self) -> HostileServer:
        """Bind on a free port and serve in daemon threads."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, 0))
        sock.listen(64)
        sock.settimeout(0.1)
        self._sock = sock
        thread = threading.Thread(target=self._accept_loop, name="hostile-accept", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop accepting, drop every connection (silent ones included)."""
        self._stop.set()
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in self._threads:
            thread.join(timeout=5)
        if self._sock is not None:
            self._sock.close()

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._sock is not None, "not started"
        return int(self._sock.getsockname()[1])

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- serving ----------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self._conns.add(conn)
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _read_request(self, conn: socket.socket, pending: bytearray) -> Request | None:
        conn.settimeout(0.1)
        while b"\r\n\r\n" not in pending:
            if self._stop.is_set() or len(pending) > 65536:
                return None
            try:
                data = conn.recv(65536)
            except TimeoutError:
                continue
            except OSError:
                return None
            if not data:
                return None
            pending += data
        head, _, rest = bytes(pending).partition(b"\r\n\r\n")
        pending[:] = rest
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = (lines[0].split(" ", 2) + ["", ""])[:3]
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        parts = urlsplit(target)
        query: dict[str, str] = {}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            query.setdefault(key, value)
        return Request(method, parts.path, query, headers, head)

    def _serve(self, conn: socket.socket) -> None:
        pending = bytearray()
        try:
            while not self._stop.is_set():
                request = self._read_request(conn, pending)
                if request is None:
                    return
                with self._lock:
                    self.requests.append(request)
                action = self.behaviour(request)
                with self._lock:
                    self.actions[type(action).__name__] += 1
                if not self._act(conn, action):
                    return
        finally:
            with self._lock:
                self._conns.discard(conn)
            with contextlib.suppress(OSError):
                conn.close()

    def _act(self, conn: socket.socket, action: Action) -> bool:
        """Carry out one action; False when the connection is finished."""
        conn.settimeout(None)
        try:
            if isinstance(action, Silence):
                self._stop.wait()
                return False
            if isinstance(action, Reset):
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                return False
            if isinstance(action, Reply):
                length = len(action.body) if action.declared is None else action.declared
                head = _head(action.status, action.content_type, length, action.headers,
                             action.close)
                conn.sendall(head + action.body)
                return not action.close and action.declared is None
            if isinstance(action, Drip):
                head = _head(200, "application/json", len(action.body), (), True)
                data = head + action.body if action.head_too else action.body
                if not action.head_too:
                    conn.sendall(head)
                for i in range(0, len(data), action.step):
                    if self._stop.wait(action.every):
                        return False
                    conn.sendall(data[i:i + action.step])
                return False
            if isinstance(action, Stream):
                extra: list[tuple[str, str]] = []
                head = _head(200, "application/json", action.size if action.declare else None,
                             extra, True)
                conn.sendall(head)
                sent = 0
                for piece in _endless_page(action.chunk):
                    if sent >= action.size or self._stop.is_set():
                        break
                    piece = piece[: action.size - sent]
                    conn.sendall(piece)
                    sent += len(piece)
                return False
        except OSError:
            return False
        raise TypeError(f"unknown action {action!r}")


def _head(status: int, ctype: str, length: int | None, headers: Sequence[tuple[str, str]],
          close: bool) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Whatever')}", f"Content-Type: {ctype}"]
    if length is not None:
        lines.append(f"Content-Length: {length}")
    lines += [f"{k}: {v}" for k, v in headers]
    if close:
        lines.append("Connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _endless_page(chunk: int) -> Iterator[bytes]:
    """``{"trails":[{...},{...},...`` forever, in pieces of about ``chunk`` bytes."""
    yield b'{"trails":['
    one = b'{"id":1,"timestamp":"2026-01-01T00:00:00.000Z","action":"user.login","data":{}},'
    piece = one * max(1, chunk // len(one))
    for _ in itertools.count():
        yield piece


# -- a scripted Postman-like API ---------------------------------------------------------------


def event(ident: Any, timestamp: str | None, /, **extra: Any) -> dict[str, Any]:
    """A Postman-looking audit event (``timestamp`` None leaves the field out)."""
    record: dict[str, Any] = {"id": ident, "action": "user.login", "message": f"event {ident}"}
    if timestamp is not None:
        record["timestamp"] = timestamp
    record.update(extra)
    return record


Page = tuple[Sequence[Any], Any]


def paged_api(pages: Mapping[Any, Page] | Callable[[Any], Page], *,
              require_key: str | None = None) -> Behaviour:
    """A behaviour serving ``{"trails": records, "nextCursor": next}`` by the ``cursor`` query
    value (None for the first page); ``next`` None leaves nextCursor out. 401 without the key."""

    def behave(request: Request) -> Action:
        if require_key is not None and request.headers.get("x-api-key") != require_key:
            return Reply.json({"error": {"name": "AuthenticationError",
                                         "message": "Invalid API Key."}}, 401)
        cursor = request.query.get("cursor")
        page = pages(cursor) if callable(pages) else pages.get(cursor)
        if page is None:
            return Reply.json({"type": "bad-request", "title": "Malformed request",
                               "detail": "Invalid cursor", "status": 400}, 400)
        records, nxt = page
        body: dict[str, Any] = {"trails": list(records)}
        if nxt is not None:
            body["nextCursor"] = nxt
        return Reply.json(body)

    return behave
