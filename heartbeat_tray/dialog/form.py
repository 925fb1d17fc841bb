"""The settings dialog's model: form values, validation with a sentence per field, and a save
that stores nothing unless everything is valid, and leaves nothing half-saved.

No toolkit here: tests drive it directly, the Tk view only shows it.
"""

from __future__ import annotations

import logging
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from heartbeat_tray.core.api_key import (
    InvalidKey,
    KeyringUnavailable,
    check_key_text,
    check_personal_key_text,
)
from heartbeat_tray.core.settings import (
    EU_HOST,
    US_HOST,
    Settings,
    SettingsError,
    validate_distinct_id,
    validate_event,
    validate_host,
    validate_ingestion,
    validate_interval,
    validate_properties,
)
from heartbeat_tray.system.keystore import KeyStore
from heartbeat_tray.system.launch_at_login import LaunchAtLogin, LaunchAtLoginError
from heartbeat_tray.system.settings_file import keep_backup, load_settings, save_settings

log = logging.getLogger(__name__)

HostChoice = Literal["us", "eu", "self"]
HOST_LABELS: dict[HostChoice, str] = {
    "us": "PostHog Cloud US",
    "eu": "PostHog Cloud EU",
    "self": "Self-hosted",
}


_DEFAULTS = Settings()


@dataclass
class FormValues:
    """What the dialog's fields hold, as text; a new form starts from ``Settings()``'s values."""

    host_choice: HostChoice = "us"  # Settings().host is PostHog Cloud US
    custom_host: str = ""
    api_key: str = ""  # empty: keep the stored key
    event: str = _DEFAULTS.event
    distinct_id: str = _DEFAULTS.distinct_id
    interval: str = str(_DEFAULTS.interval_seconds)
    properties: str = ""  # one "name = value" per line
    backfill: bool = _DEFAULTS.backfill
    notify: bool = _DEFAULTS.notify
    launch_at_login: bool = False
    # the ingestion check
    personal_key: str = ""  # empty: keep the stored personal key
    project_id: str = _DEFAULTS.ingestion.project_id  # empty: found from the project key
    alert_after: str = str(_DEFAULTS.ingestion.alert_after_seconds)
    webhook_url: str = _DEFAULTS.ingestion.webhook_url


@dataclass
class Checked:
    errors: dict[str, str] = field(default_factory=dict)  # field → one sentence
    warnings: dict[str, str] = field(default_factory=dict)
    settings: Settings | None = None
    new_key: str | None = None  # None: keep the stored key
    new_personal_key: str | None = None

    @property
    def ok(self) -> bool:
        return not self.errors


class SaveFailed(Exception):
    """Saving stopped and was undone; ``str()`` says why, in one sentence."""


def form_from_settings(settings: Settings, launch_at_login: bool) -> FormValues:
    choice: HostChoice = {US_HOST: "us", EU_HOST: "eu"}.get(settings.host, "self")  # type: ignore[assignment]
    return FormValues(
        host_choice=choice,
        custom_host=settings.host if choice == "self" else "",
        event=settings.event,
        distinct_id=settings.distinct_id,
        interval=str(settings.interval_seconds),
        properties=format_properties(settings.properties),
        backfill=settings.backfill,
        notify=settings.notify,
        launch_at_login=launch_at_login,
        project_id=settings.ingestion.project_id,
        alert_after=str(settings.ingestion.alert_after_seconds),
        webhook_url=settings.ingestion.webhook_url,
    )


def format_properties(properties: Mapping[str, Any]) -> str:
    lines = []
    for name, value in properties.items():
        text = value if isinstance(value, str) else _toml_value(value)
        lines.append(f"{name} = {text}")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    import tomli_w

    return tomli_w.dumps({"v": value}).split("=", 1)[1].strip()


def parse_properties(text: str) -> dict[str, Any]:
    """``name = value`` per line; values are text unless they read as a TOML number or boolean."""
    result: dict[str, Any] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, value = line.partition("=")
        name, value = name.strip(), value.strip()
        if not sep or not name:
            raise SettingsError(
                "properties", f"Line {number} of the extra properties needs the form name = value."
            )
        if name in result:
            raise SettingsError("properties", f"Extra property {name!r} is given twice.")
        result[name] = _property_value(value)
    return result


def _property_value(text: str) -> Any:
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
        return text[1:-1]
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text
    return value if isinstance(value, bool | int | float) else text


def events_per_day(interval_text: str) -> str:
    try:
        interval = validate_interval(interval_text)
    except SettingsError:
        return ""
    per_day = 86_400 / interval
    shown = f"{per_day:,.0f}" if per_day >= 1 else f"{per_day:.2f}"
    return f"{shown} events a day"


