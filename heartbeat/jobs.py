"""Jobs: a ``start`` beat when a run begins, ``success`` or ``fail`` when it ends.

The pieces shared by ``nats-heartbeat run`` and :func:`job`: the message template of a
job, the period of a cron schedule, a bounded output tail, and a best-effort sender that
never lets NATS delay or break the job by more than a few seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import inspect
import itertools
import logging
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, ParamSpec, TypeVar, cast
from zoneinfo import ZoneInfo

from cronsim import CronSim
from msgspec.structs import replace
from nats.aio.client import Client as NATS

from heartbeat.connection import DEFAULT_URL, ConnectOptions, close_connection, connect
from heartbeat.errors import HeartbeatError, InvalidHeartbeat
from heartbeat.publisher import Publisher, prepare
from heartbeat.schema import OUTPUT_MAX, Message, validate

log = logging.getLogger(__name__)

P = ParamSpec("P")
R = TypeVar("R")

SCHEDULE_SAMPLE = 32  # scheduled runs looked at to find a schedule's longest gap


def new_run_id() -> str:
    """A fresh id for one run: 32 hex digits."""
    return uuid.uuid4().hex


def schedule_period(schedule: str, timezone: str = "", now: datetime | None = None) -> timedelta:
    """The longest gap between the next scheduled runs of ``schedule`` in ``timezone``
    (UTC when empty): the ``interval`` a job on a schedule sends, so that a monitor that
    knows no cron (the Go one) waits about one period.  ``schedule`` must be valid."""
    zone = ZoneInfo(timezone) if timezone else UTC
    start = (now or datetime.now(UTC)).astimezone(zone)
    runs = [t.astimezone(UTC) for t in itertools.islice(CronSim(schedule, start), SCHEDULE_SAMPLE)]
    if len(runs) < 2:
        raise InvalidHeartbeat(f"schedule {schedule!r} has no runs ahead", "bad_schedule")
    return max(b - a for a, b in itertools.pairwise(runs))


def job_message(
    subject: str,
    *,
    interval: timedelta | None = None,
    schedule: str = "",
    timezone: str = "",
    grace: timedelta | None = None,
    max_runtime: timedelta | None = None,
    description: str = "",
    host: str = "",
    prefix: str = "",
    now: datetime | None = None,
) -> Message:
    """The plain beat every signal of a job is made from, as :func:`prepare` completes it
    (``prefix`` applied, host filled in).

    ``interval`` defaults to the schedule's longest gap.  ``grace`` is how late past its
    due time a run may end; the beat carries ``grace_period = interval + grace`` (the
    silence a Go monitor allows), so its ``window - interval`` is the grace.
    Raises :class:`InvalidHeartbeat` (or :class:`InvalidSubject`) for bad input.
    """
    probe = Message(
        subject=subject,
        interval=interval or timedelta(seconds=1),
        generated_at=now or datetime.now(UTC),
        schedule=schedule,
        timezone=timezone,
        max_runtime=max_runtime,
        description=description,
        host=host,
    )
    validate(probe)  # the schedule and zone are sound before they are used
    if interval is None:
        if not schedule:
            raise InvalidHeartbeat("a job needs an interval or a schedule", "bad_interval")
        interval = schedule_period(schedule, timezone, now)
    if grace is not None and grace < timedelta(0):
        raise InvalidHeartbeat("grace cannot be negative", "bad_grace")
    window = interval + grace if grace else None
    return prepare(replace(probe, interval=interval, grace_period=window), prefix)


def started(template: Message, run_id: str, now: datetime | None = None) -> Message:
    """The ``start`` beat of run ``run_id``."""
    return replace(template, kind="start", run_id=run_id, generated_at=now or datetime.now(UTC))


def finished(
    template: Message, run_id: str, exit_code: int, duration: timedelta, output: str = ""
) -> Message:
    """``success`` (exit code 0) or ``fail`` for run ``run_id``; ``output`` is cut to its tail."""
    return replace(
        template,
        kind="success" if exit_code == 0 else "fail",
        run_id=run_id,
        exit_code=exit_code,
        duration=max(duration, timedelta(0)),
        output=tail_text(output),
        generated_at=datetime.now(UTC),
    )


def tail_text(text: str | bytes, limit: int = OUTPUT_MAX) -> str:
    """The end of ``text`` in at most ``limit`` bytes of UTF-8 (bytes decoded leniently)."""
    if isinstance(text, bytes):
        text = text[-limit * 2 :].decode("utf-8", errors="replace")
    data = text.encode(errors="replace")  # a lone surrogate becomes "?"
    if len(data) <= limit:
        return data.decode()
    data = data[-limit:]
    skip = 0
    while skip < len(data) and 0x80 <= data[skip] < 0xC0:  # a character cut in two
        skip += 1
    return data[skip:].decode()


class OutputTail:
    """Keeps the last ``limit`` bytes of a stream of output chunks."""

    def __init__(self, limit: int = OUTPUT_MAX) -> None:
        self._limit = limit
        self._buf = bytearray()

    def feed(self, chunk: bytes) -> None:
        self._buf += chunk
        if len(self._buf) > 4 * self._limit:
            del self._buf[: -2 * self._limit]

    def text(self) -> str:
        return tail_text(bytes(self._buf), self._limit)


class JobLink:
    """Sends a job's beats on the caller's client or on a connection of its own.

    Best effort: :meth:`send` returns the error as text instead of raising, and gives up
    after ``budget_s`` (connecting included).  An own connection is made on first use
    and retried on each send until one works.
    """

    def __init__(self, conn: NATS | ConnectOptions, *, timeout_s: float = 2.0) -> None:
        self._given = conn if isinstance(conn, NATS) else None
        self._options = conn if isinstance(conn, ConnectOptions) else None
        self._nc = self._given
        self._timeout_s = timeout_s

    async def send(self, msg: Message, budget_s: float) -> str | None:
        """Publish ``msg`` (complete, as :func:`job_message` makes it) and wait for the
        stream's ack; None, or why it was not sent."""
        try:
            await asyncio.wait_for(self._send(msg), max(budget_s, 0.01))
        except HeartbeatError as e:
            return str(e)
        except TimeoutError:
            return f"NATS did not answer within {budget_s:g}s"
        return None

    async def _send(self, msg: Message) -> None:
        if self._nc is None:
            assert self._options is not None
            self._nc = await connect(self._options)
        await Publisher(self._nc, ack=True, timeout_s=self._timeout_s).send(msg)

    async def close(self, budget_s: float = 1.0) -> None:
        """Close an own connection (the caller's stays open)."""
        nc, self._nc = self._nc, self._given
        if nc is not None and nc is not self._given:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(close_connection(nc), budget_s)


