"""The settings as values: defaults, validation with one sentence per bad value, and what a
file's bytes hold (``system.settings_file`` reads and writes the file itself).

A broken file is never replaced by defaults: a typo must not send the key and the beats to a
host the user never chose. Loading says what is wrong on which line and keeps every value it
could read (for the dialog); only a Save in the dialog replaces the file.
"""

from __future__ import annotations

import datetime as dt
import difflib
import ipaddress
import json
import logging
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from heartbeat_tray.core.event import BEAT_PROPERTIES, BeatTemplate
from heartbeat_tray.core.hosts import EU_HOST, US_HOST, ingest_host

log = logging.getLogger(__name__)

MIN_INTERVAL = 1
MAX_INTERVAL = 86_400
MAX_FILE_BYTES = 1024 * 1024  # a settings file is a few hundred bytes; refuse a runaway one
MAX_PROPERTIES_BYTES = 8 * 1024  # every beat carries them, and the outbox keeps 20,000 beats

# Names PostHog gives meaning to in an event's properties (or at its top level).
POSTHOG_NAMES = frozenset({"token", "distinct_id", "uuid", "api_key"})

# Written to the file only when they differ from the default: a file saved by the dialog must
# not pin them (a later, longer poll interval would then make the file invalid).
_WRITTEN_WHEN_SET = ("slow_after_seconds", "slow_window_seconds")
DEFAULT_METRICS_PORT = 9464  # Prometheus's registry of default ports


class SettingsError(ValueError):
    """A setting's value is invalid; ``str()`` is one sentence saying what to do."""

    def __init__(self, key: str, sentence: str) -> None:
        super().__init__(sentence)
        self.key = key


@dataclass(frozen=True)
class IngestionSettings:
    """The ingestion check: is each accepted beat really stored and queryable in PostHog?"""

    check: bool = True  # when a personal API key is stored
    app_host: str = ""  # empty: derived from the ingest host
    project_id: str = ""  # empty: found from the project key
    poll_seconds: int = 120  # 30 queries an hour, a quarter of PostHog's lowest limit
    alert_after_seconds: int = 600
    webhook_url: str = ""  # empty: notifications only
    slow_after_seconds: int = 300  # p95 lag above this opens a slow incident; 0: off
    slow_window_seconds: int = 900  # over this window (at least 3 beats and 3 checks long)

    def to_toml_dict(self) -> dict[str, Any]:
        default = IngestionSettings()
        return {
            key: getattr(self, key)
            for key in INGESTION_KEYS
            if key not in _WRITTEN_WHEN_SET or getattr(self, key) != getattr(default, key)
        }

    def slow_window(self, interval_seconds: int) -> int:
        """The window the slow p95 is taken over: as set, and at least 3 beats and 3 checks
        long (a default of 15 min with an hourly beat would hold no percentile)."""
        return max(self.slow_window_seconds, 3 * interval_seconds, 3 * self.poll_seconds)


@dataclass(frozen=True)
class MetricsSettings:
    """Prometheus metrics from the running app (``run --metrics`` sets it per run)."""

    listen: str = ""  # "HOST:PORT"; empty: off

    def to_toml_dict(self) -> dict[str, Any]:
        return {"listen": self.listen} if self.listen else {}

    def address(self) -> tuple[str, int] | None:
        if not self.listen:
            return None
        host, _, port = self.listen.rpartition(":")
        return host.strip("[]"), int(port)


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
    ingestion: IngestionSettings = field(default_factory=IngestionSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    # Keys this version does not know, kept so a save does not drop them.
    unknown: Mapping[str, Any] = field(default_factory=dict)

    def beat_template(self, distinct_id: str) -> BeatTemplate:
        """What every beat of these settings carries (the ticker's, ``once``'s, ``verify``'s)."""
        return BeatTemplate(self.event, distinct_id, self.interval_seconds, self.properties)

    def with_overrides(self, overrides: Overrides) -> Settings:
        """These settings with the per-run overrides on top (already validated)."""
        return replace(self, **overrides.values)

    def to_toml_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = dict(self.unknown)
        for key in KNOWN_KEYS:
            value = getattr(self, key)
            if isinstance(value, IngestionSettings | MetricsSettings):
                table = value.to_toml_dict()
                if table:  # [metrics] only when it is on
                    data[key] = table
            else:
                data[key] = dict(value) if key == "properties" else value
        return data

    def public(self) -> dict[str, Any]:
        """What ``status`` shows (nothing secret is in settings)."""
        data = self.to_toml_dict()
        for key in self.unknown:
            data.pop(key, None)
        return data


# Each setting is named once, as a field above; the file's keys, in the order they are written.
KNOWN_KEYS = tuple(f.name for f in fields(Settings) if f.name != "unknown")
INGESTION_KEYS = tuple(f.name for f in fields(IngestionSettings))


@dataclass(frozen=True)
class Overrides:
    """Per-run values from the command line: validated once, on top of every reload."""

    values: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, **given: Any) -> Overrides:
        """Validate ``--host`` and friends (``None``: not given); raises SettingsError."""
        return cls({k: validate_value(k, v) for k, v in given.items() if v is not None})


