"""`heartbeat-tray run` for real: outages, kill -9, a wrong key, a hanging server, signals."""

from __future__ import annotations

import itertools
import signal
import subprocess
import time
from datetime import datetime
from typing import Any

import pytest

from testkit.posthog_server import CaptureServer
from tests.conftest import KEY, App, wait_until

pytestmark = pytest.mark.slow

ENV = {"POSTHOG_PROJECT_API_KEY": KEY}


def start_run(app: App, server: CaptureServer, interval: str = "1") -> subprocess.Popen[str]:
    return app.start("run", "--interval", interval, "--host", server.url, env=ENV)


def queued(app: App) -> int:
    return int(app.status()["outbox"]["queued"])


def by_sequence(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(events, key=lambda e: e["properties"]["sequence"])


def stamp(event: dict[str, Any]) -> float:
    return datetime.fromisoformat(event["timestamp"]).timestamp()


def assert_each_beat_exactly_once(events: list[dict[str, Any]]) -> None:
    uuids = [e["uuid"] for e in events]
    assert len(uuids) == len(set(uuids)), "a beat arrived twice"
    sequences = sorted(e["properties"]["sequence"] for e in events)
    assert sequences == list(range(1, len(sequences) + 1)), "a beat is missing"


def stop(proc: subprocess.Popen[str]) -> tuple[int, float, str]:
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    return proc.returncode, time.monotonic() - started, err


def test_a_10_second_outage_loses_nothing_and_duplicates_nothing(
    app: App, server: CaptureServer
) -> None:
    proc = start_run(app, server)
    server.wait_for_events(3)
    server.set_mode("refuse")
    down_at = time.time()
    wait_until(lambda: queued(app) >= 10, timeout=30, what="10 beats queued in the outage")
    server.set_mode("ok")
    up_at = time.time()
    assert up_at - down_at >= 9.5
    last = wait_until(lambda: queued(app) == 0 and app.status()["last_outcome"], what="drained")
    assert last["verdict"] == "accepted"
    code, took, err = stop(proc)
    assert code == 0 and took < 2.0
    events = server.events
    assert_each_beat_exactly_once(events)
    ordered = by_sequence(events)
    # each beat kept its own time: one a second, including those made while the server was down
    during = [e for e in ordered if down_at <= stamp(e) <= up_at - 0.5]
    assert len(during) >= 9
    for a, b in itertools.pairwise(ordered):
        assert 0.7 <= stamp(b) - stamp(a) <= 1.3, (a["timestamp"], b["timestamp"])
    assert "Traceback" not in err


def test_kill_9_during_an_outage_then_restart_delivers_the_queued_beats(
    app: App, server: CaptureServer
) -> None:
    proc = start_run(app, server)
    server.wait_for_events(2)
    server.set_mode("refuse")
    wait_until(lambda: queued(app) >= 4, timeout=30, what="beats queued")
    proc.kill()  # SIGKILL: no chance to clean up
    proc.wait(timeout=10)
    killed_at = time.time()
    server.set_mode("ok")
    proc2 = start_run(app, server)
    wait_until(
        lambda: queued(app) == 0 and len(server.events) >= 8, timeout=30, what="backlog delivered"
    )
    stop(proc2)
    events = server.events
    assert_each_beat_exactly_once(events)
    from_before_kill = [e for e in events if stamp(e) < killed_at]
    assert len(from_before_kill) >= 6  # 2 delivered + at least 4 queued, sent after the restart


def test_a_wrong_key_stops_the_stream_without_a_retry_storm(
    app: App, server: CaptureServer
) -> None:
    server.set_mode(401)
    proc = start_run(app, server)
    wait_until(lambda: queued(app) >= 5, timeout=30, what="beats kept while the key is rejected")
    assert len(server.capture_requests()) == 1
    status = app.status()
    assert status["last_outcome"]["verdict"] == "rejected-key"
    code, _, err = stop(proc)
    assert code == 0
    assert "PostHog rejected the API key (401 Unauthorized)" in err
    assert KEY not in err


def test_a_hanging_server_does_not_push_later_beats_off_the_grid(
    app: App, server: CaptureServer
) -> None:
    proc = start_run(app, server)
    server.wait_for_events(2)
    server.set_mode("hang")
    wait_until(lambda: len(server.capture_requests()) >= 8, timeout=30, what="requests in hang")
    server.set_mode("ok")
    wait_until(lambda: queued(app) == 0, timeout=30, what="drained")
    stop(proc)
    hung = [r.at for r in server.capture_requests() if r.status == 0]
    # each hung request was abandoned after interval/2, and the next beat was still on time
    for a, b in itertools.pairwise(hung):
        assert b - a >= 0.45
    ordered = by_sequence(server.events)
    assert_each_beat_exactly_once(ordered)
    for a, b in itertools.pairwise(ordered):
        assert 0.8 <= stamp(b) - stamp(a) <= 1.2, (a["timestamp"], b["timestamp"])


def test_sigterm_during_a_hanging_request_exits_0_within_2_seconds_and_keeps_the_beat(
    app: App, server: CaptureServer
) -> None:
    proc = start_run(app, server, interval="10")  # a 5 s request timeout
    server.wait_for_events(1)
    server.set_mode("hang")
    wait_until(lambda: len(server.capture_requests()) >= 2, timeout=30, what="a hung request")
    code, took, _ = stop(proc)
    assert code == 0
    assert took < 2.0
    assert queued(app) == 1  # the abandoned beat is still queued
    hung_uuid = server.capture_requests()[-1].events[0]["uuid"]
    server.set_mode("ok")
    proc = start_run(app, server, interval="10")
    wait_until(lambda: len(server.events) >= 3, timeout=30, what="redelivery")
    stop(proc)
    assert hung_uuid in [e["uuid"] for e in server.events]  # the same uuid, re-sent
    assert_each_beat_exactly_once(server.events)


def test_sigint_stops_cleanly_too(app: App, server: CaptureServer) -> None:
    proc = start_run(app, server)
    server.wait_for_events(1)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=5)
    assert proc.returncode == 0
    assert "Traceback" not in err


