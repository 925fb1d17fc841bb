"""What every server's answer means, as values: the words the core decides with.

The adapters (``posthog/``, ``system/webhook``) turn HTTP exchanges into these; the core never
sees a response. One rule classifies an HTTP status for all of them (``status_kind``), so a
429 or a redirect means the same to capture, the key check, the query API and the webhook.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime


class StatusKind(enum.Enum):
    """An HTTP status, by what it says about retrying and about the address."""

    SUCCESS = "success"  # 2xx
    REDIRECT = "redirect"  # 3xx: never followed (a key may be in the body)
    REJECTED_AUTH = "rejected-auth"  # 401, 403
    NOT_FOUND = "not-found"  # 404
    WRONG_METHOD = "wrong-method"  # 405: a proxy or a page, not the API
    TOO_LARGE = "too-large"  # 413
    RATE_LIMITED = "rate-limited"  # 429
    TRANSIENT = "transient"  # 408, 5xx
    REFUSED = "refused"  # 400 and any other answer


def status_kind(status: int) -> StatusKind:
    if 200 <= status < 300:
        return StatusKind.SUCCESS
    if 300 <= status < 400:
        return StatusKind.REDIRECT
    if status in (401, 403):
        return StatusKind.REJECTED_AUTH
    if status == 404:
        return StatusKind.NOT_FOUND
    if status == 405:
        return StatusKind.WRONG_METHOD
    if status == 413:
        return StatusKind.TOO_LARGE
    if status == 429:
        return StatusKind.RATE_LIMITED
    if status == 408 or status >= 500:
        return StatusKind.TRANSIENT
    return StatusKind.REFUSED


# Not the address of the API: a proxy, a page, a typo. Capture and the key check stop on it.
NOT_AN_API = frozenset({StatusKind.REDIRECT, StatusKind.NOT_FOUND, StatusKind.WRONG_METHOD})
# Worth trying again later, unchanged.
RETRYABLE = frozenset({StatusKind.TRANSIENT, StatusKind.RATE_LIMITED})


class NetworkFailure(enum.Enum):
    """Why no answer came, where the reason changes what a user is told."""

    TIMEOUT = "timeout"
    REFUSED = "refused"  # nothing listens at that address
    TLS = "tls"
    OTHER = "other"


# --- capture ---


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
    failure: NetworkFailure | None = None  # no answer came, and why


# --- the key check (flags) ---


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

    @property
    def valid(self) -> bool:
        return self.verdict is KeyCheckVerdict.VALID


# --- the query API (the ingestion check) ---


class QueryVerdict(enum.Enum):
    OK = "ok"
    REJECTED = "rejected"  # 401/403: the personal key, or a missing scope; stop until settings
    NOT_FOUND = "not-found"  # 404, or no project of this project key
    RATE_LIMITED = "rate-limited"  # 429: wait for Retry-After
    TRANSIENT = "transient"  # network, timeout, 5xx: try again later
    ERROR = "error"  # any other answer, a query error


@dataclass(frozen=True)
class StoredBeat:
    uuid: str
    timestamp: datetime  # the beat's time as PostHog stored it (corrected with sent_at)
    created_at: datetime  # when PostHog stored it


@dataclass(frozen=True)
class QueryAnswer:
    verdict: QueryVerdict
    message: str  # one sentence for people
    beats: list[StoredBeat] = field(default_factory=list)
    project_id: int | None = None
    retry_after: float | None = None
    covered_since: datetime | None = None  # set when the pages ran out before the window did


# --- the webhook ---


class WebhookResult(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"  # network, timeout, 3xx, 408, 429, 5xx
    REFUSED = "refused"  # any other answer: retrying would not help


def webhook_result(status: int) -> WebhookResult:
    kind = status_kind(status)
    if kind is StatusKind.SUCCESS:
        return WebhookResult.DELIVERED
    if kind in RETRYABLE or kind is StatusKind.REDIRECT:
        return WebhookResult.RETRY
    return WebhookResult.REFUSED
