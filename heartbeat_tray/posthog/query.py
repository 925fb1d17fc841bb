"""PostHog's private API, read with a personal key: find the project, and ask which beats are
stored (the ingestion check). Answers are classified as values, like the capture client's.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import httpx

from heartbeat_tray.core.ports import REQUEST_DEADLINE
from heartbeat_tray.core.timefmt import parse_iso
from heartbeat_tray.core.verdicts import (
    QueryAnswer,
    QueryVerdict,
    StatusKind,
    StoredBeat,
    status_kind,
)
from heartbeat_tray.net.http import (
    PROJECTS_ANSWER_LIMIT,
    QUERY_ANSWER_LIMIT,
    DeadlineClient,
    UnreadableAnswer,
    no_answer,
    parse_retry_after,
)
from heartbeat_tray.posthog.responses import redact_keys

log = logging.getLogger(__name__)

QUERY_NAME = "heartbeat-tray ingestion check"
MAX_PROJECT_PAGES = 50
ROW_LIMIT = 1000  # rows per query answer
MAX_QUERY_PAGES = 8  # queries per check at most, only while answers come back full


def hogql(window_seconds: int, *, paged: bool = False) -> str:
    """The check's query; ``paged``: only beats before ``{before}`` (the next page of a full
    answer)."""
    older = " AND timestamp < toDateTime({before})" if paged else ""
    return (
        "SELECT uuid, timestamp, created_at FROM events WHERE event = {event} AND distinct_id = "
        "{distinct_id} AND timestamp > now() - INTERVAL "
        f"{int(window_seconds)} SECOND{older} ORDER BY timestamp DESC LIMIT {ROW_LIMIT}"
    )


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
                reason = no_answer(exc, expired, timeout).reason
                return QueryAnswer(
                    QueryVerdict.TRANSIENT, f"PostHog's query API could not be reached ({reason})."
                )
            except UnreadableAnswer as exc:
                return QueryAnswer(QueryVerdict.ERROR, f"PostHog's answer was unusable: {exc}.")

    def _failure(self, response: httpx.Response, what: str, personal_key: str) -> QueryAnswer:
        status = response.status_code
        try:
            body = response.json()
            detail = str(body.get("detail") or "").strip() if isinstance(body, dict) else ""
        except (ValueError, RecursionError):
            detail = ""
        # A server's words are shown and stored: never with a key in them (some echo the
        # Authorization header back).
        detail = redact_keys(detail[:300], personal_key)
        said = f" ({detail})" if detail else ""
        kind = status_kind(status)
        if kind is StatusKind.REJECTED_AUTH:
            return QueryAnswer(
                QueryVerdict.REJECTED,
                f"PostHog rejected the personal API key ({status}){said}; it needs the Query "
                "Read and Project Read scopes — check it in Settings.",
            )
        if kind is StatusKind.NOT_FOUND:
            return QueryAnswer(QueryVerdict.NOT_FOUND, f"PostHog found no {what} (404){said}.")
        if kind is StatusKind.RATE_LIMITED:
            retry = parse_retry_after(response.headers.get("Retry-After"), self._wall())
            return QueryAnswer(
                QueryVerdict.RATE_LIMITED,
                f"PostHog limits queries (429){said}; waiting before the next check.",
                retry_after=retry,
            )
        if kind is StatusKind.TRANSIENT:
            return QueryAnswer(
                QueryVerdict.TRANSIENT, f"PostHog's query API answered {status}{said}."
            )
        return QueryAnswer(QueryVerdict.ERROR, f"PostHog answered {status} to the {what}{said}.")

    def find_project(
        self,
        app_host: str,
        personal_key: str,
        project_key: str,
        timeout: float = REQUEST_DEADLINE,
        deadline: float | None = None,
    ) -> QueryAnswer:
        """The id of the project whose ``api_token`` is the project key (follows ``next``).

        ``next`` comes from the server: only its path and query are kept, and the app host is
        asked (never another scheme, host or port: the personal key goes with every page).
        ``deadline`` (monotonic) bounds all pages together.
        """
        base = urlsplit(app_host)
        url = f"{app_host}/api/projects/"
        for _ in range(MAX_PROJECT_PAGES):
            budget = timeout if deadline is None else min(timeout, deadline - time.monotonic())
            if budget <= 0:
                return QueryAnswer(
                    QueryVerdict.TRANSIENT, "PostHog's project list did not come in time."
                )
            answer = self._call("GET", url, personal_key, budget, limit=PROJECTS_ANSWER_LIMIT)
            if isinstance(answer, QueryAnswer):
                return answer
            if answer.status_code != 200:
                return self._failure(answer, "project list", personal_key)
            try:
                found, following = _project_page(answer.json(), project_key)
            except (ValueError, TypeError, RecursionError) as exc:
                return QueryAnswer(
                    QueryVerdict.ERROR,
                    redact_keys(f"PostHog's project list was unusable: {exc}.", personal_key),
                )
            if found is not None:
                return QueryAnswer(QueryVerdict.OK, f"Project {found}.", project_id=found)
            if following is None:
                break
            url = f"{base.scheme}://{base.netloc}{following}"
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
        max_pages: int = MAX_QUERY_PAGES,
    ) -> QueryAnswer:
        """The beats PostHog has stored in the window, newest first.

        One HogQL query, and more only while an answer is full (a backlog of thousands): each
        asks for the beats before the oldest one so far. ``covered_since`` says how far back
        the answer reaches when the pages ran out (older beats are not judged)."""
        url = f"{app_host}/api/projects/{project_id}/query/"
        beats: dict[str, StoredBeat] = {}
        before: datetime | None = None
        for _ in range(max_pages):
            values: dict[str, str] = {"event": event, "distinct_id": distinct_id}
            if before is not None:
                values["before"] = before.isoformat()
            body = {
                "query": {
                    "kind": "HogQLQuery",
                    "query": hogql(window_seconds, paged=before is not None),
                    "values": values,
                },
                # Without it PostHog answers a repeated query from a cache hours old.
                "refresh": "force_blocking",
                "name": QUERY_NAME,
            }
            answer = self._call("POST", url, personal_key, timeout, json=body)
            if isinstance(answer, QueryAnswer):
                return answer
            if answer.status_code != 200:
                return self._failure(answer, f"project {project_id}", personal_key)
            try:
                rows = _stored_rows(answer.json())
            except (ValueError, TypeError, KeyError, OverflowError, RecursionError) as exc:
                log.warning("Unusable query answer: %.300s", redact_keys(answer.text, personal_key))
                return QueryAnswer(
                    QueryVerdict.ERROR,
                    redact_keys(f"PostHog's query answer was unusable: {exc}.", personal_key),
                )
            beats.update((row.uuid, row) for row in rows)
            if len(rows) < ROW_LIMIT:
                found = sorted(beats.values(), key=lambda b: b.timestamp, reverse=True)
                return QueryAnswer(QueryVerdict.OK, f"{len(found)} beats found.", found, project_id)
            before = min(row.timestamp for row in rows)
        found = sorted(beats.values(), key=lambda b: b.timestamp, reverse=True)
        return QueryAnswer(
            QueryVerdict.OK, f"{len(found)} beats found.", found, project_id, covered_since=before
        )


def _project_page(page: Any, project_key: str) -> tuple[int | None, str | None]:
    """(the project id if this page has it, the path and query of the next page or None)."""
    if not isinstance(page, dict):
        raise TypeError("not an object")
    results = page.get("results", [])
    if not isinstance(results, list):
        raise TypeError("'results' is not a list")
    for project in results:
        if isinstance(project, dict) and project.get("api_token") == project_key:
            project_id = project.get("id")
            if isinstance(project_id, bool) or not isinstance(project_id, int):
                raise TypeError("the project's id is not a whole number")
            if not 0 < project_id < 2**53:
                raise ValueError("the project's id is out of range")
            return project_id, None
    following = page.get("next")
    if following is None or following == "":
        return None, None
    if not isinstance(following, str):
        raise TypeError("'next' is not a link")
    parts = urlsplit(following)
    if parts.scheme not in ("", "http", "https") or not parts.path.startswith("/"):
        raise ValueError("'next' is not a link to a page of the list")
    return None, parts.path + (f"?{parts.query}" if parts.query else "")


def _stored_rows(answer: Any) -> list[StoredBeat]:
    if not isinstance(answer, dict) or not isinstance(answer.get("results"), list):
        raise TypeError("no list of results")
    rows = []
    for row in answer["results"]:
        if not isinstance(row, list) or len(row) != 3:
            raise TypeError("a row is not [uuid, timestamp, created_at]")
        uid, stamp, created = row
        if not all(isinstance(v, str) for v in row):
            raise TypeError("a row holds something other than text")
        rows.append(StoredBeat(uid, parse_iso(stamp), parse_iso(created)))
    return rows
