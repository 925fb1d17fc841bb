"""One engine for every front end: ``run`` and the tray build the heartbeat here, the same way.

It owns the settings as the process sees them (the file, with the per-run overrides on top for
the life of the process), the outbox, the PostHog clients, the app state, the ticker, the
ledger its accepted beats are announced to and the ingestion poller, and it turns state changes
into alerts for whichever front end runs it: desktop notifications in the tray, log lines in
``run`` (the webhook works in both). The adapters are plugged into the core's interfaces here
and nowhere else; a test passes its own clock and transport.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING

import httpx

from heartbeat_tray.core.alert_rules import Alert, delivery_alert
from heartbeat_tray.core.api_key import KeyKind, KeyringUnavailable
from heartbeat_tray.core.app_state import AppState, Snapshot
from heartbeat_tray.core.clock import Clock
from heartbeat_tray.core.outbox import Outbox
from heartbeat_tray.core.settings import LoadedSettings, Overrides, Settings
from heartbeat_tray.core.ticker import Ticker, TickerConfig
from heartbeat_tray.ingestion.poller import IngestionPoller, PollerConfig
from heartbeat_tray.ingestion.rules import query_window
from heartbeat_tray.ingestion.store import AcceptedLedger, IngestionStore
from heartbeat_tray.posthog.capture import PostHogClient
from heartbeat_tray.posthog.query import QueryClient
from heartbeat_tray.system.atomic_file import write_atomically
from heartbeat_tray.system.keystore import KeyStore, report_unreadable_key
from heartbeat_tray.system.log_setup import never_log
from heartbeat_tray.system.paths import AppPaths
from heartbeat_tray.system.settings_file import distinct_id_of, load_settings, save_settings
from heartbeat_tray.system.webhook import WebhookSender

if TYPE_CHECKING:
    from heartbeat_tray.system.metrics import MetricsServer

log = logging.getLogger(__name__)

AlertSink = Callable[[Alert], None]


class Engine:
    def __init__(
        self,
        paths: AppPaths,
        *,
        overrides: Overrides,
        keys: KeyStore,
        personal_keys: KeyStore | None = None,
        front_end: str,
        on_alert: AlertSink,
        loaded: LoadedSettings | None = None,
        clock: Clock | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.paths = paths
        self.overrides = overrides
        self.front_end = front_end
        self.keys = keys
        self.personal_keys = personal_keys or KeyStore(
            kind=KeyKind.PERSONAL, read_in_child=keys.read_in_child
        )
        self._on_alert = on_alert
        self._tray_problem: str | None = None
        self.metrics: MetricsServer | None = None
        loaded = loaded or load_settings(paths.config_file)
        self.settings = loaded.settings.with_overrides(overrides)
        self.state = AppState()
        self.outbox = Outbox(paths.outbox_file)
        self.client = PostHogClient(transport=transport)
        # The ticker announces each accepted beat; the check's ledger records it.
        self.ledger = AcceptedLedger(
            paths.outbox_file, lambda: query_window(self.settings.ingestion.alert_after_seconds)
        )
        self.ticker = Ticker(
            self._config(self.settings, loaded.problem),
            key_source=self._read_key,
            outbox=self.outbox,
            client=self.client,
            state=self.state,
            on_accepted=self.ledger.record,
            clock=clock,
        )
        self.query_client = QueryClient(transport=transport)
        self.webhooks = WebhookSender(transport=transport)
        self.ingestion_store = IngestionStore(paths.outbox_file)
        self.poller = IngestionPoller(
            self._poller_config(self.settings, loaded.problem),
            personal_key=lambda: self._secret(self.personal_keys),
            project_key=lambda: self._secret(self.keys),
            store=self.ingestion_store,
            client=self.query_client,
            state=self.state,
            send_webhook=self.webhooks.send,
            on_alert=self._emit,
            clock=clock,
        )
        self.state.subscribe_changes(self._alert)

    def _config(self, settings: Settings, problem: str | None = None) -> TickerConfig:
        distinct_id = distinct_id_of(settings.distinct_id, self.paths.installation_id_file)
        return TickerConfig(settings, distinct_id, problem)

    def _poller_config(self, settings: Settings, problem: str | None = None) -> PollerConfig:
        return PollerConfig(settings, self._config(settings).distinct_id, problem)

    def _read_key(self) -> str | None:
        return self._secret(self.keys)  # KeyringUnavailable goes to the ticker: "needs setup"

    @staticmethod
    def _secret(store: KeyStore) -> str | None:
        try:
            key = store.get()
        except KeyringUnavailable as exc:
            report_unreadable_key(str(exc))
            raise
        if key is None:
            return None
        never_log(key.value)
        return key.value

    @property
    def distinct_id(self) -> str:
        return self._config(self.settings).distinct_id

    # --- life ---

    def start(self) -> None:
        """Start beating. A metrics endpoint that cannot listen is said (an alert) and the
        heartbeat goes on; ``run`` calls ``start_metrics`` first to refuse to start instead."""
        if self.metrics is None:
            self._serve_metrics_or_say()
        self._write_running_file()
        # The check starts once the first beat is made: both at once, its first status write
        # and key read held the first beat back by ~5 ms in 3 of 10 runs (benchmarks, accuracy;
        # none in 8 runs with the check started after it).
        self.ticker.start(then=self.poller.start)

    def start_metrics(self) -> str | None:
        """Listen at ``[metrics] listen`` (``run --metrics``), if set; the sentence saying why
        it cannot, else None. prometheus-client is imported only here: a process without
        metrics does not carry it (measured: 1.4 MiB of RSS)."""
        address = self.settings.metrics.address()
        if address is None or self.metrics is not None:
            return None
        from heartbeat_tray.system.metrics import MetricsError, MetricsServer

        server = MetricsServer(*address, lambda: self.state.snapshot)
        try:
            server.start()
        except MetricsError as exc:
            return str(exc)
        self.metrics = server
        return None

    def _serve_metrics_or_say(self) -> None:
        problem = self.start_metrics()
        if problem is not None:
            self._emit(Alert("Heartbeat metrics are off", problem))

    def _stop_metrics(self) -> None:
        server, self.metrics = self.metrics, None
        if server is not None:
            server.stop()

    def stop(self, timeout: float = 1.0) -> bool:
        """Stop the ticker; True if it ended in time (then the outbox and client are closed)."""
        finished = self.ticker.stop(timeout)
        checked = self.poller.stop(timeout)
        if finished:
            self.outbox.close()
            self.ledger.close()
            self.client.close()
        if checked:
            self.ingestion_store.close()
            self.query_client.close()
            self.webhooks.close()
        else:
            log.info("A request was still in flight; its beat stays queued for the next start")
        self._stop_metrics()
        self._remove_running_file()
        return finished

    def reload(self) -> LoadedSettings:
        """Read the file again, overrides on top; a broken file keeps the last good settings."""
        loaded = load_settings(self.paths.config_file)
        self.keys.forget_cached()  # the dialog (or 'key set') may have stored a new key
        self.personal_keys.forget_cached()
        if loaded.problem:
            if self.state.snapshot.needs_setup:
                # Nothing good to keep: still needs setup, now with this file's problem.
                self.ticker.apply(self._config(loaded.settings, loaded.problem))
                self.poller.apply(self._poller_config(loaded.settings, loaded.problem))
            else:
                log.warning("Kept the last good settings: %s", loaded.problem)
            self.state.update(settings_problem=loaded.problem)
            return loaded
        before = self.settings
        self.settings = loaded.settings.with_overrides(self.overrides)
        if self.settings.metrics != before.metrics:
            self._stop_metrics()
            self._serve_metrics_or_say()
        self.ticker.apply(self._config(self.settings))
        self.poller.apply(self._poller_config(self.settings))
        self.state.update(settings_problem=None)
        self._write_running_file()
        log.info("Settings reloaded")
        return loaded

    # --- control ---

    @property
    def enabled(self) -> bool:
        """Beating or paused, as the ticker last confirmed or was asked."""
        return self.ticker.enabled

    def set_enabled(self, enabled: bool) -> None:
        """Pause or resume, and remember it in the settings file (per-run overrides stay out)."""
        self.ticker.set_enabled(enabled)
        self.state.update(enabled=enabled)  # shows at once; the ticker confirms
        self.settings = replace(self.settings, enabled=enabled)
        loaded = load_settings(self.paths.config_file)
        if loaded.problem is not None:
            return  # never rewrite a file the user has to fix
        try:
            save_settings(self.paths.config_file, replace(loaded.settings, enabled=enabled))
        except OSError as exc:
            log.warning("Could not save enabled=%s: %s", enabled, exc)

    def send_now(self) -> None:
        self.ticker.send_now()

    # --- alerts ---

    def _alert(self, before: Snapshot, after: Snapshot) -> None:
        alert = delivery_alert(before, after)
        if alert is not None:
            self._emit(alert)

    def _emit(self, alert: Alert) -> None:
        """Every alert is logged here, once; the front end shows it its own way."""
        log.warning("%s: %s", alert.title, alert.message)
        self._on_alert(alert)

    # --- what ``status`` reads while this process runs ---

    def set_tray_problem(self, problem: str | None) -> None:
        """What keeps the front end from showing itself (no tray host), for ``status``."""
        if problem != self._tray_problem:
            self._tray_problem = problem
            self._write_running_file()

    def _write_running_file(self) -> None:
        info = {
            "pid": os.getpid(),
            "front_end": self.front_end,
            "settings": self.settings.public(),
            "overrides": sorted(self.overrides.values),
        }
        if self._tray_problem:
            info["tray_problem"] = self._tray_problem
        try:
            write_atomically(self.paths.running_file, json.dumps(info).encode("utf-8"))
        except OSError as exc:
            log.info("Could not write %s: %s", self.paths.running_file, exc)

    def _remove_running_file(self) -> None:
        with contextlib.suppress(OSError):
            info = json.loads(self.paths.running_file.read_text(encoding="utf-8"))
            if info.get("pid") == os.getpid():
                self.paths.running_file.unlink()
