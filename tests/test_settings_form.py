"""The settings dialog's model, without a display: validation, and all-or-nothing saves."""

from __future__ import annotations

from pathlib import Path

import keyring
import pytest

from heartbeat_tray.core.settings import EU_HOST, Settings
from heartbeat_tray.dialog.form import (
    FormValues,
    SaveFailed,
    check_form,
    events_per_day,
    form_from_settings,
    parse_properties,
    save_form,
)
from heartbeat_tray.system.keystore import SERVICE, USERNAME, KeyStore
from heartbeat_tray.system.launch_at_login import LaunchAtLoginError
from heartbeat_tray.system.settings_file import load_settings
from tests.fakes import MemoryKeyring

KEY = "phc_" + "f" * 43


class FakeLaunch:
    def __init__(self, fail: bool = False) -> None:
        self.on = False
        self.fail = fail

    def enable(self) -> None:
        if self.fail:
            raise LaunchAtLoginError("Could not write the autostart file (read-only).")
        self.on = True

    def disable(self) -> None:
        self.on = False

    def is_enabled(self) -> bool:
        return self.on

    def describe(self) -> str:
        return "fake"


@pytest.mark.parametrize(
    ("changes", "field", "sentence"),
    [
        ({"interval": "0"}, "interval_seconds", "Interval must be a whole number of seconds"),
        ({"interval": "1.5"}, "interval_seconds", "between 1 and 86400"),
        ({"host_choice": "self", "custom_host": "http://ph.example.com"}, "host", "https://"),
        ({"host_choice": "self", "custom_host": ""}, "host", "Enter your PostHog instance"),
        ({"api_key": "phx_" + "a" * 40}, "api_key", "personal API key (phx_…)"),
        ({"event": "  "}, "event", "Event name must not be empty"),
        ({"properties": "no equals sign"}, "properties", "Line 1 of the extra properties"),
        ({"properties": "sequence = 3"}, "properties", "set by Heartbeat Tray itself"),
    ],
)
def test_each_invalid_field_gets_one_sentence_and_no_settings(
    changes: dict[str, str], field: str, sentence: str
) -> None:
    values = FormValues(api_key=KEY)
    for name, value in changes.items():
        setattr(values, name, value)
    checked = check_form(values, Settings(), key_stored=False)
    assert not checked.ok
    assert sentence in checked.errors[field]
    assert checked.settings is None


def test_no_key_anywhere_is_an_error_but_a_stored_key_may_be_kept() -> None:
    assert "api_key" in check_form(FormValues(), Settings(), key_stored=False).errors
    kept = check_form(FormValues(), Settings(), key_stored=True)
    assert kept.ok and kept.new_key is None


def test_a_valid_form_becomes_settings_and_keeps_unknown_keys() -> None:
    base = Settings(unknown={"future": 1})
    values = FormValues(
        host_choice="eu",
        api_key=f"  {KEY} ",
        event="pipeline_ok",
        interval="30",
        properties='team = infra\nlevel = 3\nflag = true\nquoted = "42"',
        backfill=False,
    )
    checked = check_form(values, base, key_stored=False)
    assert checked.ok and checked.settings is not None
    s = checked.settings
    assert (s.host, s.event, s.interval_seconds, s.backfill) == (EU_HOST, "pipeline_ok", 30, False)
    assert s.properties == {"team": "infra", "level": 3, "flag": True, "quoted": "42"}
    assert s.unknown == {"future": 1}
    assert checked.new_key == KEY
    assert "Below 60 s" in checked.warnings["interval_seconds"]


def test_the_form_shows_what_the_file_holds() -> None:
    settings = Settings(host="https://ph.example.com", properties={"team": "infra", "n": 2})
    values = form_from_settings(settings, launch_at_login=True)
    assert values.host_choice == "self" and values.custom_host == "https://ph.example.com"
    assert parse_properties(values.properties) == {"team": "infra", "n": 2}
    assert values.launch_at_login is True


def test_events_per_day() -> None:
    assert events_per_day("60") == "1,440 events a day"
    assert events_per_day("1") == "86,400 events a day"
    assert events_per_day("x") == ""


def test_save_writes_file_key_and_launch_at_login(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    config = tmp_path / "config.toml"
    checked = check_form(FormValues(api_key=KEY, interval="90"), Settings(), key_stored=False)
    launch = FakeLaunch()
    save_form(checked, True, config_file=config, keys=KeyStore(environ={}), launch=launch)
    assert load_settings(config).settings.interval_seconds == 90
    assert memory_keyring.store[(SERVICE, USERNAME)] == KEY
    assert launch.on
    assert KEY not in config.read_text()


def test_a_keyring_failure_saves_nothing(tmp_path: Path) -> None:
    from keyring.backends.fail import Keyring as NoKeyring

    previous = keyring.get_keyring()
    keyring.set_keyring(NoKeyring())
    try:
        config = tmp_path / "config.toml"
        config.write_text("interval_seconds = 60\n")
        launch = FakeLaunch()
        checked = check_form(FormValues(api_key=KEY, interval="90"), Settings(), False)
        with pytest.raises(SaveFailed, match="The key could not be stored") as caught:
            save_form(checked, True, config_file=config, keys=KeyStore(environ={}), launch=launch)
        assert "Nothing was saved" in str(caught.value)
        assert config.read_text() == "interval_seconds = 60\n"
        assert not launch.on  # the launch-at-login step was undone
    finally:
        keyring.set_keyring(previous)


def test_a_launch_at_login_failure_saves_nothing(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    config = tmp_path / "config.toml"
    checked = check_form(FormValues(api_key=KEY), Settings(), key_stored=False)
    with pytest.raises(SaveFailed, match="read-only"):
        save_form(
            checked, True, config_file=config, keys=KeyStore(environ={}), launch=FakeLaunch(True)
        )
    assert not config.exists()
    assert memory_keyring.store == {}


def test_an_unwritable_settings_file_restores_the_previous_key(
    tmp_path: Path, memory_keyring: MemoryKeyring
) -> None:
    memory_keyring.store[(SERVICE, USERNAME)] = "phc_old" + "o" * 40
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    checked = check_form(FormValues(api_key=KEY), Settings(), key_stored=True)
    with pytest.raises(SaveFailed, match="nothing was saved"):
        save_form(
            checked,
            False,
            config_file=blocker / "config.toml",
            keys=KeyStore(environ={}),
            launch=FakeLaunch(),
        )
    assert memory_keyring.store[(SERVICE, USERNAME)] == "phc_old" + "o" * 40


def test_an_invalid_form_cannot_be_saved(tmp_path: Path) -> None:
    checked = check_form(FormValues(interval="0"), Settings(), key_stored=True)
    with pytest.raises(SaveFailed):
        save_form(
            checked,
            False,
            config_file=tmp_path / "c.toml",
            keys=KeyStore(environ={}),
            launch=FakeLaunch(),
        )
    assert not (tmp_path / "c.toml").exists()
