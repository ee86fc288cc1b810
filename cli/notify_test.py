"""``nats-heartbeat notify-test`` and ``nats-heartbeat routes``: check a config by hand."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import click

from cli.channels import channel_options, config_fail, load_channels
from cli.common import DURATION, POSITIVE_DURATION, debug_option, option, setup_logging
from heartbeat.config import Config, ConfigError, build_notifiers
from heartbeat.depends import parents_of
from heartbeat.durations import format_duration
from heartbeat.maintenance import Window, next_start, phase
from heartbeat.maintenance import describe as describe_window
from heartbeat.notification import channel_test_notice
from heartbeat.notify import DeliveryResult, make_session, send_with_retry
from heartbeat.routing import Router, valid_pattern
from heartbeat.text import neutral


def table(rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, two spaces apart (the last column unpadded)."""
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join([*(c.ljust(w) for c, w in zip(r, widths, strict=False)), r[-1]]).rstrip()
        for r in rows
    )


@click.command("notify-test")
@channel_options
@option(
    "--channel",
    "only",
    multiple=True,
    help="Test only this channel (its name in the config, or pushover, log, webhook:<hash>); "
    "repeatable.  [default: every channel]",
)
@option(
    "--timeout",
    type=POSITIVE_DURATION,
    default="10s",
    show_default=True,
    help="Give each channel this long, retries included.",
)
@debug_option
def notify_test(only: tuple[str, ...], timeout: timedelta, debug: bool) -> None:
    """Send one test notification through each channel and print the results.

    Uses the monitor's retry policy within --timeout and needs no NATS. Human
    channels show "Test notification from nats-heartbeat"; PagerDuty and
    Opsgenie get a resolve/close of an alert that never existed, which checks the
    endpoint and the key without paging anyone. Exits 1 if any channel failed,
    2 on a bad config.
    """
    config = load_channels()
    if not config.channels:
        raise click.UsageError("no channel configured: set --config or a channel flag")
    names = list(dict.fromkeys(only)) or list(config.names)
    for name in names:
        if config.channel(name) is None:
            raise click.UsageError(
                f"--channel {name!r}: no such channel (have: {', '.join(config.names)})"
            )
    setup_logging(debug)
    raise SystemExit(asyncio.run(_notify_test(config, names, timeout.total_seconds())))


async def _notify_test(config: Config, names: list[str], deadline_s: float) -> int:
    sender = f"notify-test on {socket.gethostname()}"
    specs = [s for s in config.channels if s.name in names]
    async with make_session(timeout_s=deadline_s) as session:
        try:
            notifiers = build_notifiers(specs, session)
        except ConfigError as e:
            config_fail(e)
        now = time.time()
        results: list[DeliveryResult] = await asyncio.gather(
            *(
                send_with_retry(
                    n,
                    channel_test_notice(n.name, sender, now),
                    deadline_s=deadline_s,
                    max_backoff_s=min(5.0, deadline_s / 4),
                )
                for n in notifiers
            )
        )
    rows = [("CHANNEL", "TYPE", "RESULT", "DETAIL")]
    for spec, r in zip(specs, results, strict=True):
        if r.delivered:
            rows.append((spec.name, spec.type, "ok", f"delivered ({_attempts(r)})"))
        else:
            kind = "failed" if r.permanent else "failed (gave up retrying)"
            detail = neutral(r.error.removeprefix(f"{spec.name}: "), 300) or kind
            rows.append((spec.name, spec.type, "FAILED", f"{detail} ({_attempts(r)})"))
    click.echo(table(rows))
    return 0 if all(r.delivered for r in results) else 1


def _attempts(r: DeliveryResult) -> str:
    return f"{r.attempts} attempt" + ("s" if r.attempts != 1 else "")


@click.command("routes")
@channel_options
@option("--subject", required=True, help="The heartbeat subject to look up.")
@option(
    "--repeat-every",
    envvar="REPEAT_EVERY",
    type=DURATION,
    default="12h",
    show_default=True,
    help="The monitor's default repeat interval (as given to monitor).",
)
def routes(subject: str, repeat_every: timedelta) -> None:
    """Print which channels a subject's notifications go to, and how often alerts repeat.

    Uses the same --config and channel flags as the monitor; names the parents a
    subject depends on ([[depends]]). Exits 0 (also for an unrouted subject), 2 on a
    bad config.
    """
    if valid_pattern(subject) is not None or "*" in subject.split(".") or subject.endswith(">"):
        raise click.UsageError(f"--subject {subject!r} must be a subject without wildcards")
    config = load_channels()
    routed = Router(list(config.names), config.routes).route(subject)
    if routed.unrouted:
        click.echo(
            f"{subject}: UNROUTED: no route matches it, so no channel hears of it "
            "(the monitor counts it and shows it as unrouted in status)"
        )
        return
    default = repeat_every.total_seconds()
    repeat = routed.repeat_every_s
    if repeat is not None:
        every = f"{format_duration(repeat)} (from its route)"
    elif default > 0:
        every = f"{format_duration(default)} (the monitor's --repeat-every)"
    else:
        every = "never (--repeat-every 0)"
    why = "" if config.routes else " (no [[routes]]: every subject goes to every channel)"
    rows = [("CHANNEL", "TYPE")]
    for name in routed.channels:
        spec = config.channel(name)
        rows.append((name, spec.type if spec else "?"))
    click.echo(f"{subject}: {len(routed.channels)} channel(s){why}; repeats every {every}")
    click.echo(table(rows))
    now = time.time()
    for w in config.maintenance:
        if w.covers(subject):
            click.echo(f"quiet in maintenance window {describe_window(w)}{_window_now(w, now)}")
    parents = parents_of(config.depends, subject)
    if parents:
        click.echo(f"depends on {', '.join(parents)}: quiet while one of them is missing")


def _window_now(w: Window, now: float) -> str:
    """``: on now, until 04:00 CET`` or ``: next from 2026-12-06 02:00 CET``."""
    zone = ZoneInfo(w.timezone)
    q = phase(w, now).hush.quiet
    if q is not None and q.until is not None:
        return f": on now, until {datetime.fromtimestamp(q.until, zone):%Y-%m-%d %H:%M:%S %Z}"
    start = next_start(w, now)
    if start is None:
        return ""
    return f": next from {datetime.fromtimestamp(start, zone):%Y-%m-%d %H:%M:%S %Z}"
