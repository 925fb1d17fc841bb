"""The command line as a user runs it: real process, loopback PostHog, real keyring."""

from __future__ import annotations

import json
import os
import sqlite3
import ssl
import stat
import subprocess
from pathlib import Path

import pytest

from heartbeat_tray import __version__
from testkit.posthog_server import CaptureServer
from tests.conftest import KEY, App, secret_tool_lookup, wait_until

pytestmark = pytest.mark.slow

WRONG_KEY = "phc_wrongKey0123456789abcdefghijklmnopqrstuv"


def with_key(key: str = KEY) -> dict[str, str]:
    return {"POSTHOG_PROJECT_API_KEY": key}


def test_version(app: App) -> None:
    result = app.run("--version")
    assert result.returncode == 0
    assert result.stdout.strip() == f"heartbeat-tray {__version__}"


def test_once_sends_one_event_exactly_as_the_spec_says(app: App, server: CaptureServer) -> None:
    app.write_config('event = "pipeline_ok"\n[properties]\nteam = "infra"\n')
    result = app.run("once", "--host", server.url, env=with_key())
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("Accepted:")
    assert len(result.stdout.strip().splitlines()) == 1
    # capture says 200 to any well-formed key: the same line says what proves this one
    assert "Capture accepts any well-formed key; 'heartbeat-tray check' proves" in result.stdout
    (event,) = server.wait_for_events(1)
    (request,) = server.capture_requests()
    assert request.path == "/batch/"
    assert request.headers["User-Agent"] == f"heartbeat-tray/{__version__}"
    assert request.body is not None and request.body["api_key"] == KEY
    assert request.body["historical_migration"] is False
    assert event["event"] == "pipeline_ok"
    assert event["distinct_id"].startswith("heartbeat-tray-")
    assert event["timestamp"].endswith("Z") and event["_sent_at"].endswith("Z")
    props = event["properties"]
    assert props["$lib"] == "heartbeat-tray" and props["$lib_version"] == __version__
    assert props["$process_person_profile"] is False and props["$geoip_disable"] is True
    assert props["team"] == "infra" and props["sequence"] == 1
    # the generated distinct id is stable across runs
    assert app.run("once", "--host", server.url, env=with_key()).returncode == 0
    events = server.wait_for_events(2)
    assert events[1]["distinct_id"] == event["distinct_id"]
    assert events[1]["properties"]["sequence"] == 2


@pytest.mark.parametrize("status", [400, 500, 503, 401, 403, 429])
def test_once_not_accepted_exits_1_with_one_line(
    app: App, server: CaptureServer, status: int
) -> None:
    server.set_mode(status)
    result = app.run("once", "--host", server.url, env=with_key())
    assert result.returncode == 1
    assert result.stderr.startswith(f"Not accepted: {status} ")
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stdout + result.stderr


def test_once_refused_connection_exits_1(app: App, server: CaptureServer) -> None:
    server.set_mode("refuse")
    result = app.run("once", "--host", server.url, env=with_key())
    assert result.returncode == 1
    assert "connection refused" in result.stderr or "could not connect" in result.stderr


@pytest.mark.parametrize(
    ("args", "env", "fragment"),
    [
        ((), with_key("phx_" + "p" * 40), "personal API key (phx_…)"),
        (("--host", "http://posthog.example.com"), with_key(), "http:// is only for localhost"),
        (("--interval", "0"), with_key(), "Interval must be a whole number"),
    ],
)
def test_configuration_errors_exit_2_with_one_sentence(
    app: App, server: CaptureServer, args: tuple[str, ...], env: dict[str, str], fragment: str
) -> None:
    result = app.run("once", *args, env=env)
    assert result.returncode == 2
    assert fragment in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr
    assert server.capture_requests() == []  # nothing was sent


def test_no_key_stored_exits_2_and_says_how_to_set_one(
    app: App, server: CaptureServer, keyring_session: dict[str, str]
) -> None:
    result = app.run("once", "--host", server.url)
    assert result.returncode == 2
    assert result.stderr.startswith(
        "heartbeat-tray: No project API key is set; run 'heartbeat-tray key set'"
    )
    assert server.capture_requests() == []


