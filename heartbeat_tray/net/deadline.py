"""A deadline for a whole HTTP exchange, from connect to the last byte of the answer.

httpx's timeouts apply to each connect, read and write, not to the request: a server that
trickles one byte a second holds a request forever (measured: 36 s against a 10 s timeout).
The transport here remembers its open sockets; a watchdog shuts them down when the deadline
passes, which wakes the blocked read at once. The request then fails as a timeout.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
from collections.abc import Iterable, Iterator
from typing import Any

import httpcore
import httpx


class _TrackedStream(httpcore.NetworkStream):
    def __init__(self, inner: httpcore.NetworkStream, live: _Live) -> None:
        self._inner = inner
        self._live = live
        live.add(self)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, timeout)

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, timeout)

    def close(self) -> None:
        self._live.discard(self)
        self._inner.close()

    def start_tls(
        self,
        ssl_context: ssl.SSLContext,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        self._live.discard(self)
        return _TrackedStream(
            self._inner.start_tls(ssl_context, server_hostname, timeout), self._live
        )

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)

    def abort(self) -> None:
        sock = self._inner.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


class _Live:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: set[_TrackedStream] = set()

    def add(self, stream: _TrackedStream) -> None:
        with self._lock:
            self._streams.add(stream)

    def discard(self, stream: _TrackedStream) -> None:
        with self._lock:
            self._streams.discard(stream)

    def abort_all(self) -> None:
        with self._lock:
            streams = list(self._streams)
        for stream in streams:
            stream.abort()


class _TrackingBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend, live: _Live) -> None:
        self._inner = inner
        self._live = live

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        stream = self._inner.connect_tcp(host, port, timeout, local_address, socket_options)
        return _TrackedStream(stream, self._live)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        return _TrackedStream(
            self._inner.connect_unix_socket(path, timeout, socket_options), self._live
        )

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


class DeadlineTransport(httpx.HTTPTransport):
    """httpx's own transport, with sockets that a deadline can cut."""

    def __init__(self) -> None:
        super().__init__(verify=True)
        self._live = _Live()
        pool = self._pool  # httpx 0.28's connection pool; httpx is pinned below 1.0
        pool._network_backend = _TrackingBackend(pool._network_backend, self._live)

    @contextlib.contextmanager
    def deadline(self, seconds: float) -> Iterator[threading.Event]:
        """While inside, the exchange is cut after ``seconds``; the event says whether it was."""
        expired = threading.Event()

        def cut() -> None:
            expired.set()
            self._live.abort_all()

        timer = threading.Timer(seconds, cut)
        timer.daemon = True
        timer.start()
        try:
            yield expired
        finally:
            timer.cancel()
