"""One answer to "which project, where" for the poller, the dialog's Test and ``verify``."""

from __future__ import annotations

from dataclasses import replace

import httpx

from heartbeat_tray.core.settings import IngestionSettings, Settings
from heartbeat_tray.core.verdicts import QueryVerdict
from heartbeat_tray.ingestion.project import check_host, resolve_project
from heartbeat_tray.posthog.query import QueryClient

PERSONAL = "phx_" + "p" * 40


class Projects:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.asked.append(str(request.url))
        return httpx.Response(200, json={"results": [{"id": 42, "api_token": "phc_right"}]})


class Cache:
    def __init__(self) -> None:
        self.kept: dict[str, int] = {}

    def cached_project(self, scope: str) -> int | None:
        return self.kept.get(scope)

    def cache_project(self, scope: str, project_id: int) -> None:
        self.kept[scope] = project_id


def test_the_project_is_found_once_per_host_and_key_and_a_set_id_asks_nothing() -> None:
    projects = Projects()
    client = QueryClient(transport=httpx.MockTransport(projects.handle))
    cache = Cache()
    settings = Settings(host="https://eu.i.posthog.com")
    assert check_host(settings) == "https://eu.posthog.com"
    for _ in range(3):
        found = resolve_project(client, settings, PERSONAL, "phc_right", cache=cache)
        assert (found.verdict, found.project_id) == (QueryVerdict.OK, 42)
    assert projects.asked == ["https://eu.posthog.com/api/projects/"]
    assert "phc_right" not in str(cache.kept)  # the key itself is never kept
    other = resolve_project(client, settings, PERSONAL, "phc_other", cache=cache)
    assert other.verdict is QueryVerdict.NOT_FOUND and len(projects.asked) == 2

    pinned = replace(
        settings, ingestion=IngestionSettings(project_id="7", app_host="https://ph.example")
    )
    assert check_host(pinned) == "https://ph.example"
    found = resolve_project(client, pinned, PERSONAL, "phc_right")
    assert found.project_id == 7 and len(projects.asked) == 2
