"""The settings file: defaults, validation with one sentence per bad value, safe load and save."""

from __future__ import annotations

import ipaddress
import logging
import tomllib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import tomli_w

from heartbeat_tray.atomic_file import create_exclusively, write_atomically

log = logging.getLogger(__name__)

US_HOST = "https://us.i.posthog.com"
EU_HOST = "https://eu.i.posthog.com"
MIN_INTERVAL = 1
MAX_INTERVAL = 86_400

# posthog-python maps the legacy/app hosts to the ingest hosts; so do we.
_LEGACY_HOSTS = {
    "https://app.posthog.com": US_HOST,
    "https://us.posthog.com": US_HOST,
    "https://eu.posthog.com": EU_HOST,
}

# Properties every beat carries; an extra property may not replace them.
RESERVED_PROPERTIES = frozenset(
    {
        "$lib",
        "$lib_version",
        "$process_person_profile",
        "$geoip_disable",
        "$os",
        "interval_seconds",
        "sequence",
    }
)

KNOWN_KEYS = (
    "host",
    "event",
    "distinct_id",
    "interval_seconds",
    "enabled",
    "backfill",
    "notify",
    "properties",
)


class SettingsError(ValueError):
    """A setting's value is invalid; ``str()`` is one sentence saying what to do."""

    def __init__(self, key: str, sentence: str) -> None:
        super().__init__(sentence)
        self.key = key


@dataclass(frozen=True)
class Settings:
    host: str = US_HOST
    event: str = "heartbeat"
    distinct_id: str = ""
    interval_seconds: int = 60
    enabled: bool = True
    backfill: bool = True
    notify: bool = True
    properties: Mapping[str, Any] = field(default_factory=dict)
    # Keys this version does not know, kept so a save does not drop them.
    unknown: Mapping[str, Any] = field(default_factory=dict)

    def with_overrides(self, **overrides: Any) -> Settings:
        """This settings object with validated per-run overrides (``None`` means not given)."""
        given = {key: value for key, value in overrides.items() if value is not None}
        checked = {key: validate_value(key, value) for key, value in given.items()}
        return replace(self, **checked)

    def to_toml_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.unknown)
        data.update(
            host=self.host,
            event=self.event,
            distinct_id=self.distinct_id,
            interval_seconds=self.interval_seconds,
            enabled=self.enabled,
            backfill=self.backfill,
            notify=self.notify,
            properties=dict(self.properties),
        )
        return data


@dataclass(frozen=True)
class LoadedSettings:
    settings: Settings
    problem: str | None = None  # why the file was set aside, in sentences
    moved_to: Path | None = None  # where the bad file went
    warnings: tuple[str, ...] = ()


# --- validators: each returns the normalised value or raises SettingsError with one sentence ---


def validate_host(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SettingsError("host", "Host must be a URL such as https://us.i.posthog.com.")
    text = value.strip().rstrip("/")
    parts = urlsplit(text)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise SettingsError(
            "host",
            f"Host {value!r} is not a URL; use https://us.i.posthog.com, "
            "https://eu.i.posthog.com or your instance's https:// address.",
        )
    if parts.query or parts.fragment:
        raise SettingsError("host", "Host must be a base URL without a query or fragment.")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise SettingsError(
            "host", "Host must start with https:// — http:// is only for localhost."
        )
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise SettingsError("host", f"Host {value!r} has an invalid port number.") from None
    return _LEGACY_HOSTS.get(text.lower(), text)


def is_loopback_host(hostname: str) -> bool:
    if hostname.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def validate_interval(value: Any) -> int:
    sentence = "Interval must be a whole number of seconds between 1 and 86400."
    if isinstance(value, bool):
        raise SettingsError("interval_seconds", sentence)
    if isinstance(value, str):
        try:
            value = int(value.strip())
        except ValueError:
            raise SettingsError("interval_seconds", sentence) from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int) or not MIN_INTERVAL <= value <= MAX_INTERVAL:
        raise SettingsError("interval_seconds", sentence)
    return value


