"""The ingestion check against a hostile loopback PostHog, for real: a project list that
points elsewhere, a gzip bomb for an answer, a slow project list under `verify --timeout`, and
kill -9 at random moments around an incident."""

from __future__ import annotations

import gzip
import json
import random
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.posthog_server import CaptureServer
from tests.conftest import KEY, App, wait_until

pytestmark = pytest.mark.slow

PERSONAL = "phx_e2eHostileKey0123456789abcdefghijklmnopq"
ENV = {"POSTHOG_PROJECT_API_KEY": KEY, "POSTHOG_PERSONAL_API_KEY": PERSONAL}


@pytest.fixture
def posthog(server: CaptureServer) -> Iterator[CaptureServer]:
    server.personal_keys = {PERSONAL}
    yield server


@pytest.fixture
def elsewhere() -> Iterator[CaptureServer]:
    """Another host (127.0.0.2): it must never see the personal key, or anything at all."""
    srv = CaptureServer(address="127.0.0.2").start()
    yield srv
    srv.stop()


def test_a_project_list_pointing_elsewhere_never_takes_the_key_there(
    app: App, posthog: CaptureServer, elsewhere: CaptureServer
) -> None:
    posthog.projects_next_base = elsewhere.url
    app.write_config(f'host = "{posthog.url}"\n')
    result = app.run("verify", "--timeout", "20", env=ENV)
    assert result.returncode == 0, result.stderr  # its path was asked of the app host
    assert elsewhere.requests == []  # the foreign host received nothing, no key
    assert PERSONAL not in result.stdout + result.stderr


def test_a_gzip_bomb_for_an_answer_is_an_error_and_costs_no_memory(
    app: App, posthog: CaptureServer
) -> None:
    bomb = gzip.compress(b" " * (512 * 1024 * 1024), compresslevel=9)  # 512 MiB in ~500 KB
    posthog.query_raw = (bomb, {"Content-Encoding": "gzip"})
    app.write_config(
        f'host = "{posthog.url}"\ninterval_seconds = 1\n[ingestion]\npoll_seconds = 1\n'
    )
    proc = app.start("run", env=ENV)
    wait_until(
        lambda: "larger than 8 MB" in app.status()["ingestion"]["sentence"],
        timeout=30,
        what="the bomb refused",
    )
    count = len(posthog.queries)
    posthog.wait_for(lambda: len(posthog.queries) >= count + 2, timeout=30)
    peak_kib = _peak_rss_kib(proc.pid)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)
    assert proc.returncode == 0
    assert peak_kib < 96 * 1024, peak_kib  # it was 3.1 GB for a 1 GiB bomb


def test_verify_timeout_bounds_a_slow_project_list(app: App, posthog: CaptureServer) -> None:
    posthog.projects_delay = 2.0  # each page of the project list takes 2 s
    app.write_config(f'host = "{posthog.url}"\n')
    started = time.monotonic()
    result = app.run("verify", "--timeout", "3", env=ENV)
    took = time.monotonic() - started
    assert result.returncode == 1
    said = result.stderr.strip()
    assert len(said.splitlines()) == 1 and ("in time" in said or "timed out" in said), said
    assert took < 3 + 2.5, took  # was 453 s for 50 pages of 9 s


def test_kill_9_around_an_incident_repeats_an_alert_only_with_its_incident_id(
    app: App, posthog: CaptureServer
) -> None:
    posthog.drop_downstream = True  # nothing is ever stored: an incident after 2 s
    app.write_config(
        f'host = "{posthog.url}"\ninterval_seconds = 1\n[ingestion]\npoll_seconds = 1\n'
        f'alert_after_seconds = 2\nwebhook_url = "{posthog.url}/webhook"\n'
    )
    chance = random.Random(20261130)
    kills = 0
    while kills < 12:
        proc = app.start("run", env=ENV)
        time.sleep(chance.uniform(0.5, 4.5))
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
        kills += 1
    proc = app.start("run", env=ENV)
    posthog.wait_for_webhooks(1, timeout=30)
    wait_until(lambda: app.status()["ingestion"]["state"] == "failing", timeout=30)
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)
    triggered = [w for w in posthog.webhooks if w["status"] == "triggered"]
    ids = {w["incident"] for w in triggered}
    assert len(ids) == 1, triggered  # a repeat (a kill between POST and record) has its id


