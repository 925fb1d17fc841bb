"""Which project the ingestion check asks about, and where: one answer for the poller, the
dialog's Test and ``verify``.

The project id comes from the settings, else PostHog is asked which project the project API key
belongs to (the poller caches that answer per host and key). The app host comes from the
settings, else it is derived from the ingest host (``us.i.posthog.com`` → ``us.posthog.com``).
"""

from __future__ import annotations

import hashlib
from typing import Protocol

from heartbeat_tray.core.hosts import app_host
from heartbeat_tray.core.ports import REQUEST_DEADLINE, StoredBeatsQuery
from heartbeat_tray.core.settings import Settings
from heartbeat_tray.core.verdicts import QueryAnswer, QueryVerdict


class ProjectCache(Protocol):
    def cached_project(self, scope: str) -> int | None: ...

    def cache_project(self, scope: str, project_id: int) -> None: ...


def check_host(settings: Settings) -> str:
    """Where the query API is asked: ``[ingestion] app_host``, else the ingest host's app host."""
    return settings.ingestion.app_host or app_host(settings.host)


def resolve_project(
    client: StoredBeatsQuery,
    settings: Settings,
    personal_key: str,
    project_key: str,
    *,
    cache: ProjectCache | None = None,
    timeout: float = REQUEST_DEADLINE,
    deadline: float | None = None,
) -> QueryAnswer:
    """OK with ``project_id`` set, or the answer that says why there is none."""
    configured = settings.ingestion.project_id
    if configured:
        project_id = int(configured)
        return QueryAnswer(QueryVerdict.OK, f"Project {project_id}.", project_id=project_id)
    host = check_host(settings)
    # The key itself is never stored: a digest tells a changed key from the cached one.
    scope = f"{host}|{hashlib.sha256(project_key.encode()).hexdigest()[:16]}"
    cached = cache.cached_project(scope) if cache is not None else None
    if cached is not None:
        return QueryAnswer(QueryVerdict.OK, f"Project {cached}.", project_id=cached)
    answer = client.find_project(host, personal_key, project_key, timeout, deadline=deadline)
    if answer.verdict is QueryVerdict.OK and answer.project_id is not None and cache is not None:
        cache.cache_project(scope, answer.project_id)
    return answer
