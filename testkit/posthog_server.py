"""A real HTTP server on loopback that answers like PostHog's capture and flags endpoints.

Switches for every failure in notes/posthog-capture.md: refuse connections, hang, any status
(400, 401, 403, 408, 413, 429 with Retry-After, 500, 503), a batch-size limit that answers 413.
Events are recorded only when the server answers 2xx, as PostHog would store them.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

CAPTURE_PATHS = {"/batch", "/i/v0/e", "/e", "/capture", "/track"}


@dataclass
class Request:
    path: str
    status: int
    at: float  # time.monotonic() when the request arrived
    wall: float  # time.time() when it arrived
    events: list[dict[str, Any]] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] | None = None


class CaptureServer:
    def __init__(
        self, valid_keys: set[str] | None = None, tls: ssl.SSLContext | None = None
    ) -> None:
        self.valid_keys = valid_keys if valid_keys is not None else set()
        self.tls = tls  # serve HTTPS with this context (e.g. a self-signed certificate)
        self.events: list[dict[str, Any]] = []
        self.requests: list[Request] = []
        # "ok", "refuse", "hang", "trickle" (a 200 at one byte every 0.5 s), or an HTTP status
        self.mode: str | int = "ok"
        self.retry_after: str | None = None
        self.max_batch: int | None = None  # larger batches get 413
        self.latency: Callable[[], float] | None = None  # seconds to wait before answering
        self._cond = threading.Condition()
        self._release_hang = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # --- lifecycle ---

    def start(self) -> CaptureServer:
        self._listen()
        return self

    def stop(self) -> None:
        self._release_hang.set()
        self._close_listener()
        self._drop_connections()

    @property
    def url(self) -> str:
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://127.0.0.1:{self.port}"

    def _listen(self) -> None:
        server = self
        deadline = time.monotonic() + 10
        while True:
            try:
                httpd = ThreadingHTTPServer(("127.0.0.1", self.port), _handler_for(server))
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)  # the old socket of this port is still being torn down
        httpd.daemon_threads = True
        if self.tls is not None:
            httpd.socket = self.tls.wrap_socket(httpd.socket, server_side=True)
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
        self._thread.start()

    def _close_listener(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def _drop_connections(self) -> None:
        with self._cond:
            connections = list(self._connections)
        for conn in connections:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    # --- switches ---

    def set_mode(self, mode: str | int, retry_after: str | None = None) -> None:
        previous = self.mode
        with self._cond:
            self.mode = mode
            self.retry_after = retry_after
        if previous in ("hang", "trickle") and mode != previous:
            self._release_hang.set()
        if mode in ("hang", "trickle"):
            self._release_hang.clear()
        if mode == "refuse" and previous != "refuse":
            self._close_listener()
            self._drop_connections()
        elif previous == "refuse" and mode != "refuse":
            self._listen()

    # --- observations ---

    def wait_for(self, predicate: Callable[[], bool], timeout: float = 15.0) -> bool:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def wait_for_events(self, n: int, timeout: float = 15.0) -> list[dict[str, Any]]:
        if not self.wait_for(lambda: len(self.events) >= n, timeout):
            raise AssertionError(f"expected {n} events, got {len(self.events)} in {timeout} s")
        with self._cond:
            return list(self.events)

    def capture_requests(self) -> list[Request]:
        with self._cond:
            return [r for r in self.requests if r.path.rstrip("/") in CAPTURE_PATHS]

    def _record(self, request: Request) -> None:
        with self._cond:
            self.requests.append(request)
            if 200 <= request.status < 300:
                self.events.extend(request.events)
            self._cond.notify_all()


def _handler_for(server: CaptureServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as PostHog's load balancers do

        def setup(self) -> None:
            super().setup()
            with server._cond:
                server._connections.add(self.connection)

        def finish(self) -> None:
            with server._cond:
                server._connections.discard(self.connection)
            with contextlib.suppress(OSError):
                super().finish()

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            arrived, wall = time.monotonic(), time.time()
            path = self.path.split("?", 1)[0]
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.headers.get("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            request = Request(path, 0, arrived, wall, headers=dict(self.headers.items()))
            mode = server.mode
            if mode == "hang":
                with contextlib.suppress(ValueError, AttributeError):
                    body = json.loads(raw)
                    request.events = body.get("batch", [body])
                server._record(request)
                server._release_hang.wait(60)
                self.close_connection = True
                return
            if mode == "trickle":
                with contextlib.suppress(ValueError, AttributeError):
                    body = json.loads(raw)
                    request.events = body.get("batch", [body])
                server._record(request)
                self._trickle()
                return
            if server.latency is not None:
                time.sleep(server.latency())
            try:
                body = json.loads(raw or b"{}")
            except ValueError:
                self._answer(request, 400, {"status": 400, "code": "invalid_payload"})
                return
            request.body = body
            route = path.rstrip("/")
            if route == "/flags" or route == "/decide":
                self._flags(request, body)
            elif route in CAPTURE_PATHS:
                self._capture(request, body, mode)
            else:
                self._answer(request, 404, {"detail": "not found"})

        def _trickle(self) -> None:
            """Every read succeeds, and the answer never ends: only a whole-request deadline
            stops the client (at most 2 minutes, or until the mode changes)."""
            answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n" + b" " * 100_000
            self.close_connection = True
            with contextlib.suppress(OSError):
                for byte in answer[:240]:
                    if server.mode != "trickle" or server._release_hang.wait(0.5):
                        return
                    self.wfile.write(bytes([byte]))
                    self.wfile.flush()

        def _flags(self, request: Request, body: dict[str, Any]) -> None:
            key = body.get("api_key") or body.get("token")
            if not key:
                self._answer(request, 401, {"code": "not_authenticated"})
            elif key in server.valid_keys:
                self._answer(request, 200, {"flags": {}, "errorsWhileComputingFlags": False})
            else:
                self._answer(
                    request,
                    401,
                    {
                        "type": "authentication_error",
                        "code": "authentication_failed",
                        "detail": "The provided API key is invalid or has expired.",
                    },
                )

        def _capture(self, request: Request, body: dict[str, Any], mode: str | int) -> None:
            key = body.get("api_key") or body.get("token")
            events = body.get("batch", [body])
            request.events = [dict(e, _sent_at=body.get("sent_at")) for e in events]
            if isinstance(mode, int):
                headers = {"Retry-After": server.retry_after} if server.retry_after else {}
                if 300 <= mode < 400:  # a proxy that redirects: the key must not follow it
                    headers["Location"] = f"{server.url}/elsewhere/"
                self._answer(request, mode, {"status": mode}, headers)
                return
            if not key:
                self._answer(request, 401, {"code": "ingest_key_required"})
                return
            if key.startswith("phx_") or len(key) > 64 or not key.isascii():
                self._answer(request, 403, {"code": "ingest_key_unknown"})
                return
            if server.max_batch is not None and len(events) > server.max_batch:
                self._answer(request, 413, {"status": 413})
                return
            for event in events:
                try:
                    uuid.UUID(str(event.get("uuid")))
                    ok = bool(event.get("event")) and bool(event.get("distinct_id"))
                except ValueError:
                    ok = False
                if not ok:
                    self._answer(request, 400, {"status": 400, "code": "invalid_event"})
                    return
            # A well-formed wrong key is accepted too: that is PostHog's real behaviour.
            self._answer(request, 200, {"status": "Ok"})

        def _answer(
            self,
            request: Request,
            status: int,
            payload: dict[str, Any],
            headers: dict[str, str] | None = None,
        ) -> None:
            request.status = status
            data = json.dumps(payload).encode()
            try:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)
                self.wfile.flush()
            except OSError:  # the client gave up (timed out): nothing was accepted
                request.status = -1
                self.close_connection = True
            server._record(request)

    return Handler


if __name__ == "__main__":  # for manual tries: python -m testkit.posthog_server (Ctrl-C stops)
    srv = CaptureServer().start()
    print(srv.url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        srv.stop()
