"""Checks a project key without sending an event: PostHog's flags endpoint answers 200 only for
a key that is valid on that host (capture answers 200 even for a wrong key).
"""

from __future__ import annotations

import threading

import httpx

from heartbeat_tray.core.verdicts import (
    NOT_AN_API,
    KeyCheck,
    KeyCheckVerdict,
    NetworkFailure,
    StatusKind,
    status_kind,
)
from heartbeat_tray.net.http import (
    FLAGS_ANSWER_LIMIT,
    DeadlineClient,
    UnreadableAnswer,
    no_answer,
    reason_phrase,
)


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
        why = no_answer(exc, expired, timeout)
        reason = why.reason
        if why.kind is NetworkFailure.TLS:
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
    answered = reason_phrase(response)
    kind = status_kind(status)
    if kind is StatusKind.SUCCESS:
        return KeyCheck(KeyCheckVerdict.VALID, f"The API key is valid for {host}.")
    if kind is StatusKind.REJECTED_AUTH:
        return KeyCheck(
            KeyCheckVerdict.INVALID,
            f"{host} rejected the API key ({status}): it is invalid, expired, or belongs "
            "to another region or instance; copy the project API key from Project settings.",
        )
    if kind in NOT_AN_API:
        return KeyCheck(
            KeyCheckVerdict.WRONG_HOST,
            f"PostHog at {host} answered {answered}: this is not a PostHog ingest address; "
            "check the host (e.g. https://eu.i.posthog.com, or your instance's base URL).",
        )
    return KeyCheck(
        KeyCheckVerdict.UNEXPECTED,
        f"{host} answered {answered}; try again later.",
    )
