"""The engine against a hostile world, for real: a proxy that redirects, a host typo (404), a
server that trickles, a full disk, a read-only state folder, a Retry-After of an hour."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from testkit.posthog_server import CaptureServer
from tests.conftest import KEY, App, wait_until

pytestmark = pytest.mark.slow

ENV = {"POSTHOG_PROJECT_API_KEY": KEY}


def queued(app: App, env: dict[str, str] | None = None) -> int:
    return int(app.status(env)["outbox"]["queued"])


def stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    return err


@pytest.mark.parametrize("answer", [404, 307])
def test_a_wrong_host_keeps_the_whole_backlog_and_recovers_by_itself(
    app: App, server: CaptureServer, answer: int
) -> None:
    app.write_config(f'host = "{server.url}"\ninterval_seconds = 1\n')
    proc = app.start("run", env=ENV)
    server.wait_for_events(2)
    server.set_mode(503)
    wait_until(lambda: queued(app) >= 5, timeout=20, what="5 beats queued in an outage")
    server.set_mode(answer)
    wrong_since = time.monotonic()
    wait_until(lambda: queued(app) >= 12, timeout=20, what="beats kept behind the wrong host")
    wrong = [r for r in server.capture_requests() if r.status == answer]
    wrong_for = time.monotonic() - wrong_since
    assert len(wrong) <= wrong_for + 1  # the live beat once per interval: no storm
    assert all(r.path.rstrip("/") == "/batch" for r in server.capture_requests())  # no redirect
    status = app.run("status", "--json", env=ENV)
    assert json.loads(status.stdout)["missed"] == 0
    server.set_mode("ok")  # the proxy is back; nobody touches the settings
    wait_until(lambda: queued(app) == 0, timeout=30, what="the backlog delivered by itself")
    err = stop(proc)
    assert f"answered {answer}" in err and "the host or path is wrong" in err
    uuids = [e["uuid"] for e in server.events]
    assert len(uuids) == len(set(uuids))
    sequences = sorted(e["properties"]["sequence"] for e in server.events)
    assert sequences == list(range(1, len(sequences) + 1))  # not one beat lost


def test_a_trickling_server_cannot_hold_once_past_its_10_second_deadline(
    app: App, server: CaptureServer
) -> None:
    server.set_mode("trickle")
    started = time.monotonic()
    result = app.run("once", "--host", server.url, env=ENV)
    took = time.monotonic() - started
    assert result.returncode == 1
    assert "timed out (no complete answer within 10 s)" in result.stderr
    assert took < 20, took  # was 36 s and more: httpx's timeout is per read


def test_a_trickling_server_does_not_stop_the_clock(app: App, server: CaptureServer) -> None:
    proc = app.start("run", "--interval", "2", "--host", server.url, env=ENV)
    server.wait_for_events(1)
    server.set_mode("trickle")
    wait_until(lambda: queued(app) >= 5, timeout=20, what="grid beats made while it trickles")
    server.set_mode("ok")
    wait_until(lambda: queued(app) == 0, timeout=30, what="the beats delivered")
    stop(proc)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs: a disk that fills up (the machine's root is needed to mount it)."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], check=True)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as handle, contextlib.suppress(OSError):
        while True:
            handle.write(b"\0" * 65536)
            handle.flush()
            os.fsync(handle.fileno())
    return filler


def test_a_full_disk_does_not_stop_the_heartbeat_and_it_recovers(
    app: App, server: CaptureServer, small_disk: Path
) -> None:
    env = {**ENV, "XDG_STATE_HOME": str(small_disk)}
    proc = app.start("run", "--interval", "1", "--host", server.url, env=env)
    server.wait_for_events(2)
    server.set_mode(503)
    wait_until(lambda: queued(app, env) >= 5, timeout=20, what="5 beats queued in an outage")
    filler = fill(small_disk)
    full_since = time.monotonic()
    server.set_mode("ok")
    count = len(server.events)
    server.wait_for_events(count + 6, timeout=15)  # live beats go on, disk full or not
    requests = len(server.capture_requests())
    full_for = time.monotonic() - full_since
    filler.unlink()
    wait_until(lambda: queued(app, env) == 0, timeout=20, what="the backlog delivered")
    count = len(server.events)
    server.wait_for_events(count + 3, timeout=15)  # live beats kept on disk again
    err = stop(proc)
    assert "Disk full — beats are not being kept" in err or "database or disk is full" in err
    assert "Beats are kept on disk again" in err, err
    assert "Traceback" not in err and "Logging error" not in err
    uuids = [e["uuid"] for e in server.events]
    assert len(uuids) == len(set(uuids))  # no beat PostHog accepted was sent again
    sent = [e["uuid"] for r in server.capture_requests() for e in r.events]
    assert max(sent.count(u) for u in set(sent)) <= 2  # once refused (503), once accepted
    assert requests <= 2 * (full_for + 2)  # no resend storm while the disk was full


def test_a_read_only_state_folder_is_one_sentence(
    app: App, server: CaptureServer, small_disk: Path
) -> None:
    env = {**ENV, "XDG_STATE_HOME": str(small_disk)}
    assert app.run("once", "--host", server.url, env=env).returncode == 0
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    for command in ("once", "run"):
        result = app.run(command, "--host", server.url, env=env)
        assert result.returncode == 2, result.stderr
        assert result.stderr.startswith(f"heartbeat-tray: The state folder {small_disk}")
        assert "cannot be written (Read-only file system)" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    status = app.run("status", env=env)
    assert status.returncode == 0 and "Traceback" not in status.stderr + status.stdout
    assert "Logging error" not in status.stderr


def test_a_retry_after_hold_is_shown_until_when(app: App, server: CaptureServer) -> None:
    server.set_mode(429, retry_after="3600")
    proc = app.start("run", "--interval", "1", "--host", server.url, env=ENV)
    held = wait_until(
        lambda: app.status()["rate_limited_until"], timeout=15, what="the hold in status"
    )
    text = app.run("status").stdout
    assert "rate limited:    PostHog asked to wait until" in text
    assert held.endswith("Z")
    stop(proc)


def test_the_state_and_log_folders_are_private(app: App, server: CaptureServer) -> None:
    assert app.run("once", "--host", server.url, env=ENV).returncode == 0
    for folder in (app.state_dir, app.log_file.parent):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder
    assert stat.S_IMODE(app.log_file.stat().st_mode) == 0o600
