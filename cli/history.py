"""``nats-heartbeat history``: what happened to subjects, and who was told.

Reads the events stream straight from NATS (no monitor needed): transitions
(alert, repeat, resolved, job alerts, retired) and per-channel delivery outcomes.
Exit status 0 (also when nothing happened), 1 when the stream cannot be read.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import timedelta

import click

from cli.common import (
    POSITIVE_DURATION,
    check_name,
    connect_options,
    debug_option,
    fail,
    nats_options,
    option,
    setup_logging,
)
from cli.status import format_rfc3339
from heartbeat.connection import connect
from heartbeat.durations import format_duration
from heartbeat.errors import HeartbeatError
from heartbeat.history import (
    DEFAULT_PREFIX,
    DEFAULT_STREAM,
    Event,
    HistoryConfig,
    HistoryQuery,
    Kind,
    encode_event,
)
from heartbeat.history_read import read_history
from heartbeat.routing import valid_pattern
from heartbeat.schema import parse_time
from heartbeat.text import neutral

HEADER = ("TIME", "SUBJECT", "EVENT", "CHANNEL", "DETAIL")
_PADDING = 2
_SUBJECT_SHOWN = 120


def event_row(e: Event) -> tuple[str, str, str, str, str]:
    """TIME, SUBJECT, EVENT, CHANNEL, DETAIL of one event (text made safe to print)."""
    try:
        when = format_rfc3339(parse_time(e.time))
    except (HeartbeatError, ValueError):
        when = neutral(e.time, 40)
    if e.kind == Kind.DELIVERY:
        event = e.result or "?"
        detail = ", ".join(x for x in (e.notification_kind, e.detail) if x)
    else:
        event, detail = e.kind, e.detail or ""
    return (
        when,
        neutral(e.subject, _SUBJECT_SHOWN),
        neutral(event, 40),
        neutral(e.channel or "-", 80),
        neutral(detail),
    )


def render_history(events: Sequence[Event], *, since: str = "") -> str:
    """The table, oldest first, columns aligned like the status table; a line saying
    so when there is nothing."""
    if not events:
        return f"No events{f' in the last {since}' if since else ''}.\n"
    rows = [HEADER, *(event_row(e) for e in events)]
    widths = [max(len(row[c]) for row in rows) + _PADDING for c in range(len(HEADER) - 1)]
    lines = [
        "".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)) + r[-1] for r in rows
    ]
    return "\n".join(lines) + "\n"


def _check_pattern(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    value = value or ">"
    if (why := valid_pattern(value)) is not None:
        raise click.BadParameter(f"{value[:80]!r} {why}", ctx, param)
    return value


@click.command()
@click.argument("pattern", metavar="[SUBJECT-PATTERN]", required=False, callback=_check_pattern)
@nats_options
@option(
    "--since",
    envvar="HISTORY_SINCE",
    type=POSITIVE_DURATION,
    default="24h",
    show_default=True,
    help="Show events of this long ago until now (Go duration: 2h, 30m, 168h).",
)
@option(
    "--limit",
    envvar="HISTORY_LIMIT",
    type=click.IntRange(1, 1_000_000),
    default=100,
    show_default=True,
    help="Show at most this many events: the newest ones (still oldest first).",
)
@option(
    "--json",
    "as_json",
    is_flag=True,
    default=False,
    help="Print each event as one line of JSON (as stored) instead of the table.",
)
@option(
    "--history-stream",
    envvar="HISTORY_STREAM",
    default=DEFAULT_STREAM,
    show_default=True,
    callback=check_name,
    help="The monitor's events stream.",
)
@option(
    "--history-prefix",
    envvar="HISTORY_PREFIX",
    default=DEFAULT_PREFIX,
    show_default=True,
    help="The monitor's history subject prefix.",
)
@option(
    "--timeout",
    envvar="HISTORY_TIMEOUT",
    type=POSITIVE_DURATION,
    default="10s",
    show_default=True,
    help="Deadline for connecting and for reading the events.",
)
@debug_option
def history(
    pattern: str,
    nats_url: str,
    since: timedelta,
    limit: int,
    as_json: bool,
    history_stream: str,
    history_prefix: str,
    timeout: timedelta,
    debug: bool,
) -> int:
    """Show what happened to subjects matching SUBJECT-PATTERN (default: all).

    Transitions (alert, repeat, resolved, failed, running_long, ran_long,
    job_resolved, retired) and each channel's delivery outcome (sent; failed, to be
    retried; dropped), oldest first, read straight from the monitor's events stream
    (no monitor needs to be up). The pattern is a NATS subject or wildcard pattern:
    heartbeat.db.main, heartbeat.db.>, heartbeat.*.api.
    """
    setup_logging(debug)
    cfg = HistoryConfig(stream=history_stream, prefix=history_prefix)
    query = HistoryQuery(pattern=pattern, since_s=since.total_seconds(), limit=limit)
    events = asyncio.run(_read(nats_url, cfg, query, timeout.total_seconds()))
    if as_json:
        for e in events:
            click.echo(encode_event(e).decode())
    else:
        click.echo(render_history(events, since=format_duration(since)), nl=False)
    return 0


async def _read(
    nats_url: str, cfg: HistoryConfig, query: HistoryQuery, timeout_s: float
) -> list[Event]:
    try:
        nc = await asyncio.wait_for(
            connect(connect_options(nats_url, "history"), reconnect_forever=False), timeout_s
        )
    except TimeoutError:
        fail(f"cannot connect to NATS within {timeout_s:g}s", 1)
    except HeartbeatError as e:
        fail(str(e), 1)
    try:
        return await read_history(nc.jetstream(), cfg, query, time.time(), timeout_s=timeout_s)
    except HeartbeatError as e:
        fail(str(e), 1)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()
