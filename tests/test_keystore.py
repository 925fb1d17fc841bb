"""The API key: environment first, then the keyring; clear sentences when the keyring fails."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import keyring
import pytest
from keyring.backend import KeyringBackend
from keyring.backends.fail import Keyring as NoKeyring
from keyring.errors import InitError, KeyringLocked

from heartbeat_tray.core.api_key import (
    ENV_VAR,
    PERSONAL_ENV_VAR,
    InvalidKey,
    KeyKind,
    KeyringUnavailable,
    MisplacedKey,
    check_key_text,
    check_personal_key_text,
)
from heartbeat_tray.system.key_handover import KEY_FD_VAR, PARENT_VAR, read_in_child_process
from heartbeat_tray.system.keystore import SERVICE, USERNAME, KeyStore
from heartbeat_tray.system.log_setup import RedactingFormatter, never_log
from tests.fakes import MemoryKeyring

KEY = "phc_" + "c" * 43


def test_the_key_is_stored_under_the_spec_service_and_username(
    memory_keyring: MemoryKeyring,
) -> None:
    store = KeyStore(environ={})
    assert store.get() is None
    store.store(KEY)
    assert memory_keyring.store == {(SERVICE, USERNAME): KEY}
    fresh = KeyStore(environ={}).get()
    assert fresh is not None and fresh.value == KEY and fresh.source == "keyring"
    assert fresh.masked == "phc_cccc…"
    assert KeyStore(environ={}).clear() is True
    assert KeyStore(environ={}).clear() is False  # already gone is not an error


def test_the_keyring_is_read_once(memory_keyring: MemoryKeyring) -> None:
    memory_keyring.store[(SERVICE, USERNAME)] = KEY
    store = KeyStore(environ={})
    assert store.get() is not None
    memory_keyring.store.clear()
    assert store.get() is not None  # cached; no second keyring round trip per beat


def test_the_environment_overrides_the_keyring(memory_keyring: MemoryKeyring) -> None:
    memory_keyring.store[(SERVICE, USERNAME)] = KEY
    key = KeyStore(environ={ENV_VAR: "phc_fromenv" + "d" * 33}).get()
    assert key is not None and key.source == "environment" and key.value.startswith("phc_fromenv")


class Raising(KeyringBackend):
    priority = 1  # type: ignore[assignment]
    error: Exception = InitError("Prompt dismissed")

    def get_password(self, service: str, username: str) -> str | None:
        raise self.error

    def set_password(self, service: str, username: str, password: str) -> None:
        raise self.error

    def delete_password(self, service: str, username: str) -> None:
        raise self.error


@pytest.mark.parametrize(
    "backend_error",
    [None, InitError("Prompt dismissed"), KeyringLocked("locked")],
    ids=["no-backend", "init-error", "locked"],
)
def test_keyring_failures_become_one_clear_sentence_never_a_fallback(
    backend_error: Exception | None,
) -> None:
    previous = keyring.get_keyring()
    backend: KeyringBackend = NoKeyring() if backend_error is None else Raising()
    if backend_error is not None:
        Raising.error = backend_error
    keyring.set_keyring(backend)
    try:
        for action in (lambda s: s.get(), lambda s: s.store(KEY), lambda s: s.clear()):
            with pytest.raises(KeyringUnavailable) as caught:
                action(KeyStore(environ={}))
            message = str(caught.value)
            assert message.startswith("the system keyring is not available: ")
            assert f"set {ENV_VAR} or unlock" in message
            assert KEY not in message
    finally:
        keyring.set_keyring(previous)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("phx_" + "a" * 40, "personal API key (phx_…); use the project API key (phc_…)"),
        ("phs_" + "a" * 40, "secret key"),
        ("", "empty"),
        ("phc_abc def", "may only contain"),
        ("phc_" + "a" * 70, "longer than 64"),
    ],
)
def test_wrong_kinds_of_key_are_refused_with_a_sentence(text: str, fragment: str) -> None:
    with pytest.raises(InvalidKey) as caught:
        check_key_text(text)
    assert fragment in str(caught.value)


def test_an_unusual_key_shape_is_a_warning_not_a_refusal() -> None:
    key, warning = check_key_text("  legacykey1234567890  \n")
    assert key == "legacykey1234567890"
    assert warning is not None and "does not look like a project API key" in warning
    assert check_key_text(KEY) == (KEY, None)


PERSONAL = "phx_" + "p" * 40


@pytest.mark.parametrize(
    "pasted",
    [KEY, f" {KEY}\n", f'"{KEY}"', f"'{KEY}'", f'  "{KEY}"  \n', f'" {KEY} "'],
)
def test_a_key_with_quotes_or_spaces_around_it_is_the_same_key_everywhere(
    pasted: str, memory_keyring: MemoryKeyring
) -> None:
    assert check_key_text(pasted) == (KEY, None)  # stdin and the dialog
    assert KeyStore(environ={ENV_VAR: pasted}).get() == KeyStore(environ={ENV_VAR: KEY}).get()
    memory_keyring.set_password(SERVICE, USERNAME, pasted)  # stored by an older version
    stored = KeyStore(environ={}).get()
    assert stored is not None and stored.value == KEY
    personal = pasted.replace(KEY, PERSONAL)
    assert check_personal_key_text(personal) == PERSONAL
    env = {PERSONAL_ENV_VAR: personal}
    from_env = KeyStore(environ=env, kind=KeyKind.PERSONAL).get()
    assert from_env is not None and from_env.value == PERSONAL


def test_only_one_pair_of_matching_quotes_is_removed() -> None:
    mismatched = f"\"{KEY}'"
    key, warning = check_key_text(mismatched)
    assert key == mismatched and warning is not None  # not a quoted key: kept, and warned
    assert check_key_text(f'""{KEY}""')[0] == f'"{KEY}"'


@pytest.mark.parametrize(
    ("kind", "variable", "value", "words"),
    [
        (KeyKind.PROJECT, ENV_VAR, PERSONAL, "POSTHOG_PROJECT_API_KEY holds a personal API key"),
        (KeyKind.PERSONAL, PERSONAL_ENV_VAR, KEY, "POSTHOG_PERSONAL_API_KEY holds a project API"),
    ],
)
def test_a_key_of_the_other_kind_in_an_environment_variable_is_refused_by_name(
    kind: KeyKind, variable: str, value: str, words: str, memory_keyring: MemoryKeyring
) -> None:
    with pytest.raises(MisplacedKey) as caught:
        KeyStore(environ={variable: value}, kind=kind).get()
    assert str(caught.value).startswith(words)
    assert value not in str(caught.value)


def test_log_lines_never_contain_the_key() -> None:
    formatter = RedactingFormatter("%(message)s")
    odd_key = "legacykey1234567890"
    never_log(odd_key)
    record = logging.LogRecord(
        "t", logging.INFO, "", 0, "sent with %s and %s", (KEY, odd_key), None
    )
    line = formatter.format(record)
    assert KEY not in line and odd_key not in line
    assert "phc_cccc…" in line


ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def file_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A keyring a child process can read too."""
    store = tmp_path / "keyring.json"
    store.write_text(json.dumps({f"{SERVICE}/{USERNAME}": KEY}))
    monkeypatch.setenv("TEST_KEYRING_FILE", str(store))
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "tests.file_keyring.FileKeyring")
    monkeypatch.setenv("PYTHONPATH", str(ROOT))
    monkeypatch.delenv(ENV_VAR, raising=False)
    return store


