"""The HTTP client every outgoing request uses: keep-alive, TLS verified, redirects never
followed (a key may be in the body), and a deadline for each whole exchange."""

from __future__ import annotations

import contextlib
import ssl
import threading
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from heartbeat_tray import __version__
from heartbeat_tray.core.verdicts import NetworkFailure
from heartbeat_tray.net.deadline import Deadlines, DeadlineTransport

USER_AGENT = f"heartbeat-tray/{__version__}"


# The most of an answer (decompressed) each kind of request reads: what it needs, with room.
CAPTURE_ANSWER_LIMIT = 64 * 1024  # {"status": 1}
FLAGS_ANSWER_LIMIT = 4 * 1024 * 1024  # a project's feature flags, for one distinct id
PROJECTS_ANSWER_LIMIT = 4 * 1024 * 1024  # one page of the project list
QUERY_ANSWER_LIMIT = 8 * 1024 * 1024  # 1000 rows of three short columns take ~150 KB
WEBHOOK_ANSWER_LIMIT = 64 * 1024  # "ok"


class UnreadableAnswer(Exception):
    """An answer abandoned before it was read whole; ``str()`` says why."""


class AnswerTooLarge(UnreadableAnswer):
    """The answer went past its limit (decompressed); it was abandoned unread."""

    def __init__(self, limit: int) -> None:
        size = f"{limit // (1024 * 1024)} MB" if limit >= 1024 * 1024 else f"{limit // 1024} KB"
        super().__init__(f"the answer was larger than {size}, far more than it can be")
        self.limit = limit


def read_capped(chunks: Iterable[bytes], encoding: str, limit: int) -> bytes:
    """The raw chunks of an answer, decompressed, never past ``limit``: zlib inflates each
    chunk only as far as the room left (a gzip bomb stops at the cap)."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        inflate = None
    elif encoding in ("gzip", "x-gzip", "deflate"):
        inflate = zlib.decompressobj(wbits=47)  # gzip or zlib, by the header it finds
    else:
        raise UnreadableAnswer(f"the answer came encoded as {encoding!r}, which was not asked for")
    body = bytearray()
    for chunk in chunks:
        if inflate is None:
            body += chunk
        else:
            pending = chunk
            while pending and len(body) <= limit:
                try:
                    body += inflate.decompress(pending, limit + 1 - len(body))
                except zlib.error as exc:
                    raise UnreadableAnswer(f"the answer did not decompress ({exc})") from None
                pending = inflate.unconsumed_tail
        if len(body) > limit:
            raise AnswerTooLarge(limit)
    return bytes(body)


class DeadlineClient:
    """``http`` for requests; ``within(seconds)`` around one to bound all of it; ``_wall`` the
    clock for ``sent_at`` and Retry-After dates (a test's own)."""

    def __init__(
        self,
        transport: httpx.BaseTransport | None = None,
        wall_clock: Callable[[], datetime] | None = None,
    ) -> None:
        self._wall = wall_clock or (lambda: datetime.now(UTC))
        # A test's own transport has no socket to cut; the deadline runs around it all the same.
        self._deadlines = Deadlines()
        self.http = httpx.Client(
            transport=transport or DeadlineTransport(self._deadlines),
            # Only what read_capped can inflate a chunk at a time.
            headers={"User-Agent": USER_AGENT, "Accept-Encoding": "gzip, deflate"},
            verify=True,
            follow_redirects=False,
        )

    def close(self) -> None:
        self.http.close()

    def fetch(self, method: str, url: str, *, limit: int, **kwargs: Any) -> httpx.Response:
        """One request whose answer is read, decompressed, up to ``limit`` bytes; past that the
        exchange is abandoned (AnswerTooLarge): a 1 MB gzip bomb never becomes 1 GiB here."""
        with self.http.stream(method, url, **kwargs) as response:
            if response.is_stream_consumed:  # an answer built in memory (a test's transport)
                body = response.content
                if len(body) > limit:
                    raise AnswerTooLarge(limit)
            else:
                encoding = response.headers.get("Content-Encoding", "")
                body = read_capped(response.iter_raw(), encoding, limit)
            plain = [
                (name, value)
                for name, value in response.headers.multi_items()
                if name.lower() not in ("content-encoding", "content-length", "transfer-encoding")
            ]
            return httpx.Response(
                response.status_code,
                headers=plain,
                content=body,
                request=response.request,
                extensions={k: v for k, v in response.extensions.items() if k == "reason_phrase"},
            )

    @contextlib.contextmanager
    def within(self, seconds: float) -> Iterator[threading.Event]:
        """The exchange inside is cut after ``seconds``; the event says whether it was."""
        with self._deadlines.deadline(seconds) as expired:
            yield expired


@dataclass(frozen=True)
class NoAnswer:
    """Why a request got no answer: a kind to decide with, a reason in words for people."""

    kind: NetworkFailure
    reason: str


def no_answer(exc: httpx.HTTPError, expired: threading.Event, seconds: float) -> NoAnswer:
    """Why a request failed: the deadline, or what the network said."""
    if expired.is_set():
        return NoAnswer(
            NetworkFailure.TIMEOUT, f"timed out (no complete answer within {seconds:.3g} s)"
        )
    return describe_network_error(exc)


def describe_network_error(exc: httpx.HTTPError) -> NoAnswer:
    if isinstance(exc, httpx.TimeoutException):
        return NoAnswer(NetworkFailure.TIMEOUT, "timed out")
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLCertVerificationError):
            why = cause.verify_message or "certificate verify failed"
            return NoAnswer(NetworkFailure.TLS, f"TLS error: {why}")
        if isinstance(cause, ssl.SSLError):
            return NoAnswer(NetworkFailure.TLS, f"TLS error: {cause.reason or cause}")
        if isinstance(cause, ConnectionRefusedError):
            return NoAnswer(NetworkFailure.REFUSED, "connection refused")
        cause = cause.__cause__ or cause.__context__
    text = str(exc) or type(exc).__name__
    if "Name or service not known" in text or "nodename nor servname" in text:
        return NoAnswer(NetworkFailure.OTHER, "host name not found")
    if isinstance(exc, httpx.ConnectError):
        return NoAnswer(NetworkFailure.OTHER, f"could not connect ({text})")
    return NoAnswer(NetworkFailure.OTHER, text)


def reason_phrase(response: httpx.Response) -> str:
    """``503 Service Unavailable``: how an answer is named to people."""
    return f"{response.status_code} {response.reason_phrase}".strip()


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
