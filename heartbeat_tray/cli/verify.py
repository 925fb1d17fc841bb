"""``verify``: end to end, once — send one beat, then ask PostHog until that beat is stored.

Made for CI pipelines and for checking an instance after an upgrade: one line of answer, exit
0 when the beat is queryable within the timeout, 1 when not (or not accepted), 2 for a
configuration error (a personal API key is needed).
"""

from __future__ import annotations

import math
import sys
import time
import uuid
from datetime import UTC, datetime

from heartbeat_tray.cli.context import (
    EXIT_CONFIG,
    EXIT_NOT_ACCEPTED,
    EXIT_OK,
    Context,
    UserError,
    answer,
    require_personal_key,
)
from heartbeat_tray.cli.send import next_sequence
from heartbeat_tray.core.ports import REQUEST_DEADLINE
from heartbeat_tray.core.verdicts import QueryVerdict, Verdict
from heartbeat_tray.ingestion.project import check_host, resolve_project
from heartbeat_tray.ingestion.rules import MIN_WINDOW_SECONDS
from heartbeat_tray.posthog.capture import PostHogClient
from heartbeat_tray.posthog.query import QueryClient

FIRST_DELAY = 1.0  # seconds between questions at first, then growing to
MAX_DELAY = 10.0


def cmd_verify(ctx: Context) -> int:
    timeout = float(ctx.args.timeout)
    if not math.isfinite(timeout) or timeout <= 0:
        raise UserError("--timeout must be a positive number of seconds, such as 600.")
    settings = ctx.usable_settings()
    ctx.require_state_folder()
    key = ctx.require_key()
    personal = require_personal_key()
    host = check_host(settings)
    template = settings.beat_template(ctx.distinct_id())
    beat_id = str(uuid.uuid4())
    event = template.build(uuid=beat_id, timestamp=datetime.now(UTC), sequence=next_sequence(ctx))
    wait = _Waiting(time.monotonic(), timeout, show=_shows_progress(ctx))
    sender = PostHogClient()
    try:
        sent = sender.send_batch(
            settings.host, key.value, [event], timeout=wait.deadline_for(REQUEST_DEADLINE)
        )
    finally:
        sender.close()
    accepted_after = wait.elapsed()
    if sent.verdict is not Verdict.ACCEPTED:
        answer(f"Not accepted: {sent.reason} from {settings.host}.", ok=False)
        return EXIT_NOT_ACCEPTED
    wait.accepted = f"accepted in {accepted_after:.2f} s"
    wait.progress(f"{wait.accepted}; asking PostHog until it is stored…")
    client = QueryClient()
    try:
        return _wait_until_stored(ctx, client, host, personal, key.value, beat_id, wait)
    finally:
        wait.done()  # the progress line never outlives the command
        client.close()


def _shows_progress(ctx: Context) -> bool:
    return not ctx.args.quiet and sys.stderr is not None and sys.stderr.isatty()


class _Waiting:
    """The whole command's deadline, and progress on a terminal (stderr, one updated line)."""

    def __init__(self, started: float, timeout: float, *, show: bool) -> None:
        self.started = started
        self.timeout = timeout
        self.show = show
        self.accepted = ""  # "accepted in 0.21 s", once the beat is
        self._drawn = False

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def remaining(self) -> float:
        return self.timeout - self.elapsed()

    def deadline_for(self, most: float) -> float:
        """A request's own deadline: at most ``most``, never past the command's."""
        return max(0.1, min(most, self.remaining()))

    def progress(self, line: str) -> None:
        if self.show:
            print(f"\r\033[K{line}", end="", file=sys.stderr, flush=True)
            self._drawn = True

    def done(self) -> None:
        if self._drawn:
            print("\r\033[K", end="", file=sys.stderr, flush=True)
            self._drawn = False


def _wait_until_stored(
    ctx: Context,
    client: QueryClient,
    host: str,
    personal: str,
    project_key: str,
    beat_id: str,
    wait: _Waiting,
) -> int:
    settings = ctx.settings
    accepted = wait.accepted
    found = resolve_project(
        client, settings, personal, project_key, deadline=wait.started + wait.timeout
    )
    if found.verdict is not QueryVerdict.OK or found.project_id is None:
        raise UserError(
            found.message,
            EXIT_CONFIG
            if found.verdict in (QueryVerdict.REJECTED, QueryVerdict.NOT_FOUND)
            else EXIT_NOT_ACCEPTED,
        )
    project_id = found.project_id
    delay = FIRST_DELAY
    asked = 0
    while True:
        result = client.stored_beats(
            host,
            project_id,
            personal,
            event=settings.event,
            distinct_id=ctx.distinct_id(),
            window_seconds=MIN_WINDOW_SECONDS,
            timeout=wait.deadline_for(15.0),
        )
        asked += 1
        if result.verdict is QueryVerdict.REJECTED:
            raise UserError(result.message)
        mine = [beat for beat in result.beats if beat.uuid == beat_id]
        if mine:
            lag = (mine[0].created_at - mine[0].timestamp).total_seconds()
            wait.done()
            answer(
                f"{accepted}; queryable after {wait.elapsed():.1f} s; ingestion lag {lag:.1f} s",
                ok=True,
            )
            return EXIT_OK
        remaining = wait.remaining()
        if remaining <= 0:
            wait.done()
            answer(
                f"{accepted}; not queryable within {wait.timeout:g} s"
                + ("" if result.verdict is QueryVerdict.OK else f" ({result.message})"),
                ok=False,
            )
            return EXIT_NOT_ACCEPTED
        pause = delay
        if result.verdict is QueryVerdict.RATE_LIMITED and result.retry_after is not None:
            pause = max(pause, result.retry_after)
        wait.progress(
            f"{accepted}; not stored yet — asked {asked} time(s), "
            f"{wait.elapsed():.0f} s of {wait.timeout:g} s"
        )
        time.sleep(min(pause, remaining))  # the last question comes at the deadline
        delay = min(MAX_DELAY, delay * 1.5)