def test_the_key_reaches_the_parent_through_its_own_pipe(file_keyring: Path) -> None:
    assert read_in_child_process() == KEY
    file_keyring.write_text("{}")
    assert read_in_child_process() is None


def test_the_hand_over_prints_the_key_to_no_pipe_and_no_terminal(file_keyring: Path) -> None:
    command = [sys.executable, "-m", "heartbeat_tray", "_key-pipe"]
    piped = subprocess.run(command, capture_output=True, text=True, timeout=30)
    assert piped.returncode == 2 and KEY not in piped.stdout + piped.stderr
    # Even told to use a pipe, it refuses one that its parent did not make for it.
    read_fd, write_fd = os.pipe()
    try:
        forged = subprocess.run(
            command,
            capture_output=True,
            text=True,
            timeout=30,
            pass_fds=(write_fd,),
            env={**os.environ, KEY_FD_VAR: str(write_fd), PARENT_VAR: "1"},
        )
        os.close(write_fd)
        with os.fdopen(read_fd) as pipe:
            leaked = pipe.read()
    finally:
        with contextlib.suppress(OSError):
            os.close(write_fd)
    assert forged.returncode == 2 and leaked == "" and KEY not in forged.stdout


def test_an_internal_command_is_not_offered_in_help_or_errors() -> None:
    command = [sys.executable, "-m", "heartbeat_tray"]
    wrong = subprocess.run([*command, "frobnicate"], capture_output=True, text=True, timeout=30)
    helped = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=30)
    assert wrong.returncode == 2 and "frobnicate" in wrong.stderr
    assert "_key-pipe" not in wrong.stderr + helped.stdout


def test_reading_in_a_child_process_reports_keyring_failures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[1]))
    with pytest.raises(KeyringUnavailable, match=r"^the system keyring is not available: no"):
        read_in_child_process()
