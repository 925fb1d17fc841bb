"""The webhook outbox: typed results, order kept, the URL in force, 24 hours of retries."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from heartbeat_tray.core.verdicts import WebhookResult
from heartbeat_tray.ingestion.store import IngestionStore
from heartbeat_tray.ingestion.webhooks import WebhookOutbox

T0 = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)


class Receiver:
    def __init__(self, *answers: WebhookResult) -> None:
        self.answers = list(answers)
        self.got: list[tuple[str, str]] = []

    def __call__(self, url: str, body: Mapping[str, Any]) -> WebhookResult:
        self.got.append((url, str(body["status"])))
        return self.answers.pop(0) if self.answers else WebhookResult.DELIVERED


def queued(tmp_path: Path, *statuses: str) -> IngestionStore:
    store = IngestionStore(tmp_path / "outbox.sqlite3")
    for status in statuses:
        store.queue_webhook({"status": status}, T0.timestamp())
    return store


def test_a_failed_one_holds_the_next_back_so_resolved_never_overtakes_triggered(
    tmp_path: Path,
) -> None:
    store = queued(tmp_path, "triggered", "resolved")
    send = Receiver(WebhookResult.RETRY)
    outbox = WebhookOutbox(store, send, "https://hooks.example/a", random_fraction=lambda: 1.0)
    wake = outbox.deliver_due(100.0, T0)
    assert send.got == [("https://hooks.example/a", "triggered")]
    assert wake == 102.0  # the beats' backoff: 2 s after the first failure, at most
    assert outbox.deliver_due(101.0, T0 + timedelta(seconds=1)) == 102.0  # not due: nothing
    assert len(send.got) == 1
    outbox.deliver_due(102.0, T0 + timedelta(seconds=2))
    assert [status for _url, status in send.got] == ["triggered", "triggered", "resolved"]
    assert store.pending_webhooks() == []


def test_a_refused_one_is_not_retried_and_the_next_goes_on(tmp_path: Path) -> None:
    store = queued(tmp_path, "triggered", "resolved")
    send = Receiver(WebhookResult.REFUSED)
    assert WebhookOutbox(store, send, "https://hooks.example/a").deliver_due(0.0, T0) is None
    assert [status for _url, status in send.got] == ["triggered", "resolved"]
    assert store.pending_webhooks() == []


def test_a_changed_url_gets_what_is_pending_and_a_cleared_one_drops_it(tmp_path: Path) -> None:
    store = queued(tmp_path, "triggered")
    send = Receiver(WebhookResult.RETRY)
    outbox = WebhookOutbox(store, send, "https://hooks.example/typo")
    outbox.deliver_due(0.0, T0)
    outbox.url = "https://hooks.example/fixed"
    outbox.deliver_due(10.0, T0 + timedelta(seconds=10))
    assert send.got == [
        ("https://hooks.example/typo", "triggered"),
        ("https://hooks.example/fixed", "triggered"),
    ]
    store.queue_webhook({"status": "resolved"}, T0.timestamp())
    outbox.url = ""
    assert outbox.deliver_due(20.0, T0 + timedelta(seconds=20)) is None
    assert len(send.got) == 2 and store.pending_webhooks() == []


def test_one_that_fails_for_24_hours_is_given_up(tmp_path: Path) -> None:
    store = queued(tmp_path, "triggered")
    send = Receiver(*[WebhookResult.RETRY] * 1000)
    outbox = WebhookOutbox(store, send, "https://hooks.example/a", random_fraction=lambda: 1.0)
    now, wall, delays = 0.0, T0, []
    while (wake := outbox.deliver_due(now, wall)) is not None:
        delays.append(wake - now)
        wall += timedelta(seconds=wake - now)
        now = wake
    assert max(delays) == 300.0  # at most every 5 minutes
    assert wall - T0 >= timedelta(hours=24)
    assert len(send.got) < 24 * 12 + 20 and store.pending_webhooks() == []