@dataclass(frozen=True)
class LoadedSettings:
    """The file as read: usable settings, or the problem and every value that could be read."""

    settings: Settings  # when ``problem`` is set: the values read, for the dialog only
    problem: str | None = None  # one sentence naming the line or key; nothing may be sent
    warnings: tuple[str, ...] = ()  # unknown keys, with a "did you mean"

    @property
    def usable(self) -> bool:
        return self.problem is None


# --- validators: each returns the normalised value or raises SettingsError with one sentence ---


def validate_host(value: Any) -> str:
    return ingest_host(base_url(value, "host"))


def base_url(value: Any, key: str) -> str:
    """A base URL: https:// (http:// only for loopback), no query; raises SettingsError."""
    if not isinstance(value, str) or not value.strip():
        raise SettingsError(key, "Host must be a URL such as https://us.i.posthog.com.")
    text = value.strip().rstrip("/")
    not_a_url = SettingsError(
        key,
        f"Host {value!r} is not a URL; use https://us.i.posthog.com, "
        "https://eu.i.posthog.com or your instance's https:// address.",
    )
    hidden = invisible_character(text)
    if hidden:
        raise SettingsError(
            key,
            f"Host {text!r} contains an invisible or space character ({hidden}); type it again.",
        )
    try:
        parts = _split_url(text)
    except ValueError:
        raise not_a_url from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise not_a_url
    if parts.username is not None or parts.password is not None:
        raise SettingsError(
            key,
            "Host must not carry a user name or password (user:password@): remove it; PostHog "
            "takes the API key, and a password there would end up in logs.",
        )
    if parts.query or parts.fragment:
        raise SettingsError(key, "Host must be a base URL without a query or fragment.")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise SettingsError(key, "Host must start with https:// (http:// is only for localhost).")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise SettingsError(key, f"Host {value!r} has an invalid port number.") from None
    return text


def invisible_character(text: str) -> str | None:
    """The first character of a URL that cannot be seen or is a space, as ``U+200B``."""
    import unicodedata

    for char in text:
        if char.isspace() or unicodedata.category(char) in ("Cc", "Cf", "Co", "Cn", "Zl", "Zp"):
            return f"U+{ord(char):04X}"
    return None


def _split_url(text: str) -> Any:
    from urllib.parse import urlsplit

    return urlsplit(text)  # raises ValueError for "https://[::1"


def is_loopback_host(hostname: str) -> bool:
    import ipaddress

    if hostname.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False


def validate_interval(value: Any) -> int:
    sentence = (
        f"Interval must be a whole number of seconds between {MIN_INTERVAL} and {MAX_INTERVAL}."
    )
    if isinstance(value, bool):
        raise SettingsError("interval_seconds", sentence)
    if isinstance(value, str):
        if not _plain_number(value.strip(), 6):
            raise SettingsError("interval_seconds", sentence)
        value = int(value.strip())
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


def property_name_problem(name: str) -> str | None:
    """Why an extra property may not have this name, or None."""
    if name in BEAT_PROPERTIES:
        return f"Extra property {name!r} is set by Heartbeat Tray itself; choose another name."
    if name.startswith("$") or name in POSTHOG_NAMES:
        return (
            f"Extra property {name!r} has a meaning to PostHog (names starting with $, token, "
            "distinct_id, uuid); choose another name."
        )
    return None


