"""Talks to PostHog's capture and flags endpoints and classifies every answer."""

from __future__ import annotations

import enum
import json
import logging
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from heartbeat_tray import __version__
from heartbeat_tray.event import iso_utc

log = logging.getLogger(__name__)

USER_AGENT = f"heartbeat-tray/{__version__}"


class Verdict(enum.Enum):
    ACCEPTED = "accepted"
    TRANSIENT = "transient"  # network, timeout, 408, 429, 5xx: keep and retry
    REJECTED_BEAT = "rejected-beat"  # 400: this beat can never be accepted
    REJECTED_KEY = "rejected-key"  # 401/403: wrong key or host; stop until settings change
    TOO_LARGE = "too-large"  # 413: send fewer at once


@dataclass(frozen=True)
class Delivery:
    verdict: Verdict
    reason: str  # for people: "503 Service Unavailable", "connection refused"
    status: int | None = None
    retry_after: float | None = None  # seconds to hold back every request to this host


class KeyCheckVerdict(enum.Enum):
    VALID = "valid"
    INVALID = "invalid"  # 401/403: invalid, expired, or a key of another region
    UNREACHABLE = "unreachable"
    TLS_ERROR = "tls-error"
    UNEXPECTED = "unexpected"


@dataclass(frozen=True)
class KeyCheck:
    verdict: KeyCheckVerdict
    message: str  # one sentence for the user


def classify_status(response: httpx.Response, wall_now: datetime) -> Delivery:
    status = response.status_code
    reason = f"{status} {response.reason_phrase}".strip()
    if 200 <= status < 300:
        return Delivery(Verdict.ACCEPTED, reason, status)
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


class PostHogClient:
    """One keep-alive HTTP client for the app's lifetime; TLS verification always on."""

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        wall_clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._http = httpx.Client(
            transport=transport,
            headers={"User-Agent": USER_AGENT},
            verify=True,
            follow_redirects=False,
        )
        self._wall = wall_clock or (lambda: datetime.now(UTC))

    def close(self) -> None:
        self._http.close()

    def send_batch(
        self, host: str, api_key: str, events: Sequence[dict[str, Any]], timeout: float
    ) -> Delivery:
        body = {
            "api_key": api_key,
            "batch": list(events),
            "sent_at": iso_utc(self._wall()),
            "historical_migration": False,
        }
        try:
            response = self._http.post(
                f"{host}/batch/",
                content=json.dumps(body, separators=(",", ":")).encode("utf-8"),
                headers={"Content-Type": "application/json"},
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            reason = describe_network_error(exc)
            log.info("Capture request failed: %s", reason)
            return Delivery(Verdict.TRANSIENT, reason)
        return classify_status(response, self._wall())

    def check_key(self, host: str, api_key: str, distinct_id: str, timeout: float) -> KeyCheck:
        try:
            response = self._http.post(
                f"{host}/flags/",
                params={"v": "2"},
                json={"api_key": api_key, "distinct_id": distinct_id},
                timeout=timeout,
            )
        except httpx.HTTPError as exc:
            reason = describe_network_error(exc)
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
        if status == 200:
            return KeyCheck(KeyCheckVerdict.VALID, f"The API key is valid for {host}.")
        if status in (401, 403):
            return KeyCheck(
                KeyCheckVerdict.INVALID,
                f"{host} rejected the API key ({status}): it is invalid, expired, or belongs "
                "to another region or instance; copy the project API key from Project settings.",
            )
        return KeyCheck(
            KeyCheckVerdict.UNEXPECTED,
            f"{host} answered {status} {response.reason_phrase}; try again later.",
        )
