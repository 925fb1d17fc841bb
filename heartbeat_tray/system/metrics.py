"""Prometheus metrics for a fleet of headless ``run``s (spec §10.1), with ``prometheus-client``.

A presenter like the tray: each scrape reads the latest snapshot and writes it in the text
format; nothing is computed between scrapes. The server thread sleeps in ``select()`` with no
timeout (``HTTPServer.serve_forever`` would wake twice a second), so a process nobody scrapes
still has no wakeups between beats.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import platform
import socket
import threading
from collections.abc import Callable, Iterator
from http.server import ThreadingHTTPServer
from typing import Any

from prometheus_client import CollectorRegistry, MetricsHandler
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.process_collector import ProcessCollector

from heartbeat_tray import __version__
from heartbeat_tray.core.app_state import Snapshot
from heartbeat_tray.core.ingestion_status import IncidentKind, IngestionState

log = logging.getLogger(__name__)

INCIDENT_KINDS = tuple(kind.value for kind in IncidentKind)


class MetricsError(Exception):
    """The metrics endpoint cannot listen; ``str()`` is one sentence saying what to do."""


class SnapshotCollector:
    """The app's state as Prometheus metric families, built at scrape time."""

    def __init__(self, snapshot: Callable[[], Snapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        beats = CounterMetricFamily(
            "heartbeat_beats", "Beats since start, by outcome.", labels=["outcome"]
        )
        for outcome in ("made", "accepted", "refused", "missed"):
            beats.add_metric([outcome], getattr(snap.beats, outcome))
        yield beats
        yield GaugeMetricFamily(
            "heartbeat_outbox_queued", "Beats waiting in the outbox.", value=snap.queued
        )
        if snap.last_accepted is not None:
            yield GaugeMetricFamily(
                "heartbeat_last_accepted_timestamp_seconds",
                "When PostHog last accepted a beat (Unix time).",
                value=snap.last_accepted.timestamp(),
            )
        ingestion = snap.ingestion
        if ingestion.last_ingested is not None:
            yield GaugeMetricFamily(
                "heartbeat_ingestion_last_ingested_timestamp_seconds",
                "PostHog's timestamp of the newest beat seen stored (Unix time).",
                value=ingestion.last_ingested.timestamp(),
            )
        state = GaugeMetricFamily(
            "heartbeat_ingestion_state",
            "The ingestion check's state: 1 for the current one.",
            labels=["state"],
        )
        for each in IngestionState:
            state.add_metric([each.value], 1.0 if each is ingestion.state else 0.0)
        yield state
        lags = snap.checks.lags
        yield HistogramMetricFamily(
            "heartbeat_ingestion_lag_seconds",
            "Each live beat's lag from its time to PostHog storing it, seen once.",
            buckets=lags.cumulative(),
            sum_value=lags.total,
        )
        yield CounterMetricFamily(
            "heartbeat_ingestion_lost",
            "Accepted beats the check proved PostHog never stored.",
            value=snap.checks.lost,
        )
        incidents = CounterMetricFamily(
            "heartbeat_ingestion_incidents", "Incidents opened, by kind.", labels=["kind"]
        )
        for kind in INCIDENT_KINDS:
            incidents.add_metric([kind], snap.checks.incidents.get(kind, 0))
        yield incidents
        info = GaugeMetricFamily(
            "heartbeat_build_info", "The running version.", labels=["version", "python"]
        )
        info.add_metric([__version__, platform.python_version()], 1.0)
        yield info


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a scraper that hangs never holds up a stop
    timeout = None  # handle_request() sleeps until a request comes


def _server_class(host: str) -> type[_Server]:
    if ":" in host:

        class _Server6(_Server):
            address_family = socket.AF_INET6

        return _Server6
    return _Server


class MetricsServer:
    def __init__(self, host: str, port: int, snapshot: Callable[[], Snapshot]) -> None:
        self.host, self.port = host, port
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(SnapshotCollector(snapshot))
        ProcessCollector(registry=self.registry)  # RSS, CPU, open files: read at scrape time
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def start(self) -> None:
        """Listen now (raises MetricsError with a sentence), then serve on a thread."""
        handler: Any = MetricsHandler.factory(self.registry)
        try:
            self._server = _server_class(self.host)((self.host, self.port), handler)
        except OSError as exc:
            raise MetricsError(_bind_problem(self.host, self.port, exc)) from None
        self.port = self._server.server_address[1]  # port 0: the one the system chose
        self._thread = threading.Thread(target=self._serve, name="metrics", daemon=True)
        self._thread.start()
        log.info("Metrics at %s", self.url)

    def _serve(self) -> None:
        server = self._server
        assert server is not None
        while not self._stopping.is_set():
            try:
                server.handle_request()
            except Exception:
                log.exception("The metrics endpoint failed a request")

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        # Wake the thread from its untimed select(): one connection to itself.
        wake = "::1" if server.address_family == socket.AF_INET6 else "127.0.0.1"
        if self.host not in ("0.0.0.0", "::"):
            wake = self.host
        with contextlib.suppress(OSError):
            socket.create_connection((wake, self.port), timeout=1).close()
        if self._thread is not None:
            self._thread.join(timeout=2)
        server.server_close()


def _bind_problem(host: str, port: int, exc: OSError) -> str:
    where = f"{host}:{port}" if ":" not in host else f"[{host}]:{port}"
    if exc.errno == errno.EADDRINUSE:
        return (
            f"The metrics address {where} is in use by another program; choose a free port "
            "with --metrics HOST:PORT or [metrics] listen."
        )
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"Listening on {where} needs privileges; choose a port above 1023."
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"{host} is not an address of this machine; choose one it has, or 127.0.0.1."
    return f"The metrics endpoint cannot listen on {where} ({exc.strerror or exc})."
