"""``nats-heartbeat run``: run a command as a job, reporting start and success or fail."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import os
import signal
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO
from zoneinfo import ZoneInfo

import click

from cli.common import (
    DURATION,
    POSITIVE_DURATION,
    connect_options,
    debug_option,
    fail,
    nats_options,
    option,
    run_to_end,
    setup_logging,
)
from heartbeat.connection import ConnectOptions
from heartbeat.errors import HeartbeatError
from heartbeat.jobs import JobLink, OutputTail, finished, job_message, new_run_id, started
from heartbeat.schema import Message

log = logging.getLogger("nats-heartbeat.run")

START_BUDGET_S = 2.0  # the start beat is sent while the command already runs
END_BUDGET_S = 4.5  # how long the end beat may delay our exit
DRAIN_S = 0.5  # output still read after the command exits (a leftover child may hold the pipe)
FORWARDED = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
)


def local_zone() -> str:
    """This machine's IANA zone name (``TZ``, else the /etc/localtime link), or "" (UTC)
    when there is none that zoneinfo knows."""
    name = os.environ.get("TZ", "").removeprefix(":")
    if not name:
        with contextlib.suppress(OSError):
            name = str(Path("/etc/localtime").resolve()).partition("/zoneinfo/")[2]
    try:
        ZoneInfo(name)
    except (KeyError, ValueError, OSError):
        return ""
    return name


@click.command(context_settings={"allow_interspersed_args": False})
@nats_options
@option("--subject", envvar="SUBJECT", required=True, help="Full heartbeat subject of the job.")
@option(
    "--interval",
    envvar="INTERVAL",
    type=POSITIVE_DURATION,
    default=None,
    help="How often the job runs (Go duration: 1h, 24h). Or --schedule.",
)
@option(
    "--schedule",
    envvar="JOB_SCHEDULE",
    default="",
    help="When the job runs, as cron: 5 fields (minute first), or 6 with seconds first.",
)
@option(
    "--timezone",
    envvar="JOB_TIMEZONE",
    default="",
    help="IANA time zone of --schedule (Europe/Berlin)  [default: this machine's zone]",
)
@option(
    "--grace",
    envvar="GRACE",
    type=DURATION,
    default="0s",
    show_default=True,
    help="How late past its due time a run may end (not the whole window, as agent's is).",
)
@option(
    "--max-runtime",
    envvar="JOB_MAX_RUNTIME",
    type=POSITIVE_DURATION,
    default=None,
    help="How long one run may take (told to the monitor; the command is not stopped).",
)
@option("--description", envvar="DESCRIPTION", default="", help="Human-friendly label for alerts.")
@option(
    "--host",
    envvar="HEARTBEAT_HOST",
    default="",
    help="Host name sent in the beats  [default: this machine's hostname]",
)
@option(
    "--flush-timeout",
    envvar="FLUSH_TIMEOUT",
    type=POSITIVE_DURATION,
    default="2s",
    show_default=True,
    help="How long to wait for NATS to confirm each beat.",
)
@debug_option
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
def run(
    nats_url: str,
    subject: str,
    interval: timedelta | None,
    schedule: str,
    timezone: str,
    grace: timedelta,
    max_runtime: timedelta | None,
    description: str,
    host: str,
    flush_timeout: timedelta,
    debug: bool,
    command: tuple[str, ...],
) -> None:
    """Run COMMAND as a job: send start, run it, then send success or fail.

    The fail beat carries the exit code, the run time and the last 4 KiB of output;
    the output is also passed through as it comes. Signals (INT, TERM, HUP, QUIT,
    USR1, USR2) are passed to the command's process group (it gets one of its own,
    so it cannot read from a terminal), and its exit status is ours (128+N when a
    signal N killed it). If NATS cannot be reached the command runs all the same:
    one line is logged, the start waits for no one and the exit for at most 5 s.

    A crontab line (the schedule is told to the monitor, which alerts when a run is
    missed, fails or runs long):

    \b
        0 3 * * *  nats-heartbeat run --subject heartbeat.backup --schedule '0 3 * * *' \\
                     --grace 30m --max-runtime 1h -- /usr/local/bin/backup.sh

    The beats carry interval (the longest gap between scheduled runs, with
    --schedule) and grace_period = interval + grace, so a Go monitor, which knows
    no cron, waits a period plus the grace.
    """
    if (interval is None) == (not schedule):
        raise click.UsageError("give one of --interval and --schedule")
    if timezone and not schedule:
        raise click.UsageError("--timezone needs --schedule")
    try:
        template = job_message(
            subject,
            interval=interval,
            schedule=schedule,
            timezone=timezone or (local_zone() if schedule else ""),
            grace=grace,
            max_runtime=max_runtime,
            description=description,
            host=host,
        )
    except HeartbeatError as e:
        fail(str(e), 2)
    options = connect_options(nats_url, f"run {subject}")
    options = dataclasses.replace(options, connect_timeout_s=min(options.connect_timeout_s, 1.5))
    setup_logging(debug)
    raise SystemExit(run_to_end(run_job(command, template, options, flush_timeout), FORWARDED))


class _Forwarder:
    """Passes the signals we receive to the command's process group (held until it exists)."""

    def __init__(self) -> None:
        self._pgid: int | None = None
        self._held: list[int] = []

    def install(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in FORWARDED:
            loop.add_signal_handler(sig, self._received, sig)

    def attach(self, pgid: int) -> None:
        self._pgid = pgid
        for sig in self._held:
            self._received(sig)

    def _received(self, sig: int) -> None:
        log.debug("passing signal %d to the command", sig)
        if self._pgid is None:
            self._held.append(sig)
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self._pgid, sig)


