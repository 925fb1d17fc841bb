"""The ingestion check against a PostHog that answers with evil, malformed, huge or slow
answers, and settings that TOML allows and Python does not: the personal key never leaves the
app host, no answer stops the check or speeds it up, and every failure is a sentence."""

from __future__ import annotations

import gzip
import json
import time
import tracemalloc
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from heartbeat_tray.core.ingestion_status import IngestionState
from heartbeat_tray.core.ports import AcceptedBeat
from heartbeat_tray.core.settings import SettingsError, validate_host, validate_webhook_url
from heartbeat_tray.core.verdicts import QueryVerdict, StoredBeat, WebhookResult
from heartbeat_tray.posthog.query import QueryClient
from heartbeat_tray.system.settings_file import load_settings
from heartbeat_tray.system.webhook import WebhookSender
from testkit.simulation import PERSONAL, PROJECT_KEY, Harness

APP = "https://us.posthog.com"


def client(handler: Any) -> QueryClient:
    return QueryClient(transport=httpx.MockTransport(handler))


# --- the personal key stays with the app host ---


@pytest.mark.parametrize(
    "following",
    [
        "http://127.0.0.2/api/projects/?offset=2",
        "https://evil.example:8443/api/projects/?offset=2",
        "//evil.example/api/projects/?offset=2",
        "/api/projects/?offset=2",
    ],
)
def test_next_only_ever_leads_back_to_the_app_host(following: str) -> None:
    asked: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url)
        if "offset" in str(request.url):
            return httpx.Response(200, json={"results": [{"id": 7, "api_token": PROJECT_KEY}]})
        return httpx.Response(200, json={"results": [], "next": following})

    found = client(handler).find_project(APP, PERSONAL, PROJECT_KEY)
    assert found.verdict is QueryVerdict.OK and found.project_id == 7
    assert [(u.scheme, u.host, u.port) for u in asked] == [("https", "us.posthog.com", None)] * 2
    assert str(asked[1]) == "https://us.posthog.com/api/projects/?offset=2"  # its path, our host


@pytest.mark.parametrize("following", [123, {"url": "/x"}, ["/x"], "javascript:alert(1)", "x"])
def test_a_next_that_is_not_a_link_is_an_error_and_nothing_more_is_asked(following: Any) -> None:
    asked: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        asked.append(request.url)
        return httpx.Response(200, json={"results": [], "next": following})

    found = client(handler).find_project(APP, PERSONAL, PROJECT_KEY)
    assert found.verdict is QueryVerdict.ERROR and "project list was unusable" in found.message
    assert len(asked) == 1


def test_a_server_that_echoes_the_key_never_gets_it_stored_or_shown(tmp_path: Path) -> None:
    h = Harness(tmp_path)

    def echo(request: httpx.Request) -> httpx.Response:
        said = f"Invalid token: {request.headers['Authorization']} (also {PROJECT_KEY})"
        return httpx.Response(403, json={"detail": said})

    h.api.handle = echo  # type: ignore[method-assign]
    h.poller = h.make_poller()
    h.run(120, beat_every=None)
    assert h.status.state is IngestionState.ERROR
    assert "Invalid token: Bearer phx_" in h.status.sentence
    assert PERSONAL not in h.status.sentence and PROJECT_KEY not in h.status.sentence
    h.store.close()
    assert PERSONAL.encode() not in h.path.read_bytes()  # the stored status has no key either


# --- no answer is too big ---


