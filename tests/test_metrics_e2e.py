"""Prometheus metrics for real: `run --metrics` beside the loopback PostHog, scraped every second
by a real Prometheus server (Debian's package) that loads the example rules from docs/.

The test asks Prometheus's own HTTP API what it sees: the lag series, and the alert rules firing
when the loopback PostHog stores beats late and then drops them.
"""

from __future__ import annotations

import json
import shutil
import signal
import socket
import subprocess
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from testkit.posthog_server import CaptureServer
from tests.conftest import KEY, ROOT, App, wait_until

pytestmark = pytest.mark.slow

PERSONAL = "phx_e2ePersonalKey0123456789abcdefghijklmnop"
ENV = {"POSTHOG_PROJECT_API_KEY": KEY, "POSTHOG_PERSONAL_API_KEY": PERSONAL}
RULES = ROOT / "docs" / "prometheus-rules.yml"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as answer:
        body: bytes = answer.read()
        return body.decode()


def quietly(check: Callable[[], bool]) -> Callable[[], bool]:
    """The check, false while what it reads is not there yet (no answer, no series)."""

    def run() -> bool:
        try:
            return check()
        except (OSError, KeyError, IndexError):
            return False

    return run


def scrape(port: int) -> dict[str, dict[tuple[tuple[str, str], ...], float]]:
    """name → labels → value, as a scraper parses the endpoint."""
    found: dict[str, dict[tuple[tuple[str, str], ...], float]] = {}
    for family in text_string_to_metric_families(get(f"http://127.0.0.1:{port}/metrics")):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def configure(app: App, server: CaptureServer) -> None:
    app.write_config(
        f'host = "{server.url}"\ninterval_seconds = 1\n'
        "[ingestion]\npoll_seconds = 1\nalert_after_seconds = 4\n"
    )


@pytest.fixture
def posthog(server: CaptureServer) -> Iterator[CaptureServer]:
    server.personal_keys = {PERSONAL}
    yield server