def _json_value(name: str, value: Any) -> Any:
    """The value as JSON carries it, or SettingsError (dates, nan, inf have no JSON form)."""
    if isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        raise SettingsError(
            "properties", f"Extra property {name!r} must be a finite number, not {value}."
        )
    if isinstance(value, list):
        return [_json_value(name, item) for item in value]
    if isinstance(value, Mapping):
        return {str(k): _json_value(name, item) for k, item in value.items()}
    if isinstance(value, dt.date | dt.time):
        raise SettingsError(
            "properties",
            f"Extra property {name!r} is a date or time, which an event cannot carry as it is; "
            'write it as text in quotes, e.g. "1979-05-27T07:32:00Z".',
        )
    raise SettingsError(
        "properties", f"Extra property {name!r} must be text, a number, true/false or a list."
    )


def validate_properties(value: Any) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise SettingsError("properties", "[properties] must be a table of name = value pairs.")
    checked: dict[str, Any] = {}
    for name, item in value.items():
        if not isinstance(name, str) or not name.strip():
            raise SettingsError("properties", "Every extra property needs a non-empty name.")
        problem = property_name_problem(name)
        if problem:
            raise SettingsError("properties", problem)
        checked[name] = _json_value(name, item)
    size = len(json.dumps(checked, separators=(",", ":")).encode("utf-8"))
    if size > MAX_PROPERTIES_BYTES:
        raise SettingsError(
            "properties",
            f"The extra properties take {size:,} bytes; keep them under "
            f"{MAX_PROPERTIES_BYTES // 1024} KB (every beat carries them).",
        )
    return checked


def validate_webhook_url(value: Any) -> str:
    if not isinstance(value, str):
        raise SettingsError("webhook_url", "The webhook URL must be text (empty: none).")
    text = value.strip()
    if not text:
        return ""
    hidden = invisible_character(text)
    if hidden:
        raise SettingsError(
            "webhook_url",
            f"The webhook URL contains an invisible or space character ({hidden}); type it again.",
        )
    try:
        parts = _split_url(text)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("https", "http") or not parts.hostname:
        raise SettingsError(
            "webhook_url", f"Webhook {value!r} is not a URL; use an https:// address."
        )
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise SettingsError(
            "webhook_url", "The webhook URL must start with https:// (http:// only for localhost)."
        )
    if parts.username is not None or parts.password is not None:
        raise SettingsError(
            "webhook_url",
            "The webhook URL must not carry a user name or password (user:password@); use the "
            "secret path your chat service gives.",
        )
    return text


def validate_app_host(value: Any) -> str:
    if isinstance(value, str) and not value.strip():
        return ""
    try:
        return base_url(value, "app_host")
    except SettingsError as exc:
        raise SettingsError("app_host", f"App host: {exc}") from None


def validate_project_id(value: Any) -> str:
    text = (
        str(value).strip() if isinstance(value, int | str) and not isinstance(value, bool) else None
    )
    if text is None or (text and not _plain_number(text, 18)):
        raise SettingsError(
            "project_id", "The project id must be a number (empty: found from the project key)."
        )
    return text


def _plain_number(text: str, digits: int) -> bool:
    """0-9 only, and not absurdly long ("²".isdigit() is true; int() refuses it)."""
    return 0 < len(text) <= digits and text.isascii() and text.isdecimal()


def _validate_range(key: str, low: int, high: int, what: str) -> Any:
    def check(value: Any) -> int:
        if isinstance(value, str) and _plain_number(value.strip(), 6):
            value = int(value.strip())
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise SettingsError(
                key, f"{what} must be a whole number of seconds from {low} to {high}."
            )
        return value

    return check


_INGESTION_VALIDATORS: dict[str, Any] = {
    "check": _validate_flag("check"),
    "app_host": validate_app_host,
    "project_id": validate_project_id,
    "poll_seconds": _validate_range("poll_seconds", 1, 3600, "The check interval"),
    "alert_after_seconds": _validate_range("alert_after_seconds", 1, 86_400, "Alert after"),
    "webhook_url": validate_webhook_url,
    "slow_after_seconds": _validate_range("slow_after_seconds", 0, 86_400, "Slow after"),
    # At least 3 beats and 3 checks long: widened to that where it is used (slow_window).
    "slow_window_seconds": _validate_range("slow_window_seconds", 1, 86_400, "The slow window"),
}


