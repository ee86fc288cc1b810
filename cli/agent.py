"""``nats-heartbeat agent`` and ``nats-heartbeat beat``."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import click

from cli.common import (
    DURATION,
    POSITIVE_DURATION,
    connect_options,
    debug_option,
    fail,
    install_stop_signals,
    nats_options,
    option,
    run_to_end,
    setup_logging,
)
from heartbeat.connection import close_connection, connect_with_retry
from heartbeat.durations import format_duration
from heartbeat.errors import HeartbeatError
from heartbeat.publisher import Beater, Publisher, beat_once_async, prepare
from heartbeat.schema import Message

log = logging.getLogger("nats-heartbeat.agent")


def heartbeat_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """The flags shared by ``agent`` and ``beat`` (the Go agent's, plus ours)."""
    for decorator in reversed(
        [
            nats_options,
            option(
                "--subject",
                envvar="SUBJECT",
                required=True,
                help="Full heartbeat subject, e.g. heartbeat.service.api.",
            ),
            option(
                "--interval",
                envvar="INTERVAL",
                type=POSITIVE_DURATION,
                default="15s",
                show_default=True,
                help="Heartbeat period (Go duration: 15s, 1m30s).",
            ),
            option(
                "--grace",
                envvar="GRACE",
                type=DURATION,
                default="0s",
                show_default=True,
                help="Silence allowed before alerting; 0 falls back to the interval.",
            ),
            option(
                "--description",
                envvar="DESCRIPTION",
                default="",
                help="Human-friendly label for alerts (the monitor falls back to the subject).",
            ),
            option(
                "--host",
                envvar="HEARTBEAT_HOST",
                default="",
                help="Host name sent in the heartbeat  [default: this machine's hostname]",
            ),
            option(
                "--flush-timeout",
                envvar="FLUSH_TIMEOUT",
                type=POSITIVE_DURATION,
                default="2s",
                show_default=True,
                help="How long to wait for NATS to confirm each heartbeat.",
            ),
            debug_option,
        ]
    ):
        f = decorator(f)
    return f


def _message(
    subject: str, interval: timedelta, grace: timedelta, description: str, host: str
) -> Message:
    msg = Message(
        subject=subject,
        interval=interval,
        grace_period=grace if grace > timedelta(0) else None,
        description=description,
        host=host,
    )
    try:
        prepare(msg)
    except HeartbeatError as e:
        fail(str(e), 2)
    return msg


@click.command()
@heartbeat_options
@option(
    "--exit-on-flush-fail",
    envvar="EXIT_ON_FLUSH_FAIL",
    is_flag=True,
    default=False,
    help="Exit (status 1) when a heartbeat is not confirmed, instead of logging and going on.",
)
@option(
    "--ack/--no-ack",
    envvar="ACK",
    default=False,
    show_default=True,
    help="Wait for the JetStream stream's acknowledgement instead of a core publish + flush.",
)
def agent(
    nats_url: str,
    subject: str,
    interval: timedelta,
    grace: timedelta,
    description: str,
    host: str,
    flush_timeout: timedelta,
    debug: bool,
    exit_on_flush_fail: bool,
    ack: bool,
) -> None:
    """Publish a heartbeat on SUBJECT every interval until stopped.

    Retries the first connection with backoff, reconnects forever, keeps its
    cadence while NATS is away (logging one line per outage) and exits cleanly on
    SIGINT or SIGTERM.
    """
    msg = _message(subject, interval, grace, description, host)
    setup_logging(debug)
    code = run_to_end(
        _run_agent(nats_url, msg, flush_timeout.total_seconds(), exit_on_flush_fail, ack)
    )
    raise SystemExit(code)


async def _run_agent(
    nats_url: str, msg: Message, timeout_s: float, exit_on_fail: bool, ack: bool
) -> int:
    stop = asyncio.Event()
    install_stop_signals(stop)
    options = connect_options(nats_url, f"agent {msg.subject}")
    # Retry often enough that beats resume within about two intervals of NATS returning.
    reconnect_wait_s = min(options.reconnect_wait_s, msg.interval.total_seconds() / 4)
    options = dataclasses.replace(options, reconnect_wait_s=reconnect_wait_s)
    try:
        nc = await connect_with_retry(options, stop)
    except HeartbeatError as e:
        fail(str(e), 1)
    if nc is None:
        return 0
    beater = Beater(Publisher(nc, ack=ack, timeout_s=timeout_s), msg)
    log.info(
        "publishing %s every %s (window %s)",
        msg.subject,
        format_duration(msg.interval),
        format_duration(msg.window),
    )
    code = 0
    try:
        if not await beater.run(stop, until_failure=exit_on_fail):
            log.error("exiting: heartbeat not confirmed (%s)", beater.stats.last_error)
            code = 1
    finally:
        await close_connection(nc)
    log.info("stopped after %d heartbeat(s)", beater.stats.sent)
    return code


@click.command()
@heartbeat_options
def beat(
    nats_url: str,
    subject: str,
    interval: timedelta,
    grace: timedelta,
    description: str,
    host: str,
    flush_timeout: timedelta,
    debug: bool,
) -> None:
    """Send one heartbeat, wait for a stream to store it, and exit.

    Exit 0 when a JetStream stream acknowledged it, 1 with a one-line reason when
    not. For cron jobs:

        backup.sh && nats-heartbeat beat --subject heartbeat.backup --interval 24h --grace 26h
    """
    msg = _message(subject, interval, grace, description, host)
    setup_logging(debug)
    opts = connect_options(nats_url, f"beat {subject}")
    try:
        sent = asyncio.run(
            beat_once_async(msg, timeout_s=flush_timeout.total_seconds(), connect_options=opts)
        )
    except HeartbeatError as e:
        fail(str(e), 1)
    else:
        click.echo(f"heartbeat {sent.subject} stored")
