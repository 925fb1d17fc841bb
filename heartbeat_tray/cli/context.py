"""What every command shares: exit codes, the one-sentence error, loading settings and the key."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import sys
from dataclasses import dataclass

from heartbeat_tray.core.api_key import (
    ApiKey,
    InvalidKey,
    KeyKind,
    KeyringUnavailable,
    MisplacedKey,
    check_key_text,
)
from heartbeat_tray.core.settings import LoadedSettings, Overrides, Settings, SettingsError
from heartbeat_tray.system.keystore import KeyStore
from heartbeat_tray.system.log_setup import FILE_ONLY, never_log
from heartbeat_tray.system.paths import AppPaths, make_private_dir
from heartbeat_tray.system.settings_file import distinct_id_of, load_settings

log = logging.getLogger("heartbeat_tray")

EXIT_OK = 0
EXIT_NOT_ACCEPTED = 1
EXIT_CONFIG = 2


class UserError(Exception):
    """Stops the command with one sentence on stderr and an exit code."""

    def __init__(self, sentence: str, code: int = EXIT_CONFIG) -> None:
        super().__init__(sentence)
        self.code = code


def say(sentence: str) -> None:
    """One sentence for the person at the terminal (a windowed build has no stderr)."""
    log.info("%s", sentence, extra=FILE_ONLY)
    if sys.stderr is not None:
        print(sentence, file=sys.stderr)


def answer(line: str, *, ok: bool) -> None:
    """A command's one-line outcome: stdout when it succeeded (exit 0), else stderr, so
    ``heartbeat-tray once > file`` keeps answers and a failure still shows on the terminal."""
    log.info("%s", line, extra=FILE_ONLY)
    stream = sys.stdout if ok else sys.stderr
    if stream is not None:
        print(line, file=stream)


@dataclass
class Context:
    args: argparse.Namespace
    paths: AppPaths
    loaded: LoadedSettings
    overrides: Overrides
    keys: KeyStore

    @property
    def settings(self) -> Settings:
        """The file's settings with this run's overrides on top."""
        return self.loaded.settings.with_overrides(self.overrides)

    def distinct_id(self) -> str:
        return distinct_id_of(self.settings.distinct_id, self.paths.installation_id_file)

    def usable_settings(self) -> Settings:
        """The settings to send with; a broken file stops the command (nothing is sent)."""
        if self.loaded.problem:
            raise UserError(self.loaded.problem)
        return self.settings

    def require_state_folder(self) -> None:
        """The state folder keeps the beats, the lock and the installation id: it must be
        writable (a full disk is not refused here: the heartbeat then runs and says so)."""
        folder = self.paths.state_dir
        probe = folder / f".probe-{os.getpid()}"
        try:
            make_private_dir(folder)
            probe.write_bytes(b"")
            probe.unlink()
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                return
            raise UserError(
                f"The state folder {folder} cannot be written ({exc.strerror or exc}); "
                "heartbeat-tray keeps its beats there — make it writable."
            ) from None

    def require_key(self) -> ApiKey:
        key = _required(
            self.keys,
            "API key",
            "No project API key is set; run 'heartbeat-tray key set' (or set "
            "POSTHOG_PROJECT_API_KEY) with the phc_… key from your PostHog project settings.",
        )
        try:
            _, warning = check_key_text(key.value)
        except InvalidKey as exc:
            raise UserError(str(exc)) from None
        if warning:
            log.warning("%s", warning)
        return key


def require_personal_key() -> str:
    """The personal API key of the ingestion check (``verify``)."""
    return _required(
        KeyStore(kind=KeyKind.PERSONAL),
        "personal API key",
        "No personal API key is set; run 'heartbeat-tray key set --personal' (or set "
        "POSTHOG_PERSONAL_API_KEY) with a phx_… key with the Query Read and Project Read "
        "scopes.",
    ).value


def _required(store: KeyStore, name: str, missing: str) -> ApiKey:
    """The key in ``store``, or the UserError that says why there is none."""
    try:
        key = store.get()
    except MisplacedKey as exc:
        raise UserError(str(exc)) from None
    except KeyringUnavailable as exc:
        raise UserError(f"Cannot read the {name}: {exc}") from None
    if key is None:
        raise UserError(missing)
    never_log(key.value)
    return key


def load_context(args: argparse.Namespace, paths: AppPaths, *, key_in_child: bool) -> Context:
    try:
        overrides = Overrides.parse(
            host=getattr(args, "host", None),
            interval_seconds=getattr(args, "interval", None),
            event=getattr(args, "event", None),
            distinct_id=getattr(args, "distinct_id", None),
            metrics=None if getattr(args, "metrics", None) is None else {"listen": args.metrics},
        )
    except SettingsError as exc:
        raise UserError(str(exc)) from None
    loaded = load_settings(paths.config_file)
    return Context(args, paths, loaded, overrides, KeyStore(read_in_child=key_in_child))
