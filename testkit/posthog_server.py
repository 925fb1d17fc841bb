"""A real HTTP server on loopback that answers like PostHog: capture, flags, and the app API
the ingestion check reads (projects, a HogQL query), plus a webhook sink.

Switches for every failure of the capture API: refuse connections, hang, trickle, any status
(redirects with a Location, 400, 401, 403, 404, 408, 413, 429 with Retry-After, 500, 503), a
batch-size limit that answers 413. Behind capture, a pipeline stores accepted events with a lag
(queryable only after it), or drops them (``drop_downstream``) while capture still says 200.
Queries answer in the project's time zone, from a stale cache unless forced to refresh, or with
any status; the webhook sink can fail N times.
"""

from __future__ import annotations

import contextlib
import gzip
import json
import re
import socket
import ssl
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


def _parse(value: str) -> datetime:
    return datetime.fromisoformat(str(value).replace("Z", "+00:00"))


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
        self,
        valid_keys: set[str] | None = None,
        tls: ssl.SSLContext | None = None,
        address: str = "127.0.0.1",
    ) -> None:
        self.address = address  # another loopback address stands for another host
        self.valid_keys = valid_keys if valid_keys is not None else set()
        self.tls = tls  # serve HTTPS with this context (e.g. a self-signed certificate)
        self.events: list[dict[str, Any]] = []
        self.requests: list[Request] = []
        # "ok", "refuse", "hang", "trickle" (a 200 at one byte every 0.5 s), or an HTTP status
        self.mode: str | int = "ok"
        self.retry_after: str | None = None
        self.max_batch: int | None = None  # larger batches get 413
        self.latency: Callable[[], float] | None = None  # seconds to wait before answering
        # --- the app API and the pipeline behind capture (the ingestion check) ---
        self.personal_keys: set[str] = set()
        self.project_id = 4242
        self.ingest_lag = 0.5  # seconds from capture to stored (created_at), queryable after
        self.drop_downstream = False  # capture answers 200 but nothing is stored
        self.drop_events: set[str] = set()  # these event names are not stored (others are)
        self.project_tz_hours = 1  # the project's time zone: answers carry its offset
        self.query_status: int | None = None  # answer queries with this status
        self.query_retry_after: str | None = None
        # hostile answers: a project list whose "next" names another base URL, pages that
        # take this long, a query answered with these raw bytes and headers (a gzip bomb)
        self.projects_next_base: str | None = None
        self.projects_delay = 0.0
        self.query_raw: tuple[bytes, dict[str, str]] | None = None
        self.stored: list[dict[str, Any]] = []  # uuid, event, distinct_id, timestamp, created_at
        self.queries: list[dict[str, Any]] = []
        self._query_cache: dict[str, Any] = {}
        self.webhooks: list[dict[str, Any]] = []
        self.webhook_times: list[float] = []  # time.time() each webhook arrived
        self.webhook_failures = 0  # the webhook sink fails this many times first
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
        return f"{scheme}://{self.address}:{self.port}"

    def _listen(self) -> None:
        server = self
        deadline = time.monotonic() + 10
        while True:
            try:
                httpd = ThreadingHTTPServer((self.address, self.port), _handler_for(server))
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
                if request.path.rstrip("/") in CAPTURE_PATHS and not self.drop_downstream:
                    self._store(request)
            self._cond.notify_all()

    def _store(self, request: Request) -> None:
        """What PostHog's pipeline does after capture: correct the time with sent_at, store."""
        for event in request.events:
            if event.get("event") in self.drop_events:
                continue
            try:
                stamp = _parse(event["timestamp"])
                sent_at = _parse(event.get("_sent_at") or event["timestamp"])
            except (KeyError, TypeError, ValueError):
                continue
            received = datetime.fromtimestamp(request.wall, UTC)
            self.stored.append(
                {
                    "uuid": event.get("uuid"),
                    "event": event.get("event"),
                    "distinct_id": event.get("distinct_id"),
                    "timestamp": received - (sent_at - stamp),
                    "created_at": received + timedelta(seconds=self.ingest_lag),
                }
            )

    def wait_for_webhooks(self, n: int, timeout: float = 30.0) -> list[dict[str, Any]]:
        if not self.wait_for(lambda: len(self.webhooks) >= n, timeout):
            raise AssertionError(f"expected {n} webhooks, got {self.webhooks} in {timeout} s")
        with self._cond:
            return list(self.webhooks)

    def query_answer(self, body: dict[str, Any]) -> dict[str, Any]:
        """A small subset of HogQL: the ingestion check's one query, over what was stored."""
        query = body.get("query") or {}
        text = str(query.get("query", ""))
        values = query.get("values") or {}
        match = re.search(r"INTERVAL (\d+) SECOND", text)
        window = int(match.group(1)) if match else 3600
        key = json.dumps(query, sort_keys=True)
        if body.get("refresh") != "force_blocking" and key in self._query_cache:
            return dict(self._query_cache[key], is_cached=True)  # hours old on a real instance
        now = datetime.now(UTC)
        tz = timezone(timedelta(hours=self.project_tz_hours))
        paged = "timestamp < toDateTime({before})" in text
        before = _parse(str(values.get("before"))) if paged else None
        with self._cond:
            rows = [
                s
                for s in self.stored
                if s["created_at"] <= now
                and s["event"] == values.get("event")
                and s["distinct_id"] == values.get("distinct_id")
                and s["timestamp"] > now - timedelta(seconds=window)
                and (before is None or s["timestamp"] < before)
            ]
        rows.sort(key=lambda s: s["timestamp"], reverse=True)
        answer = {
            "results": [
                [
                    s["uuid"],
                    s["timestamp"].astimezone(tz).isoformat(),
                    s["created_at"].astimezone(tz).isoformat(),
                ]
                for s in rows[:1000]
            ],
            "columns": ["uuid", "timestamp", "created_at"],
            "is_cached": False,
        }
        self._query_cache[key] = answer
        return answer


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

        def _app_api(self, method: str, path: str, raw: bytes, request: Request) -> bool:
            """PostHog's private API (bearer personal key) and the webhook sink."""
            if path == "/webhook":
                body = json.loads(raw or b"{}")
                with server._cond:
                    failing = server.webhook_failures > 0
                    if failing:
                        server.webhook_failures -= 1
                if failing:
                    self._answer(request, 503, {"error": "try later"})
                    return True
                with server._cond:
                    server.webhooks.append(body)
                    server.webhook_times.append(time.time())
                self._answer(request, 200, {"ok": True})
                return True
            if not path.startswith("/api/"):
                return False
            auth = self.headers.get("Authorization", "")
            if not auth.startswith("Bearer ") or auth[7:] not in server.personal_keys:
                self._answer(
                    request,
                    401,
                    {
                        "type": "authentication_error",
                        "code": "authentication_failed",
                        "detail": "Personal API key found in request is invalid.",
                        "attr": None,
                    },
                )
                return True
            if method == "GET" and path.rstrip("/") == "/api/projects":
                query = parse_qs(self.path.split("?", 1)[1] if "?" in self.path else "")
                page = int(query.get("page", ["1"])[0])
                projects = [{"id": 1, "name": "Other", "api_token": "phc_someoneElse"}] + [
                    {"id": server.project_id, "name": "Heartbeats", "api_token": key}
                    for key in sorted(server.valid_keys)
                ]
                results = projects[page - 1 : page]  # one a page: the client must follow next
                more = page < len(projects)
                time.sleep(server.projects_delay)
                base = server.projects_next_base or server.url
                self._answer(
                    request,
                    200,
                    {
                        "count": len(projects),
                        "next": f"{base}/api/projects/?page={page + 1}" if more else None,
                        "previous": None,
                        "results": results,
                    },
                )
                return True
            if method == "GET" and path.rstrip("/") == "/api/event":
                # what the Ingestion Alert app asked every minute: events after a moment, of
                # the key owner's current project (any event, stored and queryable by now)
                query = parse_qs(self.path.split("?", 1)[1] if "?" in self.path else "")
                after = _parse(query.get("after", ["1970-01-01T00:00:00+00:00"])[0])
                now = datetime.now(UTC)
                with server._cond:
                    found = [
                        {
                            "id": s["uuid"],
                            "event": s["event"],
                            "timestamp": s["timestamp"].isoformat(),
                        }
                        for s in server.stored
                        if s["created_at"] <= now and s["timestamp"] > after
                    ]
                self._answer(request, 200, {"next": None, "results": found[-100:]})
                return True
            if method == "GET" and path.rstrip("/") == "/api/users/@me":
                self._answer(request, 200, {"team": {"id": server.project_id}})
                return True
            if method == "POST" and path == f"/api/projects/{server.project_id}/query/":
                body = json.loads(raw or b"{}")
                with server._cond:
                    server.queries.append({"at": time.monotonic(), "body": body})
                if server.query_status is not None:
                    headers = (
                        {"Retry-After": server.query_retry_after}
                        if server.query_retry_after
                        else {}
                    )
                    self._answer(
                        request, server.query_status, {"detail": "Request was throttled."}, headers
                    )
                    return True
                if server.query_raw is not None:
                    self._answer_raw(request, 200, *server.query_raw)
                    return True
                self._answer(request, 200, server.query_answer(body))
                return True
            self._answer(
                request,
                404,
                {"type": "invalid_request", "code": "not_found", "detail": "Not found."},
            )
            return True

        def do_GET(self) -> None:
            request = Request(self.path.split("?", 1)[0], 0, time.monotonic(), time.time())
            if not self._app_api("GET", request.path, b"", request):
                self._answer(request, 404, {"detail": "not found"})

        def do_POST(self) -> None:
            arrived, wall = time.monotonic(), time.time()
            path = self.path.split("?", 1)[0]
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.headers.get("Content-Encoding") == "gzip":
                raw = gzip.decompress(raw)
            request = Request(path, 0, arrived, wall, headers=dict(self.headers.items()))
            if self._app_api("POST", path, raw, request):
                return
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
            self._answer_raw(request, status, json.dumps(payload).encode(), headers or {})

        def _answer_raw(
            self, request: Request, status: int, data: bytes, headers: dict[str, str]
        ) -> None:
            request.status = status
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
