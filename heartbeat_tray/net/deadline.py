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


class Deadlines:
    """The sockets open now, and a watchdog that cuts them when a deadline passes."""

    def __init__(self) -> None:
        self._live = _Live()

    def network_backend(self) -> httpcore.NetworkBackend:
        """httpcore's own sockets, remembered while open (``ConnectionPool(network_backend=)``,
        httpcore's public seam)."""
        return _TrackingBackend(httpcore.SyncBackend(), self._live)

    @contextlib.contextmanager
    def deadline(self, seconds: float) -> Iterator[threading.Event]:
        """While inside, the exchange is cut after ``seconds``; the event says whether it was.
        With no socket of ours open (a test's own transport) it only sets the event."""
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


# httpcore's errors as httpx's, the most specific first (httpx maps them the same way inside
# its own transport, which has no seam for the network backend).
_ERRORS: tuple[tuple[type[Exception], type[httpx.HTTPError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout),
    (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout),
    (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.TimeoutException, httpx.TimeoutException),
    (httpcore.ConnectError, httpx.ConnectError),
    (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError),
    (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError),
    (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.ProtocolError, httpx.ProtocolError),
)


@contextlib.contextmanager
def _as_httpx_errors() -> Iterator[None]:
    try:
        yield
    except Exception as exc:
        for theirs, ours in _ERRORS:
            if isinstance(exc, theirs):
                raise ours(str(exc)) from exc
        raise


class _Body(httpx.SyncByteStream):
    def __init__(self, stream: Iterable[bytes]) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[bytes]:
        with _as_httpx_errors():
            yield from self._stream

    def close(self) -> None:
        close = getattr(self._stream, "close", None)
        if close is not None:
            with _as_httpx_errors():
                close()


class DeadlineTransport(httpx.BaseTransport):
    """An HTTP/1.1 transport over httpcore's connection pool (TLS verified), whose sockets
    ``deadlines`` can cut."""

    def __init__(self, deadlines: Deadlines) -> None:
        limits = httpx.Limits()  # httpx's own defaults: idle connections closed after 5 s
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(),  # certifi's roots, as httpx's transport
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=deadlines.network_backend(),
        )

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        core_request = httpcore.Request(
            method=request.method,
            url=httpcore.URL(
                scheme=request.url.raw_scheme,
                host=request.url.raw_host,
                port=request.url.port,
                target=request.url.raw_path,
            ),
            headers=request.headers.raw,
            content=request.stream,
            extensions=request.extensions,
        )
        with _as_httpx_errors():
            answer = self._pool.handle_request(core_request)
        assert isinstance(answer.stream, Iterable)
        return httpx.Response(
            status_code=answer.status,
            headers=answer.headers,
            stream=_Body(answer.stream),
            extensions=answer.extensions,
        )

    def close(self) -> None:
        self._pool.close()