def validate_ingestion(value: Any) -> IngestionSettings:
    if not isinstance(value, Mapping):
        raise SettingsError("ingestion", "[ingestion] must be a table of name = value pairs.")
    values: dict[str, Any] = {}
    for key, item in value.items():
        if key not in _INGESTION_VALIDATORS:
            raise SettingsError(
                "ingestion", f"[ingestion] has no setting {key!r}; see the README for its keys."
            )
        values[key] = _INGESTION_VALIDATORS[key](item)
    ingestion = IngestionSettings(**values)
    slow = values.get("slow_after_seconds")
    if slow and slow < ingestion.poll_seconds:
        raise SettingsError(
            "slow_after_seconds",
            f"Slow after ({slow} s) is shorter than the check interval "
            f"(poll_seconds = {ingestion.poll_seconds}): a slow incident could never be seen "
            f"in time; set it to at least {ingestion.poll_seconds}, or 0 to turn it off.",
        )
    return ingestion


def validate_listen(value: Any) -> str:
    """``HOST:PORT`` (a bare port: loopback). Any address other than loopback is only ever the
    one given: "" or ":9464" is refused rather than read as every interface."""
    hint = (
        "give HOST:PORT, for example 127.0.0.1:9464 (this machine only) or 0.0.0.0:9464 "
        "(every interface)"
    )
    if not isinstance(value, str):
        raise SettingsError("listen", f"The metrics address must be text; {hint}.")
    text = value.strip()
    if not text:
        return ""
    if _plain_number(text, 5):
        text = f"127.0.0.1:{text}"
    host, sep, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    bare = host.strip("[]")
    if not sep or not bare or not _plain_number(port, 5) or not 1 <= int(port) <= 65535:
        raise SettingsError("listen", f"{value!r} is not a metrics address; {hint}.")
    try:
        address = ipaddress.ip_address(bare)
    except ValueError:
        if bare != "localhost":
            raise SettingsError(
                "listen",
                f"{bare!r} is not an IP address; {hint} (a name would be looked up at every "
                "start and could point anywhere).",
            ) from None
        return f"localhost:{int(port)}"
    if address.version == 6 and not bracketed:
        raise SettingsError("listen", f"Write an IPv6 address in brackets: [{bare}]:{port}.")
    return f"[{address}]:{int(port)}" if address.version == 6 else f"{address}:{int(port)}"


def validate_metrics(value: Any) -> MetricsSettings:
    if not isinstance(value, Mapping):
        raise SettingsError("metrics", "[metrics] must be a table of name = value pairs.")
    for key in value:
        if key != "listen":
            raise SettingsError("metrics", f"[metrics] has no setting {key!r}; it has 'listen'.")
    return MetricsSettings(validate_listen(value.get("listen", "")))


_VALIDATORS: dict[str, Any] = {
    "host": validate_host,
    "event": validate_event,
    "distinct_id": validate_distinct_id,
    "interval_seconds": validate_interval,
    "enabled": _validate_flag("enabled"),
    "backfill": _validate_flag("backfill"),
    "notify": _validate_flag("notify"),
    "properties": validate_properties,
    "ingestion": validate_ingestion,
    "metrics": validate_metrics,
}


def validate_value(key: str, value: Any) -> Any:
    return _VALIDATORS[key](value)


def near_miss(key: str) -> str | None:
    """The known setting an unknown key is a typo of ('Host', 'hots'), or None."""
    for known in KNOWN_KEYS:
        if key.casefold() == known:
            return known
    close = difflib.get_close_matches(key, KNOWN_KEYS, n=1, cutoff=0.75)
    return close[0] if close else None


def unknown_key_warning(key: str) -> str:
    return f"unknown setting {key!r} — it is kept but not used."