def check_form(values: FormValues, base: Settings, key_stored: bool) -> Checked:
    """Validate every field; the settings and key to save only when none is invalid."""
    checked = Checked()
    fields: dict[str, Any] = {}

    def attempt(name: str, validate: Any, value: Any) -> None:
        try:
            fields[name] = validate(value)
        except SettingsError as exc:
            checked.errors[name] = str(exc)

    if values.host_choice == "us":
        fields["host"] = US_HOST
    elif values.host_choice == "eu":
        fields["host"] = EU_HOST
    elif not values.custom_host.strip():
        checked.errors["host"] = (
            "Enter your PostHog instance's address, e.g. https://posthog.example.com."
        )
    else:
        attempt("host", validate_host, values.custom_host)
    attempt("event", validate_event, values.event)
    attempt("distinct_id", validate_distinct_id, values.distinct_id)
    attempt("interval_seconds", validate_interval, values.interval)
    try:
        fields["properties"] = validate_properties(parse_properties(values.properties))
    except SettingsError as exc:
        checked.errors["properties"] = str(exc)

    if "interval_seconds" in fields and fields["interval_seconds"] < 60:
        checked.warnings["interval_seconds"] = (
            f"Below 60 s this sends {events_per_day(values.interval)}; PostHog counts each one."
        )
    if values.api_key.strip():
        try:
            key, warning = check_key_text(values.api_key)
            checked.new_key = key
            if warning:
                checked.warnings["api_key"] = warning
        except InvalidKey as exc:
            checked.errors["api_key"] = str(exc)
    elif not key_stored:
        checked.errors["api_key"] = (
            "Enter the project API key (phc_…) from your PostHog project settings."
        )

    if values.personal_key.strip():
        try:
            checked.new_personal_key = check_personal_key_text(values.personal_key)
        except InvalidKey as exc:
            checked.errors["personal_key"] = str(exc)
    ingestion: dict[str, Any] = {}
    for name, key, value in (
        ("project_id", "project_id", values.project_id),
        ("alert_after", "alert_after_seconds", values.alert_after),
        ("webhook_url", "webhook_url", values.webhook_url),
    ):
        try:
            ingestion[key] = getattr(validate_ingestion({key: value}), key)
        except SettingsError as exc:
            checked.errors[name] = str(exc)

    if checked.ok:
        checked.settings = replace(
            base,
            backfill=values.backfill,
            notify=values.notify,
            ingestion=replace(base.ingestion, **ingestion),
            **fields,
        )
    return checked


def _write_file(config_file: Path, edited: Settings) -> None:
    """Write the dialog's fields over the file as it is now (the tray may have toggled
    ``enabled`` meanwhile); a broken file is kept as ``config.toml.bak-<UTC>`` first."""
    current = load_settings(config_file)
    if current.problem is None:
        edited = replace(edited, enabled=current.settings.enabled, unknown=current.settings.unknown)
    else:
        kept = keep_backup(config_file, datetime.now(UTC))
        if kept is not None:
            log.info("Kept the broken settings file as %s", kept)
    save_settings(config_file, edited)


def save_form(
    checked: Checked,
    launch_wanted: bool,
    *,
    config_file: Path,
    keys: KeyStore,
    launch: LaunchAtLogin,
    personal_keys: KeyStore | None = None,
) -> None:
    """Launch at login, then the key, then the file; a failure undoes the steps before it."""
    if not checked.ok or checked.settings is None:
        raise SaveFailed("Fix the fields marked in red first; nothing was saved.")
    undo: list[Any] = []
    try:
        was_launching = launch.is_enabled()
        if launch_wanted != was_launching:
            (launch.enable if launch_wanted else launch.disable)()
            undo.append(launch.disable if launch_wanted else launch.enable)
        if checked.new_key is not None:
            old = keys.get()
            keys.store(checked.new_key)
            undo.append((lambda: keys.store(old.value)) if old else keys.clear)
        if checked.new_personal_key is not None and personal_keys is not None:
            old_personal = personal_keys.get()
            personal_keys.store(checked.new_personal_key)
            undo.append(
                (lambda: personal_keys.store(old_personal.value))
                if old_personal
                else personal_keys.clear
            )
        try:
            _write_file(config_file, checked.settings)
        except OSError as exc:
            raise SaveFailed(
                f"Could not write {config_file} ({exc.strerror}); nothing was saved."
            ) from None
    except (KeyringUnavailable, LaunchAtLoginError, SaveFailed) as exc:
        for step in reversed(undo):
            try:
                step()
            except Exception:
                log.warning("Undoing a partial save failed", exc_info=True)
        if isinstance(exc, KeyringUnavailable):
            raise SaveFailed(f"The key could not be stored: {exc} Nothing was saved.") from None
        if isinstance(exc, LaunchAtLoginError):
            raise SaveFailed(f"{exc} Nothing was saved.") from None
        raise