@dataclasses.dataclass
class Run:
    """One run of a :func:`job`: the beats sent (or tried) and what went wrong."""

    run_id: str
    start: Message
    end: Message | None = None
    errors: list[str] = dataclasses.field(default_factory=list)
    began: float = dataclasses.field(default_factory=time.monotonic)


def outcome(error: BaseException | None) -> tuple[int, str]:
    """The exit code and output a block that ended with ``error`` reports."""
    if error is None:
        return 0, ""
    if isinstance(error, SystemExit):
        if error.code is None or error.code == 0:
            return 0, ""
        code = error.code if isinstance(error.code, int) else 1
        return code, f"SystemExit: {error.code}"
    code = 130 if isinstance(error, KeyboardInterrupt) else 1
    lines = str(error).strip().splitlines()
    summary = f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__
    return code, summary


class Job:
    """What :func:`job` returns: a context manager (``with``/``async with``) and a
    decorator.  One object runs one block at a time; the decorator makes a fresh run
    per call, so a decorated function may run concurrently."""

    def __init__(self, conn: NATS | ConnectOptions, template: Message, timeout_s: float) -> None:
        self._conn = conn
        self._template = template
        self._timeout_s = timeout_s
        self._run: Run | None = None
        self._link: JobLink | None = None

    def _copy(self) -> Job:
        return Job(self._conn, self._template, self._timeout_s)

    @property
    def _budget_s(self) -> float:
        return 2 * self._timeout_s  # connecting, then the ack

    def _begin(self) -> Run:
        if self._run is not None:
            raise RuntimeError("this job is already running; use a new job() or the decorator")
        self._run = run = Run(run_id=new_run_id(), start=self._template)
        run.start = started(self._template, run.run_id)
        return run

    def _finish(self, error: BaseException | None) -> Run:
        run, self._run = self._run, None
        assert run is not None
        code, output = outcome(error)
        elapsed = timedelta(seconds=time.monotonic() - run.began)
        run.end = finished(self._template, run.run_id, code, elapsed, output)
        return run

    def _note(self, run: Run, msg: Message, error: str | None) -> None:
        if error is not None:
            run.errors.append(error)
            log.warning("job %s: %s not sent: %s", msg.subject, msg.kind, error)

    # ----- async with -----

    async def __aenter__(self) -> Run:
        run = self._begin()
        self._link = JobLink(self._conn, timeout_s=self._timeout_s)
        self._note(run, run.start, await self._link.send(run.start, self._budget_s))
        return run

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        run, link = self._finish(e), self._link
        assert run.end is not None and link is not None
        try:
            self._note(run, run.end, await link.send(run.end, self._budget_s))
        finally:
            await link.close()

    # ----- with -----

    def __enter__(self) -> Run:
        if isinstance(self._conn, NATS):
            raise TypeError("a nats client needs `async with`; give server URLs for `with`")
        run = self._begin()
        self._note(run, run.start, self._send_blocking(run.start))
        return run

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        run = self._finish(e)
        assert run.end is not None
        self._note(run, run.end, self._send_blocking(run.end))

    def _send_blocking(self, msg: Message) -> str | None:
        """Connect, send and close in an event loop of its own (in a thread: the caller
        may be inside a running loop), waiting at most the send budget plus a second."""
        result: list[str | None] = []

        async def once() -> None:
            link = JobLink(self._conn, timeout_s=self._timeout_s)
            try:
                result.append(await link.send(msg, self._budget_s))
            finally:
                await link.close()

        thread = threading.Thread(target=asyncio.run, args=(once(),), daemon=True)
        thread.start()
        thread.join(self._budget_s + 1.0)
        return result[0] if result else f"gave up after {self._budget_s + 1.0:g}s"

    # ----- @job(...) -----

    def __call__(self, func: Callable[P, R]) -> Callable[P, R]:
        if inspect.iscoroutinefunction(func):
            coro = cast(Callable[P, Awaitable[Any]], func)

            @functools.wraps(func)
            async def run_async(*args: P.args, **kwargs: P.kwargs) -> Any:
                async with self._copy():
                    return await coro(*args, **kwargs)

            return cast(Callable[P, R], run_async)

        @functools.wraps(func)
        def run_sync(*args: P.args, **kwargs: P.kwargs) -> R:
            with self._copy():
                return func(*args, **kwargs)

        return run_sync


