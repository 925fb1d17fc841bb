"""``verify``: end to end, once — send one beat, then ask PostHog until that beat is stored.

Made for CI pipelines and for checking an instance after an upgrade: one line of answer, exit
0 when the beat is queryable within the timeout, 1 when not (or not accepted), 2 for a
configuration error (a personal API key is needed).
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime

from heartbeat_tray.cli.context import EXIT_CONFIG, EXIT_NOT_ACCEPTED, EXIT_OK, Context, UserError
from heartbeat_tray.cli.send import ONE_SHOT_DEADLINE, next_sequence
from heartbeat_tray.core.api_key import KeyKind, KeyringUnavailable
from heartbeat_tray.core.event import BeatTemplate
from heartbeat_tray.core.ingestion import MIN_WINDOW_SECONDS
from heartbeat_tray.posthog.capture import PostHogClient
from heartbeat_tray.posthog.hosts import app_host
from heartbeat_tray.posthog.query import QueryClient, QueryVerdict
from heartbeat_tray.posthog.responses import Verdict
from heartbeat_tray.system.keystore import KeyStore
from heartbeat_tray.system.log_setup import never_log

FIRST_DELAY = 1.0  # seconds between questions at first, then growing to
MAX_DELAY = 10.0


def _personal_key() -> str:
    try:
        key = KeyStore(kind=KeyKind.PERSONAL).get()
    except KeyringUnavailable as exc:
        raise UserError(f"Cannot read the personal API key: {exc}") from None
    if key is None:
        raise UserError(
            "No personal API key is set; run 'heartbeat-tray key set --personal' (or set "
            "POSTHOG_PERSONAL_API_KEY) with a phx_… key with the Query Read and Project Read "
            "scopes."
        )
    never_log(key.value)
    return key.value


def cmd_verify(ctx: Context) -> int:
    settings = ctx.usable_settings()
    ctx.require_state_folder()
    key = ctx.require_key()
    personal = _personal_key()
    host = settings.ingestion.app_host or app_host(settings.host)
    template = BeatTemplate(
        settings.event, ctx.distinct_id(), settings.interval_seconds, settings.properties
    )
    beat_id = str(uuid.uuid4())
    event = template.build(uuid=beat_id, timestamp=datetime.now(UTC), sequence=next_sequence(ctx))
    started = time.monotonic()
    sender = PostHogClient()
    try:
        sent = sender.send_batch(settings.host, key.value, [event], timeout=ONE_SHOT_DEADLINE)
    finally:
        sender.close()
    accepted_after = time.monotonic() - started
    if sent.verdict is not Verdict.ACCEPTED:
        print(f"Not accepted: {sent.reason} from {settings.host}.")
        return EXIT_NOT_ACCEPTED
    client = QueryClient()
    try:
        return _wait_until_stored(
            ctx, client, host, personal, key.value, beat_id, started, accepted_after
        )
    finally:
        client.close()


def _wait_until_stored(
    ctx: Context,
    client: QueryClient,
    host: str,
    personal: str,
    project_key: str,
    beat_id: str,
    started: float,
    accepted_after: float,
) -> int:
    settings = ctx.settings
    timeout = float(ctx.args.timeout)
    if settings.ingestion.project_id:
        project_id = int(settings.ingestion.project_id)
    else:
        found = client.find_project(host, personal, project_key)
        if found.verdict is not QueryVerdict.OK or found.project_id is None:
            raise UserError(
                found.message,
                EXIT_CONFIG
                if found.verdict in (QueryVerdict.REJECTED, QueryVerdict.NOT_FOUND)
                else EXIT_NOT_ACCEPTED,
            )
        project_id = found.project_id
    delay = FIRST_DELAY
    while True:
        answer = client.stored_beats(
            host,
            project_id,
            personal,
            event=settings.event,
            distinct_id=ctx.distinct_id(),
            window_seconds=MIN_WINDOW_SECONDS,
        )
        elapsed = time.monotonic() - started
        if answer.verdict is QueryVerdict.REJECTED:
            raise UserError(answer.message)
        mine = [beat for beat in answer.beats if beat.uuid == beat_id]
        if mine:
            lag = (mine[0].created_at - mine[0].timestamp).total_seconds()
            print(
                f"accepted in {accepted_after:.2f} s; queryable after {elapsed:.1f} s; "
                f"ingestion lag {lag:.1f} s"
            )
            return EXIT_OK
        wait = delay
        if answer.verdict is QueryVerdict.RATE_LIMITED and answer.retry_after is not None:
            wait = max(wait, answer.retry_after)
        if elapsed + wait > timeout:
            print(
                f"accepted in {accepted_after:.2f} s; not queryable within {timeout:g} s"
                + ("" if answer.verdict is QueryVerdict.OK else f" ({answer.message})")
            )
            return EXIT_NOT_ACCEPTED
        time.sleep(wait)
        delay = min(MAX_DELAY, delay * 1.5)