def _peak_rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_after_a_long_downtime_no_verdict_is_not_recovery(app: App, posthog: CaptureServer) -> None:
    import sqlite3

    posthog.drop_downstream = True
    app.write_config(
        f'host = "{posthog.url}"\ninterval_seconds = 1\n[ingestion]\npoll_seconds = 1\n'
        f'alert_after_seconds = 3\nwebhook_url = "{posthog.url}/webhook"\n'
    )
    proc = app.start("run", env=ENV)
    posthog.wait_for_webhooks(1, timeout=30)  # the incident opened
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)
    # hours off: every beat it had accepted has left the query window (as expiry does)
    db = sqlite3.connect(app.state_dir / "outbox.sqlite3")
    db.execute("DELETE FROM accepted")
    db.commit()
    db.close()
    proc = app.start("run", env=ENV)  # still broken at the restart
    count = len(posthog.queries)
    posthog.wait_for(lambda: len(posthog.queries) >= count + 5, timeout=30)
    assert [w["status"] for w in posthog.webhooks] == ["triggered"]  # no false "resolved"
    posthog.drop_downstream = False  # fixed: a newer beat is stored
    (_, resolved) = posthog.wait_for_webhooks(2, timeout=30)
    assert resolved["status"] == "resolved"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)


def test_a_backlog_of_thousands_delivered_and_stored_counts_none_lost(
    app: App, posthog: CaptureServer
) -> None:
    import uuid
    from datetime import UTC, datetime, timedelta

    from heartbeat_tray.core.event import BeatTemplate
    from heartbeat_tray.core.outbox import Outbox

    app.write_config(
        f'host = "{posthog.url}"\ninterval_seconds = 1\n[ingestion]\npoll_seconds = 1\n'
        "alert_after_seconds = 3\n"
    )
    outbox = Outbox(app.state_dir / "outbox.sqlite3")  # an outage left 3,000 beats behind
    template = BeatTemplate("heartbeat", "backlog-e2e", 1, {})
    now = datetime.now(UTC)
    for n in range(3000):
        outbox.add(str(uuid.uuid4()), (now - timedelta(seconds=3000 - n)).timestamp(), template)
    outbox.close()
    proc = app.start("run", "--distinct-id", "backlog-e2e", env=ENV)
    wait_until(lambda: app.status()["outbox"]["queued"] == 0, timeout=60, what="the backlog sent")
    count = len(posthog.queries)
    posthog.wait_for(lambda: len(posthog.queries) >= count + 8, timeout=30)
    state = app.status()["ingestion"]
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=10)
    assert state["state"] == "ok" and state["lost"] == 0, state  # it was 2,002 (LIMIT 1000)
    assert len(posthog.stored) >= 3000


@pytest.mark.parametrize(
    "bad",
    [
        '[ingestion]\npoll_seconds = "²"\n',
        "[properties]\ndeep = " + "[" * 2000 + "]" * 2000 + "\n",
        '[ingestion]\nproject_id = "' + "9" * 5000 + '"\n',
    ],
    ids=["superscript", "deep", "digits"],
)
def test_a_reload_into_values_python_refuses_keeps_the_last_good_settings(
    app: App, posthog: CaptureServer, bad: str
) -> None:
    app.write_config(f'host = "{posthog.url}"\ninterval_seconds = 1\n')
    proc = app.start("run", env=ENV)
    posthog.wait_for_events(2)
    app.write_config(f'host = "{posthog.url}"\ninterval_seconds = 1\n{bad}')
    proc.send_signal(signal.SIGHUP)
    count = len(posthog.events)
    posthog.wait_for_events(count + 3)  # it did not die: the beats go on, to the same host
    status = app.run("status", "--json", env=ENV)
    assert status.returncode == 0 and json.loads(status.stdout)["settings_problem"]
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0 and "Kept the last good settings" in err
