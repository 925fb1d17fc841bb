"""PostHog's hosts: the ingest host beats go to, and the app host where people (and the query
API) look. Known cloud hosts map both ways; a self-hosted instance serves both on one URL.
"""

from __future__ import annotations

from urllib.parse import urlsplit

US_HOST = "https://us.i.posthog.com"
EU_HOST = "https://eu.i.posthog.com"

# posthog-python maps the legacy and app hosts to the ingest hosts; so do we.
_INGEST_FOR = {
    "https://app.posthog.com": US_HOST,
    "https://us.posthog.com": US_HOST,
    "https://eu.posthog.com": EU_HOST,
}
_APP_FOR = {
    US_HOST: "https://us.posthog.com",
    EU_HOST: "https://eu.posthog.com",
}


def ingest_host(url: str) -> str:
    """The host to send events to, for a host a user typed (legacy and app hosts mapped)."""
    text = url.strip().rstrip("/")
    return _INGEST_FOR.get(text.lower(), text)


def app_host(ingest: str) -> str:
    """Where a person (and the query API) finds the project: not the .i. ingest host."""
    parts = urlsplit(ingest)
    base = f"{parts.scheme}://{(parts.hostname or '').lower()}"
    return _APP_FOR.get(base, ingest.rstrip("/"))
