"""A simulated PostHog app API and the real ingestion poller around it, on a clock the caller
moves: shared by the unit tests and the time-to-alert benchmark (which must not import tests).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx

from heartbeat_tray.core.alert_rules import Alert
from heartbeat_tray.core.app_state import AppState
from heartbeat_tray.core.clock import RUN_ID
from heartbeat_tray.core.outbox import Outbox
from heartbeat_tray.core.ports import AcceptedBeat
from heartbeat_tray.core.settings import IngestionSettings, Settings
from heartbeat_tray.core.timefmt import parse_iso as parse_time
from heartbeat_tray.core.verdicts import StoredBeat
from heartbeat_tray.ingestion.poller import IngestionPoller, PollerConfig
from heartbeat_tray.ingestion.rules import query_window
from heartbeat_tray.ingestion.store import AcceptedLedger, IngestionStore
from heartbeat_tray.posthog.query import ROW_LIMIT, QueryClient
from heartbeat_tray.system.webhook import WebhookSender

T0 = datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)
PERSONAL = "phx_" + "p" * 40
PROJECT_KEY = "phc_" + "k" * 43


START_MONO = 1000.0
Lag = float | Callable[[], float] | None  # seconds from capture to stored; None: never stored


class FakeClock:
    def __init__(self, start_wall: datetime | None = None) -> None:
        self.mono = START_MONO
        self._wall = start_wall or datetime(2026, 11, 26, 12, 0, 0, tzinfo=UTC)

    def monotonic(self) -> float:
        return self.mono

    def wall(self) -> datetime:
        return self._wall

    def advance(self, seconds: float) -> None:
        self.mono += seconds
        self._wall += timedelta(seconds=seconds)

    def suspend(self, seconds: float) -> None:
        """The machine sleeps: wall time passes, the monotonic clock stands still (also a
        wall-clock step forward)."""
        self._wall += timedelta(seconds=seconds)

    def step_back(self, seconds: float) -> None:
        """The wall clock is set back (NTP, a user); the monotonic clock goes on."""
        self._wall -= timedelta(seconds=seconds)


class FakeAppApi:
    """PostHog's app API as the poller sees it: projects, the query endpoint, a webhook."""

    def __init__(self, clock: FakeClock, start: datetime = T0) -> None:
        self.clock = clock
        self.start = start
        self.stored: dict[str, StoredBeat] = {}
        self.queries: list[dict[str, Any]] = []
        self.query_times: list[float] = []
        self.project_pages = 0
        self.answer: int | None = None  # a status to answer queries with
        self.retry_after: str | None = None
        self.webhooks: list[dict[str, Any]] = []
        self.webhook_failures = 0

    def transport(self) -> httpx.MockTransport:
        return httpx.MockTransport(self.handle)

    def server_now(self) -> datetime:
        """PostHog's own clock: it runs on when ours is stepped (it starts at T0 with ours)."""
        return self.start + timedelta(seconds=self.clock.monotonic() - START_MONO)

    def handle(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/hook":
            if self.webhook_failures:
                self.webhook_failures -= 1
                return httpx.Response(503)
            self.webhooks.append(json.loads(request.content))
            return httpx.Response(200)
        assert request.headers["Authorization"] == f"Bearer {PERSONAL}"
        if path == "/api/projects/":
            self.project_pages += 1
            if request.url.params.get("page") != "2":
                return httpx.Response(
                    200,
                    json={
                        "results": [{"id": 1, "api_token": "phc_other"}],
                        "next": "https://us.posthog.com/api/projects/?page=2",
                    },
                )
            return httpx.Response(
                200, json={"results": [{"id": 4242, "api_token": PROJECT_KEY}], "next": None}
            )
        assert path == "/api/projects/4242/query/"
        body = json.loads(request.content)
        self.queries.append(body)
        self.query_times.append(self.clock.monotonic())
        if self.answer is not None:
            headers = {"Retry-After": self.retry_after} if self.retry_after else {}
            return httpx.Response(self.answer, headers=headers, json={"detail": "Nope."})
        values = body["query"].get("values", {})
        before = parse_time(values["before"]) if "before" in values else None
        visible = sorted(
            (
                b
                for b in self.stored.values()
                if b.created_at <= self.server_now() and (before is None or b.timestamp < before)
            ),
            key=lambda b: b.timestamp,
            reverse=True,
        )
        rows = [
            [
                b.uuid,
                b.timestamp.astimezone(timezone_plus_one()).isoformat(),
                b.created_at.isoformat(),
            ]
            for b in visible[:ROW_LIMIT]  # the query's LIMIT
        ]
        return httpx.Response(200, json={"results": rows})


def timezone_plus_one() -> Any:
    return timezone(timedelta(hours=1))


class Harness:
    def __init__(
        self,
        tmp_path: Path,
        webhook: bool = True,
        poll: int = 60,
        alert_after: int = 300,
        interval: int = 60,
        start: datetime = T0,
        **ingestion_settings: Any,
    ) -> None:
        self.clock = FakeClock(start_wall=start)
        self.api = FakeAppApi(self.clock, start)
        self.outbox = Outbox(tmp_path / "outbox.sqlite3")
        self.path = tmp_path / "outbox.sqlite3"
        self.ledger = AcceptedLedger(self.path, lambda: query_window(alert_after))
        self.alerts: list[Alert] = []
        self.state = AppState()
        ingestion = IngestionSettings(
            poll_seconds=poll,
            alert_after_seconds=alert_after,
            webhook_url="https://hooks.example/hook" if webhook else "",
            **ingestion_settings,
        )
        self.settings = Settings(interval_seconds=interval, ingestion=ingestion)
        self.n = 0
        self.next_beat: float | None = None  # the beat grid of run_on_grid, kept across calls
        self.poller = self.make_poller()

    def make_poller(self) -> IngestionPoller:
        self.store = IngestionStore(self.path)
        return IngestionPoller(
            PollerConfig(self.settings, "install-1"),
            personal_key=lambda: PERSONAL,
            project_key=lambda: PROJECT_KEY,
            store=self.store,
            client=QueryClient(transport=self.api.transport(), wall_clock=self.clock.wall),
            state=self.state,
            send_webhook=WebhookSender(transport=self.api.transport()).send,
            on_alert=self.alerts.append,
            clock=self.clock,
            random_fraction=lambda: 1.0,
        )

    def beat(self, stored_with_lag: Lag = 10.0) -> None:
        """One accepted live beat now; PostHog stores it after the lag (None: never)."""
        wall = self.clock.wall()
        uid = f"b{self.n}"
        self.n += 1
        stamp = wall.timestamp()
        self.ledger.record(
            [AcceptedBeat(uid, stamp, stamp + 0.1, True, self.clock.monotonic() + 0.1, RUN_ID)]
        )
        if callable(stored_with_lag):  # a lag that varies from beat to beat
            stored_with_lag = stored_with_lag()
        if stored_with_lag is not None:  # PostHog's own times: sent_at corrects our skew
            at = self.api.server_now()
            self.api.stored[uid] = StoredBeat(uid, at, at + timedelta(seconds=stored_with_lag))

    def run(self, seconds: float, beat_every: float | None = 60, lag: Lag = 10.0) -> None:
        """Beats every minute and the poller as its thread would, for ``seconds``."""
        end = self.clock.monotonic() + seconds
        next_beat = self.clock.monotonic()
        while True:
            wake = self.poller.step()
            nxt = min(w for w in (wake, next_beat if beat_every else None, end) if w is not None)
            if nxt >= end and (wake is None or wake >= end):
                self.clock.advance(max(0.0, end - self.clock.monotonic()))
                return
            self.clock.advance(max(0.0, nxt - self.clock.monotonic()))
            if beat_every and self.clock.monotonic() >= next_beat:
                self.beat(lag)
                next_beat += beat_every

    def run_on_grid(self, seconds: float, lag: float | None = 10.0) -> None:
        """Like ``run``, but the beats keep one grid of ``interval_seconds`` across calls, as
        the ticker's do: a break at any moment falls between two beats."""
        end = self.clock.monotonic() + seconds
        every = float(self.settings.interval_seconds)
        if self.next_beat is None:
            self.next_beat = self.clock.monotonic()
        while True:
            wake = self.poller.step()
            nxt = min(w for w in (wake, self.next_beat, end) if w is not None)
            if nxt >= end and (wake is None or wake >= end):
                self.clock.advance(max(0.0, end - self.clock.monotonic()))
                return
            self.clock.advance(max(0.0, nxt - self.clock.monotonic()))
            if self.clock.monotonic() >= self.next_beat:
                self.beat(lag)
                self.next_beat += every

    @property
    def status(self) -> Any:
        return self.state.snapshot.ingestion
