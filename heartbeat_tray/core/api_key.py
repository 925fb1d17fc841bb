"""What a project API key is: its shape, how it is shown (masked), and the errors around it.

Reading and storing it (keyring, environment) is ``system.keystore``'s job.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Literal

ENV_VAR = "POSTHOG_PROJECT_API_KEY"
PERSONAL_ENV_VAR = "POSTHOG_PERSONAL_API_KEY"


class KeyKind(enum.Enum):
    """The two secrets: the project key sends beats; the personal key reads them back (§10)."""

    PROJECT = "project-api-key"  # the keyring username
    PERSONAL = "personal-api-key"

    @property
    def env_var(self) -> str:
        return ENV_VAR if self is KeyKind.PROJECT else PERSONAL_ENV_VAR

    @property
    def words(self) -> str:
        return "project API key" if self is KeyKind.PROJECT else "personal API key"


_PROJECT_KEY_SHAPE = re.compile(r"phc_[A-Za-z0-9]{30,60}")


class KeyringUnavailable(Exception):
    """The OS keyring cannot be used; ``str()`` says why and what to do."""


class MisplacedKey(KeyringUnavailable):
    """An environment variable holds the other kind of key; ``str()`` names the variable."""


class InvalidKey(ValueError):
    """The text given is not a usable project API key; ``str()`` says which key to use."""


def clean_key_text(text: str) -> str:
    """The key as pasted, less surrounding whitespace and one pair of surrounding quotes.

    The same rule wherever a key is read (stdin, the dialog, the environment, the keyring):
    ``"phc_…"`` copied from a TOML or shell line is the key, not a different one.
    """
    key = text.strip()
    if len(key) >= 2 and key[0] == key[-1] and key[0] in "\"'":
        key = key[1:-1].strip()
    return key


def check_env_key(kind: KeyKind, text: str) -> str:
    """A key from ``kind``'s environment variable, cleaned; MisplacedKey for the other kind."""
    key = clean_key_text(text)
    if kind is KeyKind.PROJECT and key.startswith("phx_"):
        raise MisplacedKey(
            f"{ENV_VAR} holds a personal API key (phx_…); put the project API key (phc_…) "
            f"from Project settings there, and the personal key in {PERSONAL_ENV_VAR}."
        )
    if kind is KeyKind.PERSONAL and key.startswith("phc_"):
        raise MisplacedKey(
            f"{PERSONAL_ENV_VAR} holds a project API key (phc_…); put a personal API key "
            f"(phx_…) with the Query Read and Project Read scopes there, and the project key "
            f"in {ENV_VAR}."
        )
    return key


@dataclass(frozen=True)
class ApiKey:
    value: str
    source: Literal["environment", "keyring"]

    @property
    def masked(self) -> str:
        return mask(self.value)


def mask(key: str) -> str:
    return f"{key[:8]}…" if len(key) > 8 else "…"


def check_key_text(text: str) -> tuple[str, str | None]:
    """Return the key cleaned and an optional warning, or raise InvalidKey with one sentence."""
    key = clean_key_text(text)
    if not key:
        raise InvalidKey("The project API key is empty; paste the phc_… key from Project settings.")
    if key.startswith("phx_"):
        raise InvalidKey(
            "This looks like a personal API key (phx_…); use the project API key (phc_…) "
            "from Project settings."
        )
    if key.startswith("phs_"):
        raise InvalidKey(
            "This looks like a secret key (phs_…); use the project API key (phc_…) "
            "from Project settings."
        )
    if not key.isascii() or any(ch.isspace() or not ch.isprintable() for ch in key):
        raise InvalidKey(
            "The project API key may only contain letters, digits and underscores; "
            "copy the phc_… key again from Project settings."
        )
    if len(key) > 64:
        raise InvalidKey("The project API key is longer than 64 characters; copy it again.")
    warning = None
    if not _PROJECT_KEY_SHAPE.fullmatch(key):
        warning = (
            "This key does not look like a project API key (phc_ followed by about 43 "
            "characters); older self-hosted keys may differ, so it is used as given."
        )
    return key, warning


def check_personal_key_text(text: str) -> str:
    """The personal key cleaned, or InvalidKey with one sentence saying which key goes where."""
    key = clean_key_text(text)
    if not key:
        raise InvalidKey(
            "The personal API key is empty; create one (phx_…) with the Query Read and Project "
            "Read scopes in your PostHog account settings."
        )
    if key.startswith("phc_"):
        raise InvalidKey(
            "This is a project API key (phc_…), which sends beats; the ingestion check needs a "
            "personal API key (phx_…) with the Query Read and Project Read scopes."
        )
    if not key.startswith("phx_") or not key.isascii() or any(ch.isspace() for ch in key):
        raise InvalidKey(
            "A personal API key starts with phx_; create one with the Query Read and Project "
            "Read scopes in your PostHog account settings (Personal API keys)."
        )
    return key