class Prometheus:
    def __init__(self, tmp: Path, target_port: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        # The example rules, with test-sized thresholds: 10 min and 5 min become seconds.
        rules = yaml.safe_load(RULES.read_text())
        for rule in rules["groups"][0]["rules"]:
            rule["expr"] = (
                rule["expr"]
                .replace("> 600", "> 8")
                .replace("[15m]", "[20s]")
                .replace("> 300", "> 1")
            )
            rule["for"] = "0s"
        (tmp / "rules.yml").write_text(yaml.safe_dump(rules))
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(tmp / "rules.yml")],
            "scrape_configs": [
                {
                    "job_name": "heartbeat",
                    "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
                }
            ],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.proc = subprocess.Popen(
            [
                shutil.which("prometheus") or "prometheus",
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=open(tmp / "prometheus.log", "wb"),  # noqa: SIM115 - closed with the process
        )
        self.log = tmp / "prometheus.log"
        wait_until(self._ready, timeout=30, what="Prometheus to be ready")

    def _ready(self) -> bool:
        try:
            return "Ready" in get(f"{self.url}/-/ready")
        except OSError:
            return False

    def api(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        data = json.loads(get(f"{self.url}/api/v1/{path}?{query}"))
        assert data["status"] == "success", data
        return data["data"]

    def query(self, promql: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self.api("query", query=promql)["result"]
        return result

    def firing(self) -> set[str]:
        return {
            a["labels"]["alertname"] for a in self.api("alerts")["alerts"] if a["state"] == "firing"
        }

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def test_the_example_rules_are_valid_for_promtool() -> None:
    checked = subprocess.run(
        ["promtool", "check", "rules", str(RULES)], capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0 and "SUCCESS: 3 rules found" in checked.stdout, checked


def test_prometheus_sees_the_lag_and_the_rules_fire_when_posthog_drops_beats(
    app: App, posthog: CaptureServer, tmp_path: Path
) -> None:
    configure(app, posthog)
    posthog.ingest_lag = 2.0
    port = free_port()
    proc = app.start("run", "--metrics", f"127.0.0.1:{port}", env=ENV)
    prometheus = None
    try:
        wait_until(
            quietly(lambda: scrape(port)["heartbeat_ingestion_lag_seconds_count"][()] >= 3),
            timeout=30,
            what="three lags in the histogram",
        )
        direct = scrape(port)
        assert direct["heartbeat_beats_total"][(("outcome", "made"),)] >= 3
        assert direct["heartbeat_beats_total"][(("outcome", "accepted"),)] >= 3
        assert direct["heartbeat_ingestion_state"][(("state", "ok"),)] == 1.0
        assert direct["heartbeat_ingestion_state"][(("state", "failing"),)] == 0.0
        assert direct["heartbeat_outbox_queued"][()] == 0.0
        buckets = {
            dict(k)["le"]: v for k, v in direct["heartbeat_ingestion_lag_seconds_bucket"].items()
        }
        count = direct["heartbeat_ingestion_lag_seconds_count"][()]
        # each lag is PostHog's ~2 s: none at or below 1 s, every one at or below 5 s
        assert buckets["1"] == 0.0 and buckets["5"] == buckets["+Inf"] == count
        assert direct["heartbeat_build_info"]
        assert KEY not in get(f"http://127.0.0.1:{port}/metrics")

        prometheus = Prometheus(tmp_path, port)
        wait_until(
            lambda: prometheus.query("heartbeat_ingestion_lag_seconds_count > 0"),
            timeout=30,
            what="Prometheus to have the lag series",
        )
        p95 = "histogram_quantile(0.95, rate(heartbeat_ingestion_lag_seconds_bucket[20s]))"
        wait_until(lambda: prometheus.query(p95), timeout=30, what="a p95 of the lag")
        assert 2.0 <= float(prometheus.query(p95)[0]["value"][1]) <= 5.0
        # 2 s lags are over the test-sized 1 s slow threshold: the slow rule fires
        wait_until(
            lambda: "HeartbeatIngestionSlow" in prometheus.firing(),
            timeout=30,
            what="the slow rule to fire",
        )
        assert "HeartbeatNotIngested" not in prometheus.firing()

        posthog.drop_downstream = True  # capture still says 200; nothing is stored
        wait_until(
            lambda: "HeartbeatNotIngested" in prometheus.firing(),
            timeout=30,
            what="the not-ingested rule to fire",
        )
        assert "HeartbeatNotAccepted" not in prometheus.firing()  # capture still accepts
        wait_until(
            lambda: prometheus.query('heartbeat_ingestion_state{state="failing"} == 1'),
            timeout=30,
            what="the app's own incident in Prometheus",
        )
        incidents = 'heartbeat_ingestion_incidents_total{kind="not_ingested"}'
        wait_until(
            quietly(lambda: float(prometheus.query(incidents)[0]["value"][1]) == 1.0),
            timeout=30,
            what="one not-ingested incident counted",
        )
    finally:
        if prometheus is not None:
            prometheus.stop()
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    assert "Traceback" not in err


def test_a_port_in_use_a_bad_address_or_a_bad_slow_threshold_is_one_sentence_exit_2(
    app: App, posthog: CaptureServer
) -> None:
    configure(app, posthog)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = app.run("run", "--metrics", f"127.0.0.1:{port}", env=ENV)
    assert busy.returncode == 2
    assert busy.stderr.strip().splitlines() == [
        f"heartbeat-tray: The metrics address 127.0.0.1:{port} is in use by another program; "
        "choose a free "
        "port with --metrics HOST:PORT or [metrics] listen."
    ]
    bad = app.run("run", "--metrics", "metrics.example.com:9464", env=ENV)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
    assert "'metrics.example.com' is not an IP address" in bad.stderr
    app.write_config(f'host = "{posthog.url}"\n[metrics]\nlisten = ":9464"\n')
    broken = app.run("run", env=ENV)
    assert broken.returncode == 2 and "':9464' is not a metrics address" in broken.stderr
    app.write_config(
        f'host = "{posthog.url}"\n[ingestion]\npoll_seconds = 120\nslow_after_seconds = 30\n'
    )
    too_soon = app.run("run", env=ENV)
    assert too_soon.returncode == 2 and too_soon.stderr.count("\n") == 1
    assert "config.toml line 4: Slow after (30 s) is shorter than the check interval" in (
        too_soon.stderr
    )
    assert posthog.capture_requests() == []
    assert "Traceback" not in busy.stderr + bad.stderr + broken.stderr + too_soon.stderr