def job(
    conn: NATS | str | list[str] | ConnectOptions = DEFAULT_URL,
    *,
    subject: str,
    interval: timedelta | None = None,
    schedule: str = "",
    timezone: str = "",
    grace: timedelta | None = None,
    max_runtime: timedelta | None = None,
    description: str = "",
    host: str = "",
    prefix: str = "",
    timeout_s: float = 2.0,
) -> Job:
    """Report a block of code as a job run: ``start`` on entry, ``success`` on a normal
    exit, ``fail`` on an exception (re-raised; exit code 1, the exception's one-line
    summary as output)::

        with heartbeat.job("nats://nats:4222", subject="heartbeat.backup", schedule="0 3 * * *",
                           timezone="Europe/Berlin", grace=timedelta(hours=1)):
            run_backup()

        async with heartbeat.job(nc, subject="heartbeat.export", interval=timedelta(hours=1)):
            await export()

        @heartbeat.job(nc, subject="heartbeat.sync", interval=timedelta(minutes=5))
        async def sync() -> None: ...

    ``conn`` is a connected nats client (``async with`` and async functions only), or
    server URLs / :class:`ConnectOptions` (a connection is made per run).  ``interval``
    or ``schedule`` (cron, in ``timezone``) says how often the job runs, ``grace`` how late
    a run may end, ``max_runtime`` how long one may take (see :func:`job_message`).  Bad
    input raises here; NATS trouble never reaches your code: each beat not sent within
    ``2 * timeout_s`` is logged (and listed in ``Run.errors``) and the block goes on.
    """
    if not isinstance(conn, NATS | ConnectOptions):
        conn = ConnectOptions(servers=ConnectOptions.split_servers(conn))
    template = job_message(
        subject,
        interval=interval,
        schedule=schedule,
        timezone=timezone,
        grace=grace,
        max_runtime=max_runtime,
        description=description,
        host=host,
        prefix=prefix,
    )  # bad input fails here, not at the first beat
    return Job(conn, template, timeout_s)


__all__ = ["Job", "JobLink", "OutputTail", "Run", "job", "job_message", "schedule_period"]
