"""How each PostHog answer is classified, and what the requests look like on the wire."""

from __future__ import annotations

import contextlib
import json
import socketserver
import threading
import time
from datetime import UTC, datetime

import httpx
import pytest

from heartbeat_tray import __version__
from heartbeat_tray.core.verdicts import KeyCheckVerdict, Verdict
from heartbeat_tray.net.http import parse_retry_after
from heartbeat_tray.posthog.capture import PostHogClient

NOW = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
KEY = "phc_" + "b" * 43
EVENT = {"event": "heartbeat", "distinct_id": "d", "uuid": "u", "properties": {}}


def client_answering(status: int, headers: dict[str, str] | None = None) -> PostHogClient:
    transport = httpx.MockTransport(lambda request: httpx.Response(status, headers=headers))
    return PostHogClient(transport=transport, wall_clock=lambda: NOW)


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, Verdict.ACCEPTED),
        (204, Verdict.ACCEPTED),
        (400, Verdict.REJECTED_BEAT),
        (401, Verdict.REJECTED_KEY),
        (403, Verdict.REJECTED_KEY),
        (408, Verdict.TRANSIENT),
        (413, Verdict.TOO_LARGE),
        (429, Verdict.TRANSIENT),
        (500, Verdict.TRANSIENT),
        (502, Verdict.TRANSIENT),
        (503, Verdict.TRANSIENT),
    ],
)
def test_status_codes_are_classified_as_the_notes_say(status: int, verdict: Verdict) -> None:
    result = client_answering(status).send_batch("https://h", KEY, [EVENT], timeout=1)
    assert result.verdict is verdict
    assert result.status == status


def test_network_errors_and_timeouts_are_transient() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    for handler, reason in ((refuse, "could not connect"), (slow, "timed out")):
        client = PostHogClient(transport=httpx.MockTransport(handler))
        result = client.send_batch("https://h", KEY, [EVENT], timeout=1)
        assert result.verdict is Verdict.TRANSIENT
        assert reason in result.reason


def test_retry_after_seconds_and_date() -> None:
    assert parse_retry_after("30", NOW) == 30.0
    assert parse_retry_after("Thu, 26 Nov 2026 12:02:00 GMT", NOW) == 120.0
    assert parse_retry_after("Thu, 26 Nov 2026 11:00:00 GMT", NOW) == 0.0
    assert parse_retry_after("soon", NOW) is None
    result = client_answering(429, {"Retry-After": "7"}).send_batch("https://h", KEY, [EVENT], 1)
    assert result.retry_after == 7.0


def test_the_batch_request_carries_key_sent_at_and_user_agent() -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200)

    client = PostHogClient(transport=httpx.MockTransport(record), wall_clock=lambda: NOW)
    client.send_batch("https://eu.i.posthog.com", KEY, [EVENT], timeout=1)
    (request,) = seen
    assert str(request.url) == "https://eu.i.posthog.com/batch/"
    assert request.headers["User-Agent"] == f"heartbeat-tray/{__version__}"
    body = json.loads(request.content)
    assert body == {
        "api_key": KEY,
        "batch": [EVENT],
        "sent_at": "2026-11-26T12:00:00.000Z",
        "historical_migration": False,
    }


@pytest.mark.parametrize(
    ("status", "verdict"),
    [
        (200, KeyCheckVerdict.VALID),
        (401, KeyCheckVerdict.INVALID),
        (500, KeyCheckVerdict.UNEXPECTED),
    ],
)
def test_key_check_asks_the_flags_endpoint(status: int, verdict: KeyCheckVerdict) -> None:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status)

    client = PostHogClient(transport=httpx.MockTransport(record))
    result = client.check_key("https://us.i.posthog.com", KEY, "d", timeout=1)
    assert result.verdict is verdict
    assert str(seen[0].url) == "https://us.i.posthog.com/flags/?v=2"
    assert json.loads(seen[0].content) == {"api_key": KEY, "distinct_id": "d"}
    assert KEY not in result.message


@pytest.mark.parametrize("status", [301, 302, 307, 308, 404, 405])
def test_a_redirect_or_a_missing_route_means_the_host_is_wrong(status: int) -> None:
    result = client_answering(status, {"Location": "https://elsewhere.example/"}).send_batch(
        "https://h", KEY, [EVENT], timeout=1
    )
    assert result.verdict is Verdict.WRONG_HOST


class Trickle(socketserver.BaseRequestHandler):
    """A server that answers 200, one byte every 0.25 s: every read succeeds, none ends."""

    def handle(self) -> None:
        self.request.recv(65536)
        answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n" + b"x" * 2000
        with contextlib.suppress(OSError):
            for byte in answer:
                self.request.sendall(bytes([byte]))
                time.sleep(0.25)


def test_a_trickling_server_cannot_hold_a_request_past_its_deadline() -> None:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Trickle)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    client = PostHogClient()
    try:
        started = time.monotonic()
        result = client.send_batch(
            f"http://127.0.0.1:{server.server_address[1]}", KEY, [EVENT], timeout=1.5
        )
        took = time.monotonic() - started
        # httpx alone (per-read timeouts) would wait for all 2,000 bytes: over 8 minutes
        assert result.verdict is Verdict.TRANSIENT
        assert result.reason == "timed out (no complete answer within 1.5 s)"
        assert took < 10.0, took  # the deadline held (a margin for a loaded machine)
        check = client.check_key(f"http://127.0.0.1:{server.server_address[1]}", KEY, "d", 1.0)
        assert "no complete answer within 1 s" in check.message
    finally:
        client.close()
        server.shutdown()
        server.server_close()
