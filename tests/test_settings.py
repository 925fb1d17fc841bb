"""The settings file: validation sentences, safe loading, unknown keys kept, atomic saves."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from heartbeat_tray.settings import (
    EU_HOST,
    US_HOST,
    Settings,
    SettingsError,
    installation_id,
    load_settings,
    save_settings,
    validate_host,
    validate_interval,
)

NOW = datetime(2026, 11, 26, 9, 30, 0, tzinfo=UTC)


def test_missing_file_gives_the_defaults(tmp_path: Path) -> None:
    loaded = load_settings(tmp_path / "config.toml")
    assert loaded.settings == Settings()
    assert loaded.problem is None
    assert loaded.settings.host == US_HOST
    assert loaded.settings.interval_seconds == 60


def test_a_valid_file_is_read(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        'host = "https://eu.i.posthog.com/"\nevent = "hb"\ninterval_seconds = 30\n'
        'backfill = false\n[properties]\nteam = "infra"\n'
    )
    s = load_settings(path).settings
    assert (s.host, s.event, s.interval_seconds, s.backfill) == (EU_HOST, "hb", 30, False)
    assert s.properties == {"team": "infra"}


@pytest.mark.parametrize(
    ("content", "sentence"),
    [
        ("interval_seconds = 0", "Interval must be a whole number of seconds between 1 and 86400."),
        ('interval_seconds = "soon"', "Interval must be a whole number"),
        ('host = "http://posthog.example.com"', "http:// is only for localhost"),
        ('event = ""', "Event name must not be empty"),
        ("enabled = 3", "enabled must be true or false."),
        ("[properties]\nsequence = 5", "'sequence' is set by Heartbeat Tray itself"),
        ("this is not toml", "not valid TOML"),
    ],
)
def test_an_invalid_file_is_moved_aside_and_defaults_are_used(
    tmp_path: Path, content: str, sentence: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(content)
    loaded = load_settings(path, now=NOW)
    assert loaded.settings == Settings()
    assert loaded.problem is not None and sentence in loaded.problem
    aside = tmp_path / "config.toml.bad-20261126T093000Z"
    assert loaded.moved_to == aside
    assert aside.read_text() == content  # nothing lost
    assert not path.exists()
    assert str(aside) in loaded.problem


def test_a_second_bad_file_in_the_same_second_does_not_overwrite_the_first(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("bad one")
    load_settings(path, now=NOW)
    path.write_text("bad two")
    second = load_settings(path, now=NOW)
    assert second.moved_to is not None and second.moved_to.read_text() == "bad two"
    assert (tmp_path / "config.toml.bad-20261126T093000Z").read_text() == "bad one"


def test_unknown_keys_are_kept_on_save_and_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('future_option = "x"\ninterval_seconds = 90\n')
    loaded = load_settings(path)
    assert loaded.warnings == (
        "Unknown setting 'future_option' in the settings file is kept but not used.",
    )
    save_settings(path, loaded.settings)
    again = load_settings(path).settings
    assert again.unknown == {"future_option": "x"}
    assert again.interval_seconds == 90


def test_save_is_atomic_and_private(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "config.toml"
    save_settings(path, Settings(event="hb"))
    assert load_settings(path).settings.event == "hb"
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]  # no temp files left


def test_overrides_are_validated_with_the_same_sentences() -> None:
    s = Settings().with_overrides(interval_seconds="5", host=None)
    assert s.interval_seconds == 5
    with pytest.raises(SettingsError, match="between 1 and 86400"):
        Settings().with_overrides(interval_seconds="90000")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("https://app.posthog.com", US_HOST),
        ("https://eu.posthog.com/", EU_HOST),
        ("http://localhost:8000", "http://localhost:8000"),
        ("http://127.0.0.1:8010/", "http://127.0.0.1:8010"),
        ("https://posthog.example.com/base", "https://posthog.example.com/base"),
    ],
)
def test_hosts_are_normalised(given: str, expected: str) -> None:
    assert validate_host(given) == expected


@pytest.mark.parametrize("bad", ["", "us.i.posthog.com", "ftp://x", "https://", "https://h:99999"])
def test_bad_hosts_are_refused(bad: str) -> None:
    with pytest.raises(SettingsError):
        validate_host(bad)


@pytest.mark.parametrize("bad", [True, 1.5, -1, 86_401, "1e3", None])
def test_bad_intervals_are_refused(bad: object) -> None:
    with pytest.raises(SettingsError):
        validate_interval(bad)


def test_installation_id_is_generated_once(tmp_path: Path) -> None:
    path = tmp_path / "state" / "installation-id"
    first = installation_id(path)
    assert first.startswith("heartbeat-tray-")
    assert installation_id(path) == first
