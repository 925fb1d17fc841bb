"""``once`` and ``check``: one request now, one line of answer, an exit code for scripts."""

from __future__ import annotations

import logging
import sqlite3
import uuid
from datetime import UTC, datetime

from heartbeat_tray.cli.context import EXIT_NOT_ACCEPTED, EXIT_OK, Context, answer
from heartbeat_tray.core.outbox import Outbox
from heartbeat_tray.core.ports import REQUEST_DEADLINE
from heartbeat_tray.core.state_file import Meta
from heartbeat_tray.core.verdicts import Delivery, KeyCheckVerdict, NetworkFailure, Verdict
from heartbeat_tray.posthog.capture import PostHogClient

log = logging.getLogger(__name__)


def next_sequence(ctx: Context) -> int:
    outbox = Outbox(ctx.paths.outbox_file)
    try:
        return outbox.next_sequence()
    except sqlite3.Error as exc:  # a full disk: the beat still goes, its number not kept
        log.warning("Could not record the sequence number: %s", exc)
        return int(outbox.read_meta(Meta.SEQUENCE) or 0) + 1
    finally:
        outbox.close()


def cmd_once(ctx: Context) -> int:
    settings = ctx.usable_settings()
    ctx.require_state_folder()
    key = ctx.require_key()
    sequence = next_sequence(ctx)  # the sequence goes on; a failed beat is not queued
    template = settings.beat_template(ctx.distinct_id())
    event = template.build(uuid=str(uuid.uuid4()), timestamp=datetime.now(UTC), sequence=sequence)
    client = PostHogClient()
    try:
        result = client.send_batch(settings.host, key.value, [event], timeout=REQUEST_DEADLINE)
    finally:
        client.close()
    if result.verdict is Verdict.ACCEPTED:
        answer(
            f"Accepted: {settings.event!r} sent to {settings.host} ({result.reason}). Capture "
            "accepts any well-formed key; 'heartbeat-tray check' proves this one is valid, "
            "'heartbeat-tray verify' that the beat is stored.",
            ok=True,
        )
        return EXIT_OK
    hint = {
        Verdict.REJECTED_KEY: " PostHog rejected the API key; check it with "
        "'heartbeat-tray check' and store the right one with 'heartbeat-tray key set'.",
        Verdict.WRONG_HOST: " That is not a PostHog ingest address; check the host "
        "(e.g. https://eu.i.posthog.com, or your instance's base URL).",
        Verdict.TRANSIENT: " Check the host and your network, or try again later; "
        "'heartbeat-tray run' keeps and retries beats.",
    }.get(result.verdict, "")
    answer(f"Not accepted: {_reason_at(result, settings.host)}.{hint}", ok=False)
    return EXIT_NOT_ACCEPTED


def cmd_check(ctx: Context) -> int:
    settings = ctx.usable_settings()
    ctx.require_state_folder()
    key = ctx.require_key()
    client = PostHogClient()
    try:
        result = client.check_key(settings.host, key.value, ctx.distinct_id(), REQUEST_DEADLINE)
    finally:
        client.close()
    valid = result.verdict is KeyCheckVerdict.VALID
    answer(result.message, ok=valid)
    return EXIT_OK if valid else EXIT_NOT_ACCEPTED


def _reason_at(result: Delivery, host: str) -> str:
    """'503 Service Unavailable from X', 'connection refused by X', 'timed out … waiting for X'."""
    reason = result.reason
    if result.status is not None:
        return f"{reason} from {host}"
    if result.failure is NetworkFailure.REFUSED:
        return f"connection refused by {host}"
    if result.failure is NetworkFailure.TIMEOUT:
        return f"{reason} waiting for {host}"
    return f"{reason} ({host})"
