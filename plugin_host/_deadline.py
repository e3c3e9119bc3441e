"""One deadline for a whole HTTP exchange, connect to last byte.

httpx's timeouts bound each read and write, so a server that drips its status line and
headers a byte at a time, each inside the read timeout, would hold a request forever. Here
every connect, read and write of a connection gets the time left before the current
request's deadline, and none at all once it has passed.
"""

from __future__ import annotations

import functools
import ssl
import time
from collections.abc import Iterable
from typing import Any

import httpcore
import httpx

__all__ = ["Deadline", "transport_with_deadline"]


class Deadline:
    """The monotonic instant by which the request in flight must be over (None: no limit)."""

    def __init__(self) -> None:
        self.at: float | None = None

    def bound(self, timeout: float | None, late: type[Exception]) -> float | None:
        """``timeout`` cut to the time left; raise ``late`` when there is none."""
        if self.at is None:
            return timeout
        left = self.at - time.monotonic()
        if left <= 0:
            raise late("the response took longer than the timeout")
        return left if timeout is None else min(timeout, left)


class _Stream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, deadline: Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, self._deadline.bound(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, self._deadline.bound(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = self._deadline.bound(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.start_tls(ssl_context, server_hostname, bounded),
                       self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend, deadline: Deadline) -> None:
        self._inner = inner
        self._deadline = deadline

    def connect_tcp(
        self, host: str, port: int, timeout: float | None = None,
        local_address: str | None = None, socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = self._deadline.bound(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.connect_tcp(host, port, bounded, local_address,
                                               socket_options), self._deadline)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        bounded = self._deadline.bound(timeout, httpcore.ConnectTimeout)
        return _Stream(self._inner.connect_unix_socket(path, bounded, socket_options),
                       self._deadline)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


@functools.lru_cache(maxsize=1)
def _ssl_context() -> ssl.SSLContext:
    """httpx's default TLS context (certifi's CAs, or SSL_CERT_FILE/SSL_CERT_DIR), made once
    per process: loading the CA bundle is about 30 ms of CPU, paid by every client
    otherwise (every sync of a worker). A context is safe to share between threads."""
    return httpx.create_ssl_context()


def transport_with_deadline(deadline: Deadline) -> httpx.HTTPTransport:
    """httpx's own transport (same defaults), every connection bounded by ``deadline``."""
    transport = httpx.HTTPTransport(verify=_ssl_context())
    pool: Any = transport._pool  # httpcore takes a network backend only at construction:
    pool._network_backend = _Backend(pool._network_backend, deadline)  # wrap the one it made
    return transport
