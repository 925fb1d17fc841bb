"""The settings file: validation sentences, safe loading, unknown keys kept, atomic saves."""

from __future__ import annotations

import os
import stat
from datetime import UTC, datetime
from pathlib import Path

import pytest

from heartbeat_tray.core.settings import (
    EU_HOST,
    US_HOST,
    Overrides,
    Settings,
    SettingsError,
    validate_host,
    validate_interval,
)
from heartbeat_tray.system.settings_file import (
    installation_id,
    keep_backup,
    load_settings,
    save_settings,
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
        (
            'host = "https://eu.i.posthog.com"\ninterval_seconds = 0',
            "config.toml line 2: Interval must be a whole number of seconds between 1 and 86400",
        ),
        ('interval_seconds = "soon"', "config.toml line 1: Interval must be a whole number"),
        ('host = "http://posthog.example.com"', "(http:// is only for localhost)"),
        ('event = ""', "Event name must not be empty"),
        ("enabled = 3", "enabled must be true or false"),
        ("[properties]\nsequence = 5", "config.toml line 1: Extra property 'sequence' is set by"),
        (
            'host = "https://eu.i.posthog.com"\nevent = "heartbeat',
            "config.toml line 2: a text value has no closing quote",
        ),
        ("this is not toml", "config.toml line 1: "),
    ],
)
def test_a_broken_file_is_a_problem_naming_the_line_and_is_never_moved_or_defaulted(
    tmp_path: Path, content: str, sentence: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(content)
    loaded = load_settings(path)
    assert not loaded.usable
    assert loaded.problem is not None and sentence in loaded.problem
    assert loaded.problem.endswith("— fix it in config.toml or open Settings.")
    assert path.read_text() == content  # reading never renames or rewrites it
    assert [p.name for p in tmp_path.iterdir()] == ["config.toml"]


def test_a_broken_file_still_shows_every_value_it_could_read(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(
        'host = "https://eu.i.posthog.com"\nevent = "heartbeat\ninterval_seconds = 30\n'
    )
    loaded = load_settings(path)
    assert loaded.problem is not None
    assert loaded.settings.host == EU_HOST and loaded.settings.interval_seconds == 30
    path.write_text('host = "https://eu.i.posthog.com"\ninterval_seconds = 0\n')
    assert load_settings(path).settings.host == EU_HOST


@pytest.mark.parametrize(
    ("properties", "sentence"),
    [
        ("when = 1979-05-27T07:32:00Z", "'when' is a date or time"),
        ("when = [1979-05-27T07:32:00Z]", "'when' is a date or time"),
        ("deep = {a = {b = 07:32:00}}", "'deep' is a date or time"),
        ("x = nan", "'x' must be a finite number"),
        ("x = -inf", "'x' must be a finite number"),
        ('"$set" = {email = "a@b"}', "'$set' has a meaning to PostHog"),
        ('"$ip" = "1.2.3.4"', "'$ip' has a meaning to PostHog"),
        ('token = "t"', "'token' has a meaning to PostHog"),
        ('distinct_id = "d"', "'distinct_id' has a meaning to PostHog"),
        ('uuid = "u"', "'uuid' has a meaning to PostHog"),
        (f'big = "{"x" * 9000}"', "keep them under 8 KB"),
    ],
)
def test_property_values_are_what_json_carries_and_names_are_not_posthogs(
    tmp_path: Path, properties: str, sentence: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"[properties]\n{properties}\n")
    loaded = load_settings(path)
    assert loaded.problem is not None and sentence in loaded.problem


def test_nested_json_values_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('[properties]\nteam = "infra"\nlevels = [1, 2.5, true]\nmeta = {a = "b"}\n')
    loaded = load_settings(path)
    assert loaded.usable
    assert loaded.settings.properties == {
        "team": "infra",
        "levels": [1, 2.5, True],
        "meta": {"a": "b"},
    }


def test_a_fifo_or_a_link_to_a_device_is_refused_at_once(tmp_path: Path) -> None:
    fifo = tmp_path / "config.toml"
    os.mkfifo(fifo)  # reading it would wait for a writer forever
    loaded = load_settings(fifo)
    assert loaded.problem is not None and "is not a regular file" in loaded.problem
    fifo.unlink()
    fifo.symlink_to("/dev/zero")  # reading it would never end
    loaded = load_settings(fifo)
    assert loaded.problem is not None and "is not a regular file" in loaded.problem


def test_a_huge_file_is_refused_without_reading_it(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    with open(path, "wb") as handle:
        handle.truncate(50 * 1024 * 1024)
    loaded = load_settings(path)
    assert loaded.problem is not None and "far too large" in loaded.problem


def test_unrelated_unknown_keys_are_kept_on_save_and_warned_about(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text('future_option = "x"\ninterval_seconds = 90\n')
    loaded = load_settings(path)
    assert loaded.usable
    assert loaded.warnings == ("unknown setting 'future_option' — it is kept but not used.",)
    save_settings(path, loaded.settings)
    again = load_settings(path).settings
    assert again.unknown == {"future_option": "x"}
    assert again.interval_seconds == 90


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ('Host = "https://eu.i.posthog.com"', "unknown setting 'Host' — did you mean 'host'?"),
        ('hots = "https://eu.i.posthog.com"', "unknown setting 'hots' — did you mean 'host'?"),
        (
            "intervall_seconds = 5",
            "unknown setting 'intervall_seconds' — did you mean 'interval_seconds'?",
        ),
        ("EVENT = 'x'", "unknown setting 'EVENT' — did you mean 'event'?"),
    ],
)
def test_a_misspelt_key_is_a_typo_that_breaks_the_file(
    tmp_path: Path, line: str, problem: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(f"{line}\n")
    loaded = load_settings(path)
    assert not loaded.usable  # the default host must not receive the key
    assert loaded.problem == f"config.toml line 1: {problem}"
    assert loaded.settings.unknown == {}  # a Save writes the real key, not the typo again


def test_a_broken_file_is_kept_as_a_backup_before_a_save_replaces_it(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text("broken = [")
    first = keep_backup(path, NOW)
    second = keep_backup(path, NOW)
    assert first == tmp_path / "config.toml.bak-20261126T093000Z"
    assert second is not None and second != first  # the same second never overwrites one
    assert first.read_text() == second.read_text() == "broken = ["


def test_save_is_atomic_and_private(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "config.toml"
    save_settings(path, Settings(event="hb"))
    assert load_settings(path).settings.event == "hb"
    if os.name == "posix":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["config.toml"]  # no temp files left


def test_overrides_are_validated_with_the_same_sentences() -> None:
    s = Settings().with_overrides(Overrides.parse(interval_seconds="5", host=None))
    assert s.interval_seconds == 5
    with pytest.raises(SettingsError, match="between 1 and 86400"):
        Overrides.parse(interval_seconds="90000")


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


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "us.i.posthog.com",
        "ftp://x",
        "https://",
        "https://h:99999",
        "https://[::1",
        "http://[::1",
    ],
)
def test_bad_hosts_are_refused_with_a_sentence(bad: str) -> None:
    with pytest.raises(SettingsError) as refused:
        validate_host(bad)
    assert str(refused.value).endswith(".") and "Host" in str(refused.value)


@pytest.mark.parametrize("bad", [True, 1.5, -1, 86_401, "1e3", None])
def test_bad_intervals_are_refused(bad: object) -> None:
    with pytest.raises(SettingsError):
        validate_interval(bad)


def test_installation_id_is_generated_once(tmp_path: Path) -> None:
    path = tmp_path / "state" / "installation-id"
    first = installation_id(path)
    assert first.startswith("heartbeat-tray-")
    assert installation_id(path) == first


@pytest.mark.parametrize(
    ("content", "sentence"),
    [
        (
            "[ingestion]\npoll_seconds = 120\nslow_after_seconds = 30",
            "config.toml line 3: Slow after (30 s) is shorter than the check interval "
            "(poll_seconds = 120): a slow incident could never be seen in time; set it to at "
            "least 120, or 0 to turn it off",
        ),
        ("[ingestion]\nslow_window_seconds = 0", "The slow window must be a whole number"),
        ('[metrics]\nlisten = ":9464"', "':9464' is not a metrics address; give HOST:PORT"),
        ('[metrics]\nlisten = "example.com:9464"', "'example.com' is not an IP address"),
        ('[metrics]\nlisten = "127.0.0.1:70000"', "is not a metrics address"),
        ('[metrics]\nlisten = "::1:9464"', "Write an IPv6 address in brackets: [::1]:9464"),
        ("[metrics]\nport = 9464", "[metrics] has no setting 'port'; it has 'listen'"),
    ],
)
def test_slow_and_metrics_settings_refuse_bad_values_with_a_sentence(
    tmp_path: Path, content: str, sentence: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(content)
    loaded = load_settings(path)
    assert loaded.problem is not None and sentence in loaded.problem, loaded.problem


def test_slow_settings_default_and_stay_out_of_a_saved_file_unless_set(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    save_settings(path, Settings())
    assert "slow_" not in path.read_text() and "metrics" not in path.read_text()
    path.write_text(
        'interval_seconds = 600\n[ingestion]\nslow_after_seconds = 200\n[metrics]\nlisten = "9464"'
    )
    s = load_settings(path).settings
    assert s.ingestion.slow_after_seconds == 200 and s.metrics.address() == ("127.0.0.1", 9464)
    # an hourly-ish beat: the default 15 min window widens to hold 3 beats
    assert s.ingestion.slow_window(s.interval_seconds) == 1800
    save_settings(path, s)
    assert load_settings(path).settings == s
    assert "slow_window_seconds" not in path.read_text()  # still the default: not pinned


@pytest.mark.parametrize(
    ("given", "expected"),
    [("9464", "127.0.0.1:9464"), ("0.0.0.0:9100", "0.0.0.0:9100"), ("[::1]:9464", "[::1]:9464")],
)
def test_metrics_addresses_are_normalised(given: str, expected: str) -> None:
    assert Overrides.parse(metrics={"listen": given}).values["metrics"].listen == expected