def test_a_gzip_bomb_is_abandoned_at_the_cap_without_inflating_it() -> None:
    bomb = gzip.compress(b" " * (256 * 1024 * 1024), compresslevel=9)  # 256 MiB as 250 KB

    class Network(httpx.SyncByteStream):  # as a socket delivers it: 64 KB at a time
        def __iter__(self) -> Any:
            for at in range(0, len(bomb), 65536):
                yield bomb[at : at + 65536]

    def handler(request: httpx.Request) -> httpx.Response:
        headers = {"Content-Encoding": "gzip", "Content-Type": "application/json"}
        return httpx.Response(200, headers=headers, stream=Network())

    tracemalloc.start()
    try:
        answer = client(handler).stored_beats(
            APP, 1, PERSONAL, event="heartbeat", distinct_id="i", window_seconds=7200
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert answer.verdict is QueryVerdict.ERROR and "larger than 8 MB" in answer.message
    assert peak < 24 * 1024 * 1024, peak  # the cap, twice at most; the bomb is 256 MiB


def test_a_webhook_that_redirects_or_cannot_be_parsed_is_a_failed_delivery() -> None:
    moved = WebhookSender(
        transport=httpx.MockTransport(
            lambda r: httpx.Response(307, headers={"Location": "https://elsewhere.example/"})
        )
    )
    assert moved.send("https://hooks.example/h", {"text": "x"}) is WebhookResult.RETRY
    broken = WebhookSender(transport=httpx.MockTransport(lambda r: httpx.Response(200)))
    assert broken.send("https://hooks\u200b.example/h", {"text": "x"}) is WebhookResult.RETRY


# --- an answer the app cannot use is an error, and the checks keep their pace ---

MALFORMED: list[Any] = [
    {"results": "nope"},
    {"results": [["u", "2026-11-26T12:00:00Z"]]},
    {"results": [[1, 2, 3]]},
    {"results": [["u", "9999-12-31T23:59:59-01:00", "9999-12-31T23:59:59-01:00"]]},
    {"results": [["u", "0001-01-01T00:00:00+01:00", "0001-01-01T00:00:00+01:00"]]},
    ["a", "list"],
    "a string",
    None,
]


@pytest.mark.parametrize("body", MALFORMED, ids=range(len(MALFORMED)))
def test_an_unusable_query_answer_is_an_error_and_the_next_check_waits_a_poll(
    tmp_path: Path, body: Any
) -> None:
    h = Harness(tmp_path, poll=60)
    h.run(600)  # healthy first: "ok" must not stay on show
    assert h.status.state is IngestionState.OK
    real = h.api.handle

    def hostile(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/query/"):
            h.api.queries.append({})
            return httpx.Response(200, json=body)
        return real(request)

    h.api.handle = hostile  # type: ignore[method-assign]
    h.poller = h.make_poller()  # its transport calls the hostile handler now
    asked = len(h.api.queries)
    h.run(151)
    assert h.status.state is IngestionState.ERROR
    assert "unusable" in h.status.sentence
    assert len(h.api.queries) - asked <= 3  # one a poll; it was 19 in 151 s


def test_deeply_nested_json_is_an_error_not_a_crash(tmp_path: Path) -> None:
    h = Harness(tmp_path, poll=60)
    deep = "[" * 100_000 + "]" * 100_000

    def nested(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, content=deep.encode(), headers={"Content-Type": "application/json"}
        )

    h.api.handle = nested  # type: ignore[method-assign]
    h.poller = h.make_poller()
    h.run(151, beat_every=None)
    assert h.status.state is IngestionState.ERROR


# --- lost means proven missing ---


def test_a_backlog_of_thousands_all_stored_loses_none(tmp_path: Path) -> None:
    h = Harness(tmp_path, poll=60, alert_after=60, interval=1)
    start = h.clock.wall()
    accepted = []
    for n in range(3025):  # a backlog delivered at once, stored by PostHog
        stamp = start + timedelta(seconds=n - 3025)
        accepted.append(AcceptedBeat(f"b{n}", stamp.timestamp(), start.timestamp(), False, 0, ""))
        h.api.stored[f"b{n}"] = StoredBeat(f"b{n}", stamp, start + timedelta(seconds=5))
    h.ledger.record(accepted)
    h.run(300, beat_every=1)
    assert h.status.state is IngestionState.OK
    assert h.status.lost == 0  # it was 2,002: LIMIT 1000 hid the older stored beats


# --- settings that TOML allows and Python does not ---


@pytest.mark.parametrize(
    "text",
    [
        '[ingestion]\npoll_seconds = "²"\n',
        "[ingestion]\nalert_after_seconds = " + "9" * 5000 + "\n",
        '[ingestion]\nproject_id = "²"\n',
        '[ingestion]\nproject_id = "' + "9" * 5000 + '"\n',
        "[properties]\ndeep = " + "[" * 2000 + "]" * 2000 + "\n",
        'interval_seconds = "٣"\n',
    ],
    ids=["superscript", "5000-digits", "project-superscript", "project-digits", "deep", "arabic"],
)
def test_settings_that_python_refuses_make_the_file_broken_not_the_app(
    tmp_path: Path, text: str
) -> None:
    path = tmp_path / "config.toml"
    path.write_text(text)
    loaded = load_settings(path)
    assert not loaded.usable and loaded.problem and loaded.problem.startswith("config.toml")


@pytest.mark.parametrize(
    ("host", "words"),
    [
        ("https://user:secret@eu.i.posthog.com", "user name or password"),
        ("https://eu.i.posthog\u200b.com", "invisible or space character (U+200B)"),
        ("https://eu.i.post\u00a0hog.com", "invisible or space character (U+00A0)"),
    ],
)
def test_a_host_with_user_info_or_an_invisible_character_is_refused(host: str, words: str) -> None:
    with pytest.raises(SettingsError) as caught:
        validate_host(host)
    assert words in str(caught.value) and "secret" not in str(caught.value)
    with pytest.raises(SettingsError) as hook:
        validate_webhook_url(host.replace("eu.i.posthog.com", "hooks.example/x"))
    assert words.split(" (")[0] in str(hook.value)


def test_the_project_list_is_bounded_by_the_whole_deadline() -> None:
    pages = 0

    def slow(request: httpx.Request) -> httpx.Response:
        nonlocal pages
        pages += 1
        time.sleep(0.3)
        return httpx.Response(200, json={"results": [], "next": f"/api/projects/?p={pages}"})

    started = time.monotonic()
    found = client(slow).find_project(APP, PERSONAL, PROJECT_KEY, deadline=started + 1.0)
    took = time.monotonic() - started
    assert found.verdict is QueryVerdict.TRANSIENT and took < 1.0 + 0.5
    assert pages <= 4  # not 50 pages


def test_no_error_text_is_longer_than_a_sentence() -> None:
    huge = {"detail": "x" * 100_000}
    answer = client(lambda r: httpx.Response(400, json=huge)).stored_beats(
        APP, 1, PERSONAL, event="e", distinct_id="d", window_seconds=7200
    )
    assert answer.verdict is QueryVerdict.ERROR and len(answer.message) < 500
    assert json.dumps(answer.message)


# --- a disk that cannot be written ---


def test_a_check_that_could_not_open_its_file_at_start_goes_back_to_it(tmp_path: Path) -> None:
    from heartbeat_tray.core.outbox import Outbox
    from heartbeat_tray.ingestion.store import AcceptedLedger, IngestionStore

    path = tmp_path / "not-yet" / "outbox.sqlite3"
    store = IngestionStore(path)  # the folder is missing (or the file locked) at start
    assert store.degraded is not None and store.ledger() == []
    outbox = Outbox(path)  # the outbox creates the folder; the ledger fills the file meanwhile
    ledger = AcceptedLedger(path, lambda: 7200)
    ledger.record([AcceptedBeat("u1", 1.0, 1.1, True, 0.0, "")])
    assert store.reopen() and store.degraded is None
    assert [b.uuid for b in store.ledger()] == ["u1"]  # no longer blind
    ledger.close()
    outbox.close()
    store.close()


def test_a_full_disk_still_alerts_once_and_says_the_check_keeps_nothing(tmp_path: Path) -> None:
    import sqlite3

    h = Harness(tmp_path, poll=60)
    h.run(600)

    def full(*args: Any, **kwargs: Any) -> Any:
        raise sqlite3.OperationalError("database or disk is full")

    h.store.apply = full  # type: ignore[method-assign]
    h.store.record_alert = full  # type: ignore[method-assign]
    h.store.save_status = full  # type: ignore[method-assign]
    h.run(900, lag=None)  # ingestion breaks while the disk is full
    assert h.status.state is IngestionState.FAILING
    assert "not kept on disk: the state file cannot be written" in h.status.sentence
    assert [a.title for a in h.alerts] == ["Heartbeat not ingested"]  # once, not per poll
    assert [w["status"] for w in h.api.webhooks] == ["triggered"]  # sent though not kept


def test_beats_accepted_while_the_disk_is_full_are_recorded_once_it_takes_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from heartbeat_tray.ingestion.store import AcceptedLedger, IngestionStore

    path = tmp_path / "outbox.sqlite3"
    ledger = AcceptedLedger(path, lambda: 7200)
    full = True
    opened = AcceptedLedger._connection

    def connection(self: AcceptedLedger) -> sqlite3.Connection:
        if full:
            raise sqlite3.OperationalError("database or disk is full")
        return opened(self)

    monkeypatch.setattr(AcceptedLedger, "_connection", connection)
    beats = [AcceptedBeat(f"u{n}", 1000.0 + n, 1000.2 + n, True, float(n), "run") for n in range(3)]
    ledger.record(beats[:2])  # the disk is full: kept in memory
    full = False
    ledger.record(beats[2:])  # the next announcement writes all three
    ledger.close()
    store = IngestionStore(path)
    assert [b.uuid for b in store.ledger()] == ["u0", "u1", "u2"]
    store.close()
