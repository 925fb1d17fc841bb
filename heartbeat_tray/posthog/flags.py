"""Checks a project key without sending an event: PostHog's flags endpoint answers 200 only for
a key that is valid on that host (capture answers 200 even for a wrong key).
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass

import httpx

from heartbeat_tray.posthog.http import (
    FLAGS_ANSWER_LIMIT,
    DeadlineClient,
    UnreadableAnswer,
    failure_reason,
)


class KeyCheckVerdict(enum.Enum):
    VALID = "valid"
    INVALID = "invalid"  # 401/403: invalid, expired, or a key of another region
    WRONG_HOST = "wrong-host"  # 3xx/404/405: not a PostHog ingest address
    UNREACHABLE = "unreachable"
    TLS_ERROR = "tls-error"
    UNEXPECTED = "unexpected"


@dataclass(frozen=True)
class KeyCheck:
    verdict: KeyCheckVerdict
    message: str  # one sentence for the user


def check_key(
    client: DeadlineClient,
    host: str,
    api_key: str,
    distinct_id: str,
    timeout: float,
    expired: threading.Event,
) -> KeyCheck:
    try:
        response = client.fetch(
            "POST",
            f"{host}/flags/",
            limit=FLAGS_ANSWER_LIMIT,
            params={"v": "2"},
            json={"api_key": api_key, "distinct_id": distinct_id},
            timeout=timeout,
        )
    except UnreadableAnswer as exc:
        return KeyCheck(
            KeyCheckVerdict.UNEXPECTED, f"{host} answered oddly ({exc}); try again later."
        )
    except httpx.HTTPError as exc:
        reason = failure_reason(exc, expired, timeout)
        if reason.startswith("TLS error"):
            return KeyCheck(
                KeyCheckVerdict.TLS_ERROR,
                f"{host} could not be reached securely ({reason}); check the host "
                "address and the machine's certificates.",
            )
        return KeyCheck(
            KeyCheckVerdict.UNREACHABLE,
            f"{host} is unreachable ({reason}); check the host address and your network.",
        )
    status = response.status_code
    answered = f"{status} {response.reason_phrase}".strip()
    if status == 200:
        return KeyCheck(KeyCheckVerdict.VALID, f"The API key is valid for {host}.")
    if status in (401, 403):
        return KeyCheck(
            KeyCheckVerdict.INVALID,
            f"{host} rejected the API key ({status}): it is invalid, expired, or belongs "
            "to another region or instance; copy the project API key from Project settings.",
        )
    if 300 <= status < 400 or status in (404, 405):
        return KeyCheck(
            KeyCheckVerdict.WRONG_HOST,
            f"PostHog at {host} answered {answered}: this is not a PostHog ingest address; "
            "check the host (e.g. https://eu.i.posthog.com, or your instance's base URL).",
        )
    return KeyCheck(
        KeyCheckVerdict.UNEXPECTED,
        f"{host} answered {answered}; try again later.",
    )
