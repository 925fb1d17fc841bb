"""What PostHog's capture answers mean for a beat, and keys kept out of what servers say."""

from __future__ import annotations

import re
from datetime import datetime

import httpx

from heartbeat_tray.core.verdicts import (
    NOT_AN_API,
    RETRYABLE,
    Delivery,
    StatusKind,
    Verdict,
    status_kind,
)
from heartbeat_tray.net.http import parse_retry_after, reason_phrase

# What each kind of status means for a beat; the kinds themselves are ``status_kind``'s.
_CAPTURE_VERDICT = {
    StatusKind.SUCCESS: Verdict.ACCEPTED,
    StatusKind.REJECTED_AUTH: Verdict.REJECTED_KEY,
    StatusKind.TOO_LARGE: Verdict.TOO_LARGE,
    **dict.fromkeys(NOT_AN_API, Verdict.WRONG_HOST),
    **dict.fromkeys(RETRYABLE, Verdict.TRANSIENT),
}


def classify_status(response: httpx.Response, wall_now: datetime) -> Delivery:
    status = response.status_code
    # 400 and any other 4xx: this body will never be accepted as it is.
    verdict = _CAPTURE_VERDICT.get(status_kind(status), Verdict.REJECTED_BEAT)
    retry_after = None
    if verdict is Verdict.TRANSIENT:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), wall_now)
    return Delivery(verdict, reason_phrase(response), status, retry_after)


# Anything shaped like a PostHog key (project, personal, secret): cut to the prefix `status`
# shows anyway.
_KEY_SHAPE = re.compile(r"\b(ph[cxs]_[A-Za-z0-9]{4})[A-Za-z0-9]+")


def redact_keys(text: str, *secrets: str) -> str:
    """``text`` from a server, with the given secrets and anything key-shaped masked."""
    for secret in secrets:
        if secret and len(secret) >= 8:
            text = text.replace(secret, f"{secret[:8]}…")
    return _KEY_SHAPE.sub(r"\1…", text)
