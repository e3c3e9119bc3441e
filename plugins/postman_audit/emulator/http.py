"""The emulator's HTTP layer: a threading server that remembers its connections, and a
handler that writes each response (headers and body) in one send, with Nagle off."""

from __future__ import annotations

import contextlib
import email.message
import socket
import socketserver
import struct
import threading
import time
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from .fakedata import dumps

if TYPE_CHECKING:
    from .server import PostmanEmulator

__all__ = ["EmulatorHandler", "EmulatorServer"]

_HTML_PAGE = (
    b"<!DOCTYPE html>\n<html><head><title>502 Bad Gateway</title></head>\n"
    b"<body><center><h1>502 Bad Gateway</h1></center><hr><center>cloudflare</center>"
    b"</body></html>\n"
)
_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_CT_JSON = "application/json; charset=utf-8"
_CT_PROBLEM = "application/problem+json; charset=utf-8"
_MAX_HEADERS = 100
_NO_HEADERS = email.message.Message()


class EmulatorServer(ThreadingHTTPServer):
    """Threading HTTP server that remembers its open connections."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128
    emulator: PostmanEmulator

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        """Bind and listen."""
        self.open_connections: set[socket.socket] = set()
        self.conn_lock = threading.Lock()
        super().__init__(address, handler)

    def server_bind(self) -> None:
        """Bind without HTTPServer's reverse-DNS lookup (getfqdn can stall)."""
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name, self.server_port = str(host), int(port)

    def close_connections(self) -> None:
        """Shut down every open client connection."""
        with self.conn_lock:
            conns = list(self.open_connections)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)


class EmulatorHandler(BaseHTTPRequestHandler):
    """One keep-alive connection; every response goes out in a single sendall."""

    protocol_version = "HTTP/1.1"
    server_version = "postman-emulator"
    sys_version = ""
    server: EmulatorServer
    fields: dict[str, str]  # request headers, lower-cased names
    raw_requestline: bytes
    _date_cache: tuple[int, str] = (0, "")

    def setup(self) -> None:
        """Set TCP_NODELAY and register the connection."""
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self.server.conn_lock:
            self.server.open_connections.add(self.connection)

    def finish(self) -> None:
        """Unregister the connection."""
        with self.server.conn_lock:
            self.server.open_connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        """Silent unless ``config.log_requests``."""
        if self.server.emulator.config.log_requests:
            super().log_message(format, *args)

    def parse_request(self) -> bool:
        """Parse a plain ``GET … HTTP/1.x`` quickly; anything else goes to the stdlib parser."""
        parts = self.raw_requestline.split()
        if len(parts) != 3 or parts[0] != b"GET" or parts[2] not in (b"HTTP/1.1", b"HTTP/1.0"):
            if not super().parse_request():
                return False
            self.fields = {k.lower(): v for k, v in self.headers.items()}
            return True
        fields: dict[str, str] = {}
        for _ in range(_MAX_HEADERS):
            line = self.rfile.readline(65537)
            if line in (b"\r\n", b"\n", b""):
                break
            name, sep, value = line.partition(b":")
            if sep:
                fields[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        else:
            self.close_connection = True
            return False
        self.command, self.request_version = "GET", parts[2].decode()
        self.path = parts[1].decode("latin-1")
        self.requestline = self.raw_requestline.rstrip(b"\r\n").decode("latin-1")
        self.headers = _NO_HEADERS
        self.fields = fields
        conn = fields.get("connection", "").lower()
        self.close_connection = conn == "close" if parts[2] == b"HTTP/1.1" else conn != "keep-alive"
        return True

    def _date(self) -> str:
        now = int(time.time())
        cached = EmulatorHandler._date_cache
        if cached[0] != now:
            cached = (now, formatdate(now, usegmt=True))
            EmulatorHandler._date_cache = cached
        return cached[1]

    def do_GET(self) -> None:
        """Serve one GET."""
        emu = self.server.emulator
        length = self.fields.get("content-length")
        if length and length.isdigit():
            self.rfile.read(int(length))
        parts = urlsplit(self.path)
        query: dict[str, str] = {}
        for k, v in parse_qsl(parts.query, keep_blank_values=True):
            query.setdefault(k, v)
        status, extra, body, fault = emu._respond(parts.path, query, self.fields)
        if fault == "reset":
            self._reset()
            return
        if isinstance(body, dict):
            ctype = _CT_PROBLEM if "type" in body else _CT_JSON
            payload = dumps(body)
        else:
            ctype = "text/plain; charset=utf-8" if fault == "503" else _CT_JSON
            payload = body
        if fault == "html":
            status, ctype, payload = 200, "text/html; charset=utf-8", _HTML_PAGE
        declared = len(payload)
        if fault == "truncate":
            payload = payload[: declared // 2]
            self.close_connection = True
        head = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}",
            f"Date: {self._date()}",
            f"Content-Type: {ctype}",
            f"Content-Length: {declared}",
        ]
        head += [f"{k}: {v}" for k, v in extra]
        if self.close_connection:
            head.append("Connection: close")
        data = ("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + payload
        with emu._stats_lock:
            emu.status_counts[status] += 1
        if emu.config.log_requests:
            self.log_request(status, declared)
        try:
            self.connection.sendall(data)
        except OSError:
            self.close_connection = True

    def _reset(self) -> None:
        """Abort the connection with a TCP RST and no response."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            with self.server.conn_lock:
                self.server.open_connections.discard(self.connection)
            socket.close(self.connection.detach())
        except OSError:
            pass
