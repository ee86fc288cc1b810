"""Publishing heartbeats: one at a time, in the background, or from a cron job."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import nats.errors
import nats.js.errors
from msgspec.structs import replace
from nats.aio.client import Client as NATS

from heartbeat.aio import wait_event
from heartbeat.connection import DEFAULT_URL, ConnectOptions, connect
from heartbeat.errors import HeartbeatError, NoStreamError, PublishError
from heartbeat.schema import Message, encode, validate, validate_subject

log = logging.getLogger(__name__)


def local_hostname() -> str:
    """The host name put in heartbeats when none is given ("" if unknown)."""
    try:
        return socket.gethostname()
    except OSError:
        return ""


def prepare(msg: Message, prefix: str = "", now: datetime | None = None) -> Message:
    """Validate ``msg`` and fill what the sender leaves out: subject prefix, time, host.

    Raises :class:`InvalidSubject` or :class:`InvalidHeartbeat` for bad input.
    """
    prefix = prefix.rstrip(".")
    subject = validate_subject(f"{prefix}.{msg.subject}" if prefix else msg.subject)
    return validate(
        replace(
            msg,
            subject=subject,
            generated_at=msg.generated_at or now or datetime.now(UTC),
            host=msg.host or local_hostname(),
        )
    )


class Publisher:
    """Publishes :class:`Message` heartbeats on a NATS connection.

    ``prefix``, when given, is prepended with a dot to each message's subject
    (``Publisher(nc, "heartbeat")`` publishes ``api`` on ``heartbeat.api``), as the
    Go library does.  Unlike the Go library, the payload's ``subject`` is the full
    subject, because the monitor rejects a payload that names another subject.

    By default each publish goes through JetStream and waits for the stream's
    acknowledgement (``ack=True``); ``ack=False`` is a core publish plus a flush,
    the Go library's behaviour.
    """

    def __init__(
        self, nc: NATS, prefix: str = "", *, ack: bool = True, timeout_s: float = 2.0
    ) -> None:
        self._nc = nc
        self._js = nc.jetstream(timeout=timeout_s)
        self._prefix = prefix.rstrip(".")
        self._ack = ack
        self._timeout_s = timeout_s

    @property
    def connected(self) -> bool:
        return bool(self._nc.is_connected)

    def full_subject(self, subject: str) -> str:
        return f"{self._prefix}.{subject}" if self._prefix else subject

    def prepare(self, msg: Message, now: datetime | None = None) -> Message:
        """The message as it will be sent: full subject, time and host filled in."""
        return prepare(msg, self._prefix, now)

    async def publish(self, msg: Message, *, ack: bool | None = None) -> Message:
        """Validate, fill defaults and publish ``msg``; return what was sent.

        Raises :class:`InvalidHeartbeat`/:class:`InvalidSubject` for a bad message,
        :class:`NoStreamError` when (with ``ack``) no stream captures the subject,
        and :class:`PublishError` when the server did not confirm in time.
        """
        return await self.send(self.prepare(msg), ack=ack)

    async def send(self, sent: Message, *, ack: bool | None = None) -> Message:
        """Publish a message :meth:`prepare` made, as it is; raise as :meth:`publish`."""
        payload = encode(sent)
        use_ack = self._ack if ack is None else ack
        try:
            if use_ack:
                await self._js.publish(sent.subject, payload, timeout=self._timeout_s)
            else:
                await self._nc.publish(sent.subject, payload)
                await self._nc.flush(timeout=self._timeout_s)  # type: ignore[arg-type]
        except nats.js.errors.NoStreamResponseError as e:
            raise NoStreamError(f"no JetStream stream captures subject {sent.subject!r}") from e
        except (TimeoutError, nats.errors.TimeoutError) as e:
            what = "acknowledgement" if use_ack else "flush"
            raise PublishError(f"no {what} for {sent.subject!r} within {self._timeout_s:g}s") from e
        except nats.errors.Error as e:
            raise PublishError(f"publish to {sent.subject!r} failed: {e}") from e
        return sent


@dataclass
class BeatStats:
    """What a background beater has done so far."""

    sent: int = 0
    failed: int = 0
    last_error: str = ""
    outage: bool = False


class Beater:
    """Publishes one message every ``interval`` on a fixed monotonic cadence.

    A beat that fails is logged once per outage (a warning when the first fails,
    an info line when beats flow again), never once per beat.  While the
    connection is down no beat is buffered; the cadence continues and the next
    scheduled beat after reconnecting goes out.

    ``template`` is checked and completed (prefix, host) once, here: a bad one
    raises :class:`InvalidSubject`/:class:`InvalidHeartbeat` before any beat.
    """

    def __init__(self, publisher: Publisher, template: Message) -> None:
        self._publisher = publisher
        self._template = publisher.prepare(template)
        self.stats = BeatStats()

    @property
    def interval_s(self) -> float:
        return self._template.interval.total_seconds()

    async def beat(self) -> bool:
        """Send one beat now; return whether it was confirmed."""
        try:
            if not self._publisher.connected:
                raise PublishError("NATS is disconnected")
            now = datetime.now(UTC)
            sent = await self._publisher.send(replace(self._template, generated_at=now))
        except HeartbeatError as e:
            self.stats.failed += 1
            self.stats.last_error = str(e)
            if not self.stats.outage:
                log.warning("heartbeat %s not sent: %s", self._template.subject, e)
                self.stats.outage = True
            return False
        self.stats.sent += 1
        if self.stats.outage:
            log.info(
                "heartbeat %s flowing again after %d failed beat(s)",
                sent.subject,
                self.stats.failed,
            )
            self.stats.outage = False
        else:
            log.debug("heartbeat %s sent", sent.subject)
        return True

    async def run(self, stop: asyncio.Event | None = None, *, until_failure: bool = False) -> bool:
        """Beat until ``stop`` is set (or the task is cancelled); with ``until_failure``,
        also stop at the first beat not confirmed.  Return False if that happened."""
        stop = stop or asyncio.Event()
        interval = self.interval_s
        start = time.monotonic()
        tick = 0
        while not stop.is_set():
            if not await self.beat() and until_failure:
                return False
            tick += 1
            now = time.monotonic()
            # Keep the cadence: skip ticks that a slow beat overran.
            tick = max(tick, int((now - start) / interval) + 1)
            await wait_event(stop, start + tick * interval - now)
        return True


@contextlib.asynccontextmanager
async def beating(
    nc: NATS,
    subject: str,
    *,
    interval: timedelta,
    grace_period: timedelta | None = None,
    description: str = "",
    host: str = "",
    prefix: str = "",
    ack: bool = True,
    timeout_s: float = 2.0,
) -> AsyncIterator[Beater]:
    """Keep a long-running asyncio program beating in the background.

    ::

        async with heartbeat.beating(nc, "heartbeat.worker", interval=timedelta(seconds=15)):
            await serve_forever()

    The first beat goes out at once, then one every ``interval`` until the block
    exits.  Failures are logged (once per outage), never raised into your code.
    """
    publisher = Publisher(nc, prefix, ack=ack, timeout_s=timeout_s)
    template = Message(
        subject=subject,
        interval=interval,
        grace_period=grace_period,
        description=description,
        host=host,
    )
    beater = Beater(publisher, template)  # fails fast on a bad subject or interval
    stop = asyncio.Event()
    task = asyncio.create_task(beater.run(stop), name=f"heartbeat:{subject}")
    try:
        yield beater
    finally:
        stop.set()
        await task


async def beat_once_async(
    message: Message,
    servers: str | list[str] = DEFAULT_URL,
    *,
    timeout_s: float = 5.0,
    connect_options: ConnectOptions | None = None,
) -> Message:
    """Connect, publish one acknowledged heartbeat, close; return what was sent."""
    options = connect_options or ConnectOptions(servers=ConnectOptions.split_servers(servers))
    prepare(message)  # bad input fails before connecting
    nc = await connect(options, reconnect_forever=False)
    try:
        return await Publisher(nc, ack=True, timeout_s=timeout_s).publish(message)
    finally:
        with contextlib.suppress(Exception):
            await nc.close()


def beat_once(
    subject: str,
    interval: timedelta,
    *,
    servers: str | list[str] = DEFAULT_URL,
    grace_period: timedelta | None = None,
    description: str = "",
    host: str = "",
    timeout_s: float = 5.0,
) -> Message:
    """Synchronous one-shot for scripts and cron jobs.

    Connects, publishes one heartbeat, waits for the stream's acknowledgement and
    returns the message sent, or raises a :class:`HeartbeatError`.
    """
    msg = Message(
        subject=subject,
        interval=interval,
        grace_period=grace_period,
        description=description,
        host=host,
    )
    return asyncio.run(beat_once_async(msg, servers, timeout_s=timeout_s))