def test_a_second_run_does_not_start_a_second_stream(app: App, server: CaptureServer) -> None:
    proc = start_run(app, server)
    server.wait_for_events(1)
    second = app.run("run", "--interval", "1", "--host", server.url, env=ENV)
    assert second.returncode == 0
    assert "already sending beats for this user" in second.stderr
    assert f"process {proc.pid}" in second.stderr
    assert app.status()["running"] == proc.pid
    stop(proc)
    # a lock left by a killed process does not block the next start
    proc = start_run(app, server)
    n = len(server.events)
    server.wait_for_events(n + 1)
    proc.kill()
    proc.wait()
    proc = start_run(app, server)
    server.wait_for_events(n + 3)
    stop(proc)


def test_run_without_a_key_exits_2_with_a_sentence(app: App, server: CaptureServer) -> None:
    result = app.run(
        "run", "--host", server.url, env={"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    )
    assert result.returncode == 2
    assert "Cannot read the API key" in result.stderr
    assert "Traceback" not in result.stderr


def test_the_key_is_in_no_file_the_app_wrote(app: App, server: CaptureServer) -> None:
    server.set_mode(401)  # a rejected key gets logged: the log line must not hold it
    proc = start_run(app, server)
    wait_until(lambda: queued(app) >= 2, timeout=30, what="beats queued")
    stop(proc)
    written = app.all_written_files()
    assert app.log_file in written
    for path in written:
        assert KEY.encode() not in path.read_bytes(), path


def test_sighup_rereads_the_file_and_keeps_this_runs_overrides(
    app: App, server: CaptureServer
) -> None:
    app.write_config('event = "from-file"\n')
    proc = start_run(app, server)  # --interval 1 --host <loopback>
    server.wait_for_events(2)
    assert app.status()["settings"]["interval_seconds"] == 1  # what the running process uses
    assert app.status()["settings_source"].startswith("the running run")
    app.write_config('event = "renamed"\ninterval_seconds = 60\n')
    proc.send_signal(signal.SIGHUP)
    count = len(server.events)
    events = server.wait_for_events(count + 3, timeout=10)  # still every second, same host
    assert events[-1]["event"] == "renamed"
    assert events[-1]["properties"]["interval_seconds"] == 1
    assert app.status()["settings"]["event"] == "renamed"
    stop(proc)


def test_a_reload_into_a_broken_file_keeps_the_last_good_settings(
    app: App, server: CaptureServer
) -> None:
    proc = start_run(app, server)
    server.wait_for_events(2)
    app.write_config('host = "https://us.i.posthog.com"\nevent = "oops\n')
    proc.send_signal(signal.SIGHUP)
    count = len(server.events)
    events = server.wait_for_events(count + 3, timeout=10)  # beats go on, to the same host
    assert {e["event"] for e in events} == {"heartbeat"}
    _, _, err = stop(proc)
    assert (
        "Kept the last good settings: config.toml line 2: a text value has no closing quote" in err
    )


def test_status_while_run_runs_never_stops_a_start(app: App, server: CaptureServer) -> None:
    for _ in range(20):  # status takes no lock: a run started meanwhile always starts
        app.run("status")
    proc = start_run(app, server)
    checks = [app.start("status") for _ in range(5)]
    server.wait_for_events(2)
    for check in checks:
        check.communicate(timeout=30)
    assert proc.poll() is None
    assert app.status()["running"] == proc.pid
    stop(proc)
