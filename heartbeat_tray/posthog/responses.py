"""What PostHog's answers mean for a beat, as values: every status and network error classified."""

from __future__ import annotations

import enum
import re
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    TRANSIENT = "transient"  # network, timeout, 408, 429, 5xx: keep and retry
    REJECTED_BEAT = "rejected-beat"  # 400 (and other 4xx): this beat can never be accepted
    REJECTED_KEY = "rejected-key"  # 401/403: wrong key; stop until the settings change
    WRONG_HOST = "wrong-host"  # 3xx, 404, 405: a proxy or a typo; stop, keep every beat
    TOO_LARGE = "too-large"  # 413: send fewer at once


# How a person says each verdict (``status`` and the tray never show the enum's value).
VERDICT_WORDS = {
    Verdict.ACCEPTED: "accepted",
    Verdict.TRANSIENT: "not accepted, will retry",
    Verdict.REJECTED_BEAT: "refused that beat",
    Verdict.REJECTED_KEY: "API key rejected",
    Verdict.WRONG_HOST: "wrong host",
    Verdict.TOO_LARGE: "too large, sending smaller batches",
}


@dataclass(frozen=True)
class Delivery:
    verdict: Verdict
    reason: str  # for people: "503 Service Unavailable", "connection refused"
    status: int | None = None
    retry_after: float | None = None  # seconds to hold back every request to this host


def classify_status(response: httpx.Response, wall_now: datetime) -> Delivery:
    status = response.status_code
    reason = f"{status} {response.reason_phrase}".strip()
    if 200 <= status < 300:
        return Delivery(Verdict.ACCEPTED, reason, status)
    if 300 <= status < 400 or status in (404, 405):
        return Delivery(Verdict.WRONG_HOST, reason, status)
    if status in (401, 403):
        return Delivery(Verdict.REJECTED_KEY, reason, status)
    if status == 413:
        return Delivery(Verdict.TOO_LARGE, reason, status)
    if status in (408, 429) or status >= 500:
        retry_after = parse_retry_after(response.headers.get("Retry-After"), wall_now)
        return Delivery(Verdict.TRANSIENT, reason, status, retry_after)
    # 400 and any other 4xx: this body will never be accepted as it is.
    return Delivery(Verdict.REJECTED_BEAT, reason, status)


def parse_retry_after(value: str | None, wall_now: datetime) -> float | None:
    """Seconds to wait from a Retry-After header given as seconds or as an HTTP date."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        seconds = (moment - wall_now).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, min(seconds, 86_400.0))


def describe_network_error(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            return f"TLS error: {cause.verify_message or 'certificate verify failed'}"
        if isinstance(cause, ssl.SSLError):
            return f"TLS error: {cause.reason or cause}"
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    text = str(exc) or type(exc).__name__
    if "Name or service not known" in text or "nodename nor servname" in text:
        return "host name not found"
    if isinstance(exc, httpx.ConnectError):
        return f"could not connect ({text})"
    return text


# Anything shaped like a PostHog key (project, personal, secret): cut to the prefix `status`
# shows anyway.
_KEY_SHAPE = re.compile(r"\b(ph[cxs]_[A-Za-z0-9]{4})[A-Za-z0-9]+")


def redact_keys(text: str, *secrets: str) -> str:
    """``text`` from a server, with the given secrets and anything key-shaped masked."""
    for secret in secrets:
        if secret and len(secret) >= 8:
            text = text.replace(secret, f"{secret[:8]}…")
    return _KEY_SHAPE.sub(r"\1…", text)