def settings_from_mapping(
    data: Mapping[str, Any],
) -> tuple[Settings, dict[str, str], list[str]]:
    """Settings from parsed TOML: (every valid value read, errors by key, warnings)."""
    errors: dict[str, str] = {}
    values: dict[str, Any] = {}
    for key in KNOWN_KEYS:
        if key in data:
            try:
                values[key] = validate_value(key, data[key])
            except SettingsError as exc:
                # Keyed by the setting inside a table where there is one: its line is named.
                errors[exc.key if exc.key in (*INGESTION_KEYS, "listen") else key] = str(exc)
    unknown: dict[str, Any] = {}
    for key, value in data.items():
        if key in KNOWN_KEYS:
            continue
        meant = near_miss(key)
        if meant is None:
            unknown[key] = value  # a newer version's setting: kept on save, warned about
        else:
            # A typo: without it the default would be used (the key sent to PostHog Cloud US
            # instead of the host the user meant). Not kept: a Save writes the real key.
            errors.setdefault(key, f"unknown setting {key!r} — did you mean {meant!r}?")
    warnings = [unknown_key_warning(key) for key in unknown]
    return Settings(**values, unknown=unknown), errors, warnings


_TOML_POSITION = re.compile(
    r"^(?P<what>.*?)\s*\(at (?:line (?P<line>\d+), column \d+|(?P<end>end of document))\)$"
)


def _fix_hint(name: str) -> str:
    return f" — fix it in {name} or open Settings"


def settings_from_bytes(raw: bytes, name: str) -> LoadedSettings:
    """The settings a file's bytes hold; a broken file is a problem, never defaults."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        return broken_settings(Settings(), f"{name} is not UTF-8 text{_fix_hint(name)}.")
    try:
        data = tomllib.loads(text)
    except (ValueError, RecursionError) as exc:
        if not isinstance(exc, tomllib.TOMLDecodeError):
            # A 5000-digit number, an array nested 2000 deep: TOML allows them, Python refuses.
            return broken_settings(
                _readable_values(text),
                f"{name}: a value is far too long or too deeply nested{_fix_hint(name)}.",
            )
        message = str(exc)
        match = _TOML_POSITION.match(message)
        line = (match["line"] or len(text.rstrip("\n").splitlines()) or 1) if match else None
        where = f"{name} line {line}" if line else name
        what = (match["what"] if match else message).rstrip(".")
        if what in ("Unterminated string", "Illegal character '\\n'"):
            what = "a text value has no closing quote"
        what = what[:1].lower() + what[1:]
        return broken_settings(_readable_values(text), f"{where}: {what}{_fix_hint(name)}.")
    try:
        settings, errors, warnings = settings_from_mapping(data)
    except RecursionError:
        return broken_settings(
            Settings(), f"{name}: a value is nested far too deeply{_fix_hint(name)}."
        )
    for warning in warnings:
        log.warning("%s: %s", name, warning)
    if errors:
        key, sentence = next(iter(errors.items()))
        line = _line_of(text, key)
        where = f"{name} line {line}" if line else name
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        if sentence.endswith("?"):  # "did you mean 'host'?" says what to do
            problem = f"{where}: {sentence}{more}"
        else:
            problem = f"{where}: {sentence.rstrip('.')}{more}{_fix_hint(name)}."
        return broken_settings(settings, problem, warnings)
    return LoadedSettings(settings, warnings=tuple(warnings))


def broken_settings(
    settings: Settings, problem: str, warnings: list[str] | None = None
) -> LoadedSettings:
    # For the log file only: whoever reads the file says it to the user in its own words.
    log.warning("Settings file problem: %s", problem, extra={"console": False})
    return LoadedSettings(settings, problem=problem, warnings=tuple(warnings or ()))


def _line_of(text: str, key: str) -> int | None:
    pattern = re.compile(rf"^\s*\[?\s*{re.escape(key)}\s*[\]=]", re.MULTILINE)
    match = pattern.search(text)
    return text.count("\n", 0, match.start()) + 1 if match else None


def _readable_values(text: str) -> Settings:
    """Every top-level ``key = value`` line that parses on its own (for the dialog)."""
    values: dict[str, Any] = {}
    for line in text.splitlines():
        if line.lstrip().startswith("["):
            break  # tables come after the plain keys; a broken file's tables are not guessed
        try:
            values.update(tomllib.loads(line))
        except (ValueError, RecursionError):
            continue
    try:
        settings, _errors, _warnings = settings_from_mapping(values)
    except RecursionError:
        return Settings()
    return settings


__all__ = [
    "EU_HOST",
    "KNOWN_KEYS",
    "US_HOST",
    "LoadedSettings",
    "Overrides",
    "Settings",
    "SettingsError",
    "settings_from_bytes",
]