@pytest.mark.parametrize(
    ("second_line", "problem"),
    [
        ('event = "heartbeat', "config.toml line 2: a text value has no closing quote"),
        ("interval_seconds = 0", "config.toml line 2: Interval must be a whole number"),
    ],
)
def test_a_typo_in_the_settings_file_sends_nothing_anywhere_and_moves_nothing(
    app: App, server: CaptureServer, second_line: str, problem: str
) -> None:
    content = f'host = "{server.url}"\n{second_line}\n'
    app.write_config(content)
    status = app.run("status", env=with_key())
    assert status.returncode == 0 and problem in status.stdout
    assert f"host:            {server.url}" in status.stdout  # never a host the user did not name
    for command in ("once", "check", "run"):
        result = app.run(command, env=with_key())
        assert result.returncode == 2, command
        assert problem in result.stderr and "open Settings" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
    assert server.requests == []  # not one request, to any host
    assert app.config_file.read_text() == content
    assert [p.name for p in app.config_file.parent.iterdir()] == ["config.toml"]
    data = app.status()
    assert data["settings_problem"].startswith(problem)
    assert data["settings"]["host"] == server.url


def test_unknown_settings_are_warned_about_in_status(app: App) -> None:
    app.write_config("future_option = 5\n")
    text = app.run("status").stdout
    assert "unknown setting 'future_option' — it is kept but not used." in text


@pytest.mark.parametrize("key", ["Host", "hots"])
def test_a_misspelt_host_key_sends_nothing_to_the_default_host(
    app: App, server: CaptureServer, key: str
) -> None:
    app.write_config(f'{key} = "{server.url}"\n')
    problem = f"config.toml line 1: unknown setting {key!r} — did you mean 'host'?"
    for command in ("once", "check", "run"):
        result = app.run(command, env=with_key())
        assert result.returncode == 2, command
        assert result.stderr.strip() == f"heartbeat-tray: {problem}", command
    status = app.run("status", env=with_key())
    assert status.returncode == 0 and problem in status.stdout
    assert server.requests == []


def test_check_asks_the_flags_endpoint(app: App, server: CaptureServer) -> None:
    good = app.run("check", "--host", server.url, env=with_key())
    assert good.returncode == 0 and "valid" in good.stdout
    bad = app.run("check", "--host", server.url, env=with_key(WRONG_KEY))
    assert bad.returncode == 1 and "rejected the API key (401)" in bad.stderr
    assert server.capture_requests() == []  # no event was sent
    server.set_mode("refuse")
    gone = app.run("check", "--host", server.url, env=with_key())
    assert gone.returncode == 1 and "unreachable" in gone.stderr


def test_key_set_status_once_and_clear_with_a_real_keyring(
    app: App, server: CaptureServer, keyring_session: dict[str, str]
) -> None:
    stored = app.run("key", "set", input=KEY + "\n")
    assert stored.returncode == 0, stored.stderr
    assert stored.stdout.strip() == "Stored the project API key (phc_e2eT…) in the system keyring."
    assert secret_tool_lookup(app.env) == KEY
    status = app.status()
    assert status["api_key"] == {
        "stored": True,
        "source": "keyring",
        "prefix": "phc_e2eT…",
        "error": None,
    }
    assert app.run("once", "--host", server.url).returncode == 0
    assert server.wait_for_events(1)
    cleared = app.run("key", "clear")
    assert cleared.returncode == 0 and "Removed" in cleared.stdout
    assert secret_tool_lookup(app.env) == ""
    assert app.run("once", "--host", server.url).returncode == 2
    # the key never reached a file the app wrote: settings, state, outbox, log
    for path in app.all_written_files():
        assert KEY.encode() not in path.read_bytes(), path


def test_key_set_refuses_a_personal_key_and_stores_nothing(
    app: App, keyring_session: dict[str, str]
) -> None:
    result = app.run("key", "set", input="phx_" + "q" * 40)
    assert result.returncode == 2
    assert "personal API key" in result.stderr
    assert secret_tool_lookup(app.env) == ""