def validate_event(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise SettingsError("event", "Event name must not be empty; the default is heartbeat.")
    if len(value) > 200:
        raise SettingsError("event", "Event name must be at most 200 characters long.")
    return value.strip()


def validate_distinct_id(value: Any) -> str:
    if not isinstance(value, str):
        raise SettingsError("distinct_id", "Distinct id must be text (empty: generated once).")
    if len(value) > 200:
        raise SettingsError("distinct_id", "Distinct id must be at most 200 characters long.")
    return value.strip()


def _validate_flag(key: str) -> Any:
    def check(value: Any) -> bool:
        if not isinstance(value, bool):
            raise SettingsError(key, f"{key} must be true or false.")
        return value

    return check


def validate_properties(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise SettingsError("properties", "[properties] must be a table of name = value pairs.")
    checked: dict[str, Any] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not name.strip():
            raise SettingsError("properties", "Every extra property needs a non-empty name.")
        if name in RESERVED_PROPERTIES:
            raise SettingsError(
                "properties",
                f"Extra property {name!r} is set by Heartbeat Tray itself; choose another name.",
            )
        if isinstance(item, datetime):
            item = item.isoformat()
        if not isinstance(item, str | int | float | bool | list | Mapping):
            raise SettingsError(
                "properties", f"Extra property {name!r} must be text, a number or true/false."
            )
        checked[name] = item
    return checked


_VALIDATORS: dict[str, Any] = {
    "host": validate_host,
    "event": validate_event,
    "distinct_id": validate_distinct_id,
    "interval_seconds": validate_interval,
    "enabled": _validate_flag("enabled"),
    "backfill": _validate_flag("backfill"),
    "notify": _validate_flag("notify"),
    "properties": validate_properties,
}


def validate_value(key: str, value: Any) -> Any:
    return _VALIDATORS[key](value)


def settings_from_mapping(data: Mapping[str, Any]) -> tuple[Settings, list[str], list[str]]:
    """Build settings from parsed TOML; returns (settings, errors, warnings)."""
    errors: list[str] = []
    values: dict[str, Any] = {}
    for key in KNOWN_KEYS:
        if key in data:
            try:
                values[key] = validate_value(key, data[key])
            except SettingsError as exc:
                errors.append(str(exc))
    unknown = {key: value for key, value in data.items() if key not in KNOWN_KEYS}
    warnings = [
        f"Unknown setting {key!r} in the settings file is kept but not used." for key in unknown
    ]
    return Settings(**values, unknown=unknown), errors, warnings


def load_settings(path: Path, now: datetime | None = None) -> LoadedSettings:
    """Read the settings file; a bad one is moved aside and defaults are used, never a crash."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return LoadedSettings(Settings())
    except OSError as exc:
        return _set_aside(path, f"the settings file could not be read ({exc.strerror})", now)
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        return _set_aside(path, f"the settings file is not valid TOML ({exc})", now)
    settings, errors, warnings = settings_from_mapping(data)
    if errors:
        return _set_aside(path, " ".join(errors), now)
    for warning in warnings:
        log.warning("%s", warning)
    return LoadedSettings(settings, warnings=tuple(warnings))


def _set_aside(path: Path, reason: str, now: datetime | None) -> LoadedSettings:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    target = path.with_name(f"{path.name}.bad-{stamp}")
    counter = 1
    while target.exists():
        counter += 1
        target = path.with_name(f"{path.name}.bad-{stamp}-{counter}")
    try:
        path.rename(target)
    except OSError as exc:
        log.error("Settings file %s is invalid and could not be moved aside: %s", path, exc)
        problem = f"Settings file {path} is invalid ({reason}); using defaults."
        return LoadedSettings(Settings(), problem=problem)
    problem = (
        f"Settings file was invalid ({reason}); it was moved to {target} and defaults are used."
    )
    log.error("%s", problem)
    return LoadedSettings(Settings(), problem=problem, moved_to=target)


def save_settings(path: Path, settings: Settings) -> None:
    write_atomically(path, tomli_w.dumps(settings.to_toml_dict()).encode("utf-8"))


def installation_id(path: Path) -> str:
    """The distinct id used when none is configured: generated once per installation."""
    try:
        existing = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        existing = ""
    if existing:
        return existing
    fresh = f"heartbeat-tray-{uuid.uuid4()}"
    if create_exclusively(path, fresh.encode("utf-8")):
        return fresh
    return path.read_text(encoding="utf-8").strip() or fresh