async def _pump(reader: asyncio.StreamReader | None, out: BinaryIO, tail: OutputTail) -> None:
    """Copy the command's output to ours as it comes, keeping its tail."""
    if reader is None:
        return
    while chunk := await reader.read(65536):
        tail.feed(chunk)
        with contextlib.suppress(OSError, ValueError):  # our own stream gone: keep reading
            out.write(chunk)
            out.flush()


async def _execute(command: tuple[str, ...], forwarder: _Forwarder, tail: OutputTail) -> int:
    """Run ``command`` in a process group of its own; its exit status as a shell gives it."""
    try:
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            process_group=0,
        )
    except OSError as e:
        line = f"nats-heartbeat: cannot run {command[0]!r}: {e.strerror or e}\n".encode()
        tail.feed(line)
        sys.stderr.buffer.write(line)
        sys.stderr.flush()
        return 127 if isinstance(e, FileNotFoundError) else 126
    forwarder.attach(proc.pid)
    pumps = [
        asyncio.create_task(_pump(proc.stdout, sys.stdout.buffer, tail)),
        asyncio.create_task(_pump(proc.stderr, sys.stderr.buffer, tail)),
    ]
    status = await proc.wait()
    _, pending = await asyncio.wait(pumps, timeout=DRAIN_S)
    for task in pending:  # a process the command left behind still holds the pipe
        task.cancel()
    return status if status >= 0 else 128 - status


async def run_job(
    command: tuple[str, ...], template: Message, options: ConnectOptions, ack_wait: timedelta
) -> int:
    """Run ``command`` between a start and a success/fail beat; return its exit status."""
    forwarder = _Forwarder()
    forwarder.install()
    link = JobLink(options, timeout_s=ack_wait.total_seconds())
    run_id = new_run_id()
    began = time.monotonic()
    start = asyncio.create_task(link.send(started(template, run_id), START_BUDGET_S))
    start.add_done_callback(lambda task: _log_start(template.subject, task))
    tail = OutputTail()
    status = await _execute(command, forwarder, tail)
    duration = timedelta(seconds=time.monotonic() - began)
    deadline = time.monotonic() + END_BUDGET_S
    end = finished(template, run_id, status, duration, tail.text())
    start_error = await start
    end_error = await link.send(end, deadline - time.monotonic() - 0.5)
    if end_error is not None and start_error is None:  # one line per outage
        log.warning("heartbeat %s: %s not sent: %s", template.subject, end.kind, end_error)
    await link.close(max(deadline - time.monotonic(), 0.1))
    return status


def _log_start(subject: str, task: asyncio.Task[str | None]) -> None:
    error = None if task.cancelled() else task.result()
    if error is not None:
        log.warning("heartbeat %s: start not sent: %s; the command runs regardless", subject, error)