def test_no_keyring_backend_is_a_clear_message(app: App, server: CaptureServer) -> None:
    env = {"PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring"}
    for args, fragment in (
        (("key", "set"), "Cannot store the project API key: the system keyring is not available"),
        (("once", "--host", server.url), "Cannot read the API key: the system keyring is not"),
    ):
        result = app.run(*args, input=KEY, env=env)
        assert result.returncode == 2
        assert fragment in result.stderr
        assert "set POSTHOG_PROJECT_API_KEY or unlock" in result.stderr
        assert "Traceback" not in result.stderr
        assert KEY not in result.stderr
    status = app.run("status", "--json", env=env)
    assert status.returncode == 0
    assert "not available" in json.loads(status.stdout)["api_key"]["error"]
    run = app.start("run", "--host", server.url, env=env)
    run.communicate(timeout=30)
    # one line per process in the log (status reads two keys), and no traceback for "no keyring"
    # one line per process in the log (status reads both keys; run's engine both, again on
    # every reload), and no traceback for "no keyring here"
    log = app.log_file.read_text()
    assert log.count("the system keyring is not available") == 3, log
    assert "Traceback" not in log
    # the environment variable is the headless way out, and it is never stored
    ok = app.run("once", "--host", server.url, env={**env, **with_key()})
    assert ok.returncode == 0
    assert all(KEY.encode() not in p.read_bytes() for p in app.all_written_files())


def test_no_session_bus_at_all_is_a_clear_message(app: App, server: CaptureServer) -> None:
    result = app.run("once", "--host", server.url)
    assert result.returncode == 2
    assert "the system keyring is not available" in result.stderr
    assert "Traceback" not in result.stderr


def test_status_shows_settings_key_prefix_outbox_and_last_outcome(
    app: App, server: CaptureServer
) -> None:
    app.run("once", "--host", server.url, env=with_key())
    status = app.run("status", "--json", env=with_key())
    data = json.loads(status.stdout)
    assert data["api_key"]["prefix"] == "phc_e2eT…" and data["api_key"]["source"] == "environment"
    assert KEY not in status.stdout
    assert data["outbox"]["queued"] == 0
    assert data["launch_at_login"] == "off"
    assert data["running"] is None
    text = app.run("status", env=with_key())
    assert "phc_e2eT…" in text.stdout and KEY not in text.stdout


def test_autostart_on_status_off(app: App) -> None:
    on = app.run("autostart", "on")
    assert on.returncode == 0 and on.stdout.startswith("Launch at login: on")
    desktop = app.home / "config" / "autostart" / "heartbeat-tray.desktop"
    assert desktop.exists()
    assert app.status()["launch_at_login"] == "on"
    desktop.unlink()  # the user removed it: status says so, nothing recreates it
    assert app.run("autostart", "status").stdout.startswith("Launch at login: off")
    assert not desktop.exists()
    app.run("autostart", "on")
    off = app.run("autostart", "off")
    assert off.stdout.startswith("Launch at login: off") and not desktop.exists()


def test_settings_file_written_by_the_app_is_private(app: App) -> None:
    from heartbeat_tray.core.settings import Settings
    from heartbeat_tray.system.settings_file import save_settings

    save_settings(app.config_file, Settings())
    assert stat.S_IMODE(os.stat(app.config_file).st_mode) == 0o600


