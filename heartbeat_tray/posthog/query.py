"""PostHog's private API, read with a personal key: find the project, and ask which beats are
stored (the ingestion check). Answers are classified as values, like the capture client's.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from heartbeat_tray.posthog.http import (
    PROJECTS_ANSWER_LIMIT,
    QUERY_ANSWER_LIMIT,
    AnswerTooLarge,
    DeadlineClient,
    failure_reason,
)
from heartbeat_tray.posthog.responses import parse_retry_after

log = logging.getLogger(__name__)

QUERY_NAME = "heartbeat-tray ingestion check"
MAX_PROJECT_PAGES = 50


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


def hogql(window_seconds: int) -> str:
    return (
        "SELECT uuid, timestamp, created_at FROM events WHERE event = {event} AND distinct_id = "
        "{distinct_id} AND timestamp > now() - INTERVAL "
        f"{int(window_seconds)} SECOND ORDER BY timestamp DESC LIMIT 1000"
    )


def parse_time(value: Any) -> datetime:
    """An ISO-8601 time in the project's time zone (``…+01:00``), as an aware UTC datetime."""
    moment = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


class QueryClient(DeadlineClient):
    def _call(
        self,
        method: str,
        url: str,
        personal_key: str,
        timeout: float,
        json: Any = None,
        *,
        limit: int = QUERY_ANSWER_LIMIT,
    ) -> httpx.Response | QueryAnswer:
        with self.within(timeout) as expired:
            try:
                return self.fetch(
                    method,
                    url,
                    limit=limit,
                    json=json,
                    headers={"Authorization": f"Bearer {personal_key}"},
                    timeout=timeout,
                )
            except httpx.HTTPError as exc:
                reason = failure_reason(exc, expired, timeout)
                return QueryAnswer(
                    QueryVerdict.TRANSIENT, f"PostHog's query API could not be reached ({reason})."
                )
            except AnswerTooLarge as exc:
                return QueryAnswer(QueryVerdict.ERROR, f"PostHog's answer was abandoned: {exc}.")

    def _failure(self, response: httpx.Response, what: str) -> QueryAnswer:
        status = response.status_code
        try:
            detail = str(response.json().get("detail") or "").strip()
        except ValueError:
            detail = ""
        said = f" ({detail})" if detail else ""
        if status in (401, 403):
            return QueryAnswer(
                QueryVerdict.REJECTED,
                f"PostHog rejected the personal API key ({status}){said}; it needs the Query "
                "Read and Project Read scopes — check it in Settings.",
            )
        if status == 404:
            return QueryAnswer(QueryVerdict.NOT_FOUND, f"PostHog found no {what} (404){said}.")
        if status == 429:
            retry = parse_retry_after(response.headers.get("Retry-After"), self._wall())
            return QueryAnswer(
                QueryVerdict.RATE_LIMITED,
                f"PostHog limits queries (429){said}; waiting before the next check.",
                retry_after=retry,
            )
        if status >= 500 or status == 408:
            return QueryAnswer(
                QueryVerdict.TRANSIENT, f"PostHog's query API answered {status}{said}."
            )
        return QueryAnswer(QueryVerdict.ERROR, f"PostHog answered {status} to the {what}{said}.")

    def find_project(
        self, app_host: str, personal_key: str, project_key: str, timeout: float = 10.0
    ) -> QueryAnswer:
        """The id of the project whose ``api_token`` is the project key (follows ``next``)."""
        url: str | None = f"{app_host}/api/projects/"
        for _ in range(MAX_PROJECT_PAGES):
            if url is None:
                break
            answer = self._call("GET", url, personal_key, timeout, limit=PROJECTS_ANSWER_LIMIT)
            if isinstance(answer, QueryAnswer):
                return answer
            if answer.status_code != 200:
                return self._failure(answer, "project list")
            try:
                page = answer.json()
                for project in page.get("results", []):
                    if project.get("api_token") == project_key:
                        project_id = int(project["id"])
                        return QueryAnswer(
                            QueryVerdict.OK, f"Project {project_id}.", project_id=project_id
                        )
                url = page.get("next") or None
            except (ValueError, KeyError, TypeError, AttributeError):
                return QueryAnswer(QueryVerdict.ERROR, "PostHog's project list was unreadable.")
        return QueryAnswer(
            QueryVerdict.NOT_FOUND,
            "The personal API key cannot see the project of this project API key; use a "
            "personal key of that project's organization, or set the project id in Settings.",
        )

    def stored_beats(
        self,
        app_host: str,
        project_id: int,
        personal_key: str,
        *,
        event: str,
        distinct_id: str,
        window_seconds: int,
        timeout: float = 15.0,
    ) -> QueryAnswer:
        """The beats PostHog has stored in the window, newest first (one HogQL query)."""
        body = {
            "query": {
                "kind": "HogQLQuery",
                "query": hogql(window_seconds),
                "values": {"event": event, "distinct_id": distinct_id},
            },
            # Without it PostHog answers a repeated query from a cache hours old.
            "refresh": "force_blocking",
            "name": QUERY_NAME,
        }
        url = f"{app_host}/api/projects/{project_id}/query/"
        answer = self._call("POST", url, personal_key, timeout, json=body)
        if isinstance(answer, QueryAnswer):
            return answer
        if answer.status_code != 200:
            return self._failure(answer, f"project {project_id}")
        try:
            rows = answer.json()["results"]
            beats = [StoredBeat(str(u), parse_time(ts), parse_time(c)) for u, ts, c in rows]
        except (ValueError, KeyError, TypeError):
            log.warning("Unreadable query answer: %.300s", answer.text)
            return QueryAnswer(QueryVerdict.ERROR, "PostHog's query answer was unreadable.")
        return QueryAnswer(QueryVerdict.OK, f"{len(beats)} beats found.", beats, project_id)