def test_a_certificate_the_system_does_not_trust_is_a_tls_error(app: App, tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = CaptureServer(valid_keys={KEY}, tls=context).start()
    try:
        check = app.run("check", "--host", server.url, env=with_key())
        assert check.returncode == 1
        assert "could not be reached securely (TLS error: self-signed certificate)" in check.stderr
        once = app.run("once", "--host", server.url, env=with_key())
        assert once.returncode == 1
        assert once.stderr.startswith("Not accepted: TLS error: self-signed certificate")
        assert server.capture_requests() == []  # nothing was sent over an untrusted link
    finally:
        server.stop()


def test_a_locked_outbox_is_never_set_aside_and_nothing_queued_is_lost(app: App) -> None:
    from heartbeat_tray.core.event import BeatTemplate
    from heartbeat_tray.core.outbox import Outbox

    path = app.state_dir / "outbox.sqlite3"
    outbox = Outbox(path)
    for n in range(53):
        outbox.add(f"beat-{n}", 1_700_000_000.0 + n, BeatTemplate("heartbeat", "d", 60, {}))
    outbox.close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the file for a while
    try:
        locked = app.run("status", "--json")
        assert locked.returncode == 0 and "Traceback" not in locked.stderr
        assert json.loads(locked.stdout)["outbox"]["error"] is not None  # said, not hidden
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert sorted(p.name for p in app.state_dir.glob("outbox.sqlite3*"))[0] == "outbox.sqlite3"
    assert not list(app.state_dir.glob("*.bad-*"))
    assert app.status()["outbox"]["queued"] == 53


def test_help_says_where_the_key_comes_from_and_offers_only_what_means_something(
    app: App,
) -> None:
    key_help = app.run("key", "--help").stdout
    assert "standard input" in key_help
    check_help = app.run("check", "--help").stdout
    assert "--host" in check_help and "--interval" not in check_help
    assert "--event" not in check_help


def test_check_says_a_404_means_the_host_is_wrong(app: App, server: CaptureServer) -> None:
    result = app.run("check", "--host", f"{server.url}/ingest", env=with_key())
    assert result.returncode == 1
    assert "answered 404 Not Found: this is not a PostHog ingest address" in result.stderr
    assert "try again later" not in result.stderr


def test_once_on_a_closed_port_says_by_whom_and_what_to_check(app: App) -> None:
    result = app.run("once", "--host", "http://127.0.0.1:9", env=with_key())
    assert result.returncode == 1
    assert result.stderr.startswith("Not accepted: connection refused by http://127.0.0.1:9.")
    assert "Check the host and your network" in result.stderr


def test_status_says_the_last_answer_as_a_person_would(app: App, server: CaptureServer) -> None:
    server.set_mode(503)
    proc = app.start("run", "--interval", "1", "--host", server.url, env=with_key())
    wait_until(lambda: app.status()["last_outcome"], what="an answer recorded")
    proc.terminate()
    proc.communicate(timeout=10)
    text = app.run("status").stdout
    assert "last answer:     not accepted, will retry (503 Service Unavailable)" in text
    assert "transient" not in text


def test_a_quoted_key_from_key_set_is_stored_without_its_quotes(
    app: App, server: CaptureServer, keyring_session: dict[str, str]
) -> None:
    stored = app.run("key", "set", input=f'  "{KEY}"\n')
    assert stored.returncode == 0 and stored.stderr == ""  # no "unusual shape" warning
    assert secret_tool_lookup(app.env) == KEY
    assert app.run("check", "--host", server.url).returncode == 0  # was 401 with the quotes


@pytest.mark.parametrize(
    ("variable", "value", "sentence"),
    [
        (
            "POSTHOG_PROJECT_API_KEY",
            "phx_" + "w" * 40,
            "POSTHOG_PROJECT_API_KEY holds a personal API key (phx_…)",
        ),
        ("POSTHOG_PERSONAL_API_KEY", KEY, "POSTHOG_PERSONAL_API_KEY holds a project API key"),
    ],
)
def test_a_key_of_the_other_kind_in_the_environment_is_refused_naming_the_variable(
    app: App, server: CaptureServer, variable: str, value: str, sentence: str
) -> None:
    env = {**with_key(), variable: value}
    command = "once" if variable == "POSTHOG_PROJECT_API_KEY" else "verify"
    result = app.run(command, "--host", server.url, env=env)
    assert result.returncode == 2
    assert result.stderr.startswith(f"heartbeat-tray: {sentence}")
    assert value not in result.stdout + result.stderr
    status = app.run("status", "--json", env=env)
    data = json.loads(status.stdout)
    part = data["api_key"] if variable == "POSTHOG_PROJECT_API_KEY" else data["personal_api_key"]
    assert part["stored"] is None and sentence in part["error"]
    assert server.capture_requests() == []


@pytest.mark.parametrize("args", [("status",), ("status", "--json"), ("--help",)])
def test_a_reader_that_closed_the_pipe_ends_the_command_quietly(
    app: App, args: tuple[str, ...]
) -> None:
    # `heartbeat-tray status | head -3` where head has gone before status writes: a pipe whose
    # read end is closed makes every write fail, so this is that race, every time
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = subprocess.run(
            app.command(*args),
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            env=app.env,
            timeout=60,
        )
    finally:
        os.close(write_end)
    assert result.returncode in (0, 141)
    assert result.stderr == ""


def test_status_says_when_there_is_no_settings_file_yet(app: App) -> None:
    text = app.run("status").stdout
    assert f"settings file:   {app.config_file} (none yet: the defaults are in use)" in text
    assert app.status()["settings_file_exists"] is False
    app.write_config("interval_seconds = 60\n")
    text = app.run("status").stdout
    assert f"settings file:   {app.config_file}\n" in text
    assert app.status()["settings_file_exists"] is True


def test_status_never_shows_an_old_check_as_current(app: App) -> None:
    from datetime import UTC, datetime, timedelta

    from heartbeat_tray.core.ingestion_status import IngestionState, IngestionStatus
    from heartbeat_tray.ingestion.store import IngestionStore

    app.write_config("[ingestion]\npoll_seconds = 60\n")
    app.state_dir.mkdir(parents=True)
    store = IngestionStore(app.state_dir / "outbox.sqlite3")
    checked = datetime.now(UTC) - timedelta(minutes=30)
    store.save_status(
        IngestionStatus(IngestionState.OK, "Ingested 12 s behind", 12.0, last_check=checked)
    )
    store.close()
    env = {"POSTHOG_PERSONAL_API_KEY": "phx_" + "s" * 40}
    data = json.loads(app.run("status", "--json", env=env).stdout)["ingestion"]
    assert data["stale"] is True, data
    assert 1790 <= data["last_check_age_seconds"] <= 1900
    assert data["sentence"] == "Ingested 12 s behind (as of 30 min ago: no check since)"
    text = app.run("status", env=env).stdout
    assert "ingestion:       Ingested 12 s behind (as of 30 min ago: no check since)" in text


def secret_service_collections(env: dict[str, str]) -> str:
    result = subprocess.run(
        [
            "dbus-send",
            "--session",
            "--print-reply",
            "--dest=org.freedesktop.secrets",
            "/org/freedesktop/secrets",
            "org.freedesktop.DBus.Properties.Get",
            "string:org.freedesktop.Secret.Service",
            "string:Collections",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=20,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split("variant", 1)[1]


def test_reading_keys_never_creates_a_keyring_nor_asks_for_a_password(
    app: App, server: CaptureServer
) -> None:
    """A session whose gnome-keyring has no keyring yet: keyring's read would create one, which
    pops "Choose password for new keyring" on a desktop (here, with no prompter, it failed)."""
    from testkit.keyring_session import start_keyring_session

    session = start_keyring_session(app.env, login=False)
    try:
        app.env.update(session.env)
        before = secret_service_collections(app.env)
        assert "/collection/login" not in before
        data = app.status(env=with_key())  # the project key from the environment
        assert data["personal_api_key"] == {"stored": False, "prefix": None}
        sent = app.run("once", "--host", server.url, env=with_key())
        assert sent.returncode == 0, sent.stderr
        assert secret_service_collections(app.env) == before  # no keyring was made
        # Saving a key is what may make one, when the user asks: it asks for a password (no
        # prompter runs here, so the prompt is dismissed and the save says so).
        stored = app.run("key", "set", input=KEY)
        assert stored.returncode == 2 and "Prompt dismissed" in stored.stderr
    finally:
        session.stop()
