"""Connecting to NATS the way a long-running monitor or agent needs.

nats-py's defaults suit short scripts: reconnects give up after ~2 minutes and a
hung server is noticed only after 120 s of silence.  ``connect`` tries every
server once (fast failure for one-shot commands); ``connect_with_retry`` backs off
and retries the first connect, then lets nats-py reconnect forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.client import Client as NATS

from heartbeat.aio import wait_event
from heartbeat.errors import ConnectError

log = logging.getLogger(__name__)

DEFAULT_URL = "nats://127.0.0.1:4222"
Callback = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class ConnectOptions:
    """Everything needed to reach the NATS servers.

    ``servers`` is a list of URLs (a comma-separated string is split).
    """

    servers: tuple[str, ...] = (DEFAULT_URL,)
    name: str = "nats-heartbeat"
    connect_timeout_s: float = 2.0
    reconnect_wait_s: float = 1.0
    ping_interval_s: float = 5.0
    max_outstanding_pings: int = 2
    extra: dict[str, Any] = field(default_factory=dict)

    @staticmethod
    def split_servers(urls: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
        items = [urls] if isinstance(urls, str) else list(urls)
        out = tuple(u.strip() for item in items for u in item.split(",") if u.strip())
        return out or (DEFAULT_URL,)


class _Events:
    """nats-py callbacks that keep the last error and log outages once."""

    def __init__(
        self, on_disconnect: Callback | None = None, on_reconnect: Callback | None = None
    ) -> None:
        self.last_error: BaseException | None = None
        self._on_disconnect = on_disconnect
        self._on_reconnect = on_reconnect
        self.connected_once = False
        self.nc: NATS | None = None

    async def error(self, e: Exception) -> None:
        self.last_error = e
        if self.connected_once:
            log.debug("nats: %s", describe_error(e))

    async def disconnected(self) -> None:
        # nats-py calls this on close() and drain() too: only an outage counts.
        if self.nc is not None and self.nc.is_closed:
            return
        if self.connected_once:
            log.warning("nats disconnected; reconnecting")
            if self._on_disconnect is not None:
                await self._on_disconnect()

    async def reconnected(self) -> None:
        log.info("nats reconnected")
        if self._on_reconnect is not None:
            await self._on_reconnect()

    async def closed(self) -> None:
        log.debug("nats connection closed")


def describe_error(e: BaseException) -> str:
    """A one-line description of a connection error, without a traceback."""
    text = str(e).strip()
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, asyncio.TimeoutError | TimeoutError):
        return "timed out"
    return text or type(e).__name__


async def connect(
    options: ConnectOptions,
    *,
    on_disconnect: Callback | None = None,
    on_reconnect: Callback | None = None,
    reconnect_forever: bool = True,
) -> NATS:
    """Connect once (each server tried once); raise :class:`ConnectError` on failure.

    With ``reconnect_forever`` the connection, once made, reconnects without limit.
    """
    events = _Events(on_disconnect, on_reconnect)
    nc = NATS()
    events.nc = nc
    # nats-py annotates these timeouts as int but accepts float seconds.
    kwargs: dict[str, Any] = {
        "servers": list(options.servers),
        "name": options.name,
        "connect_timeout": options.connect_timeout_s,
        "reconnect_time_wait": 0.05,
        "max_reconnect_attempts": 1,
        "ping_interval": options.ping_interval_s,
        "max_outstanding_pings": options.max_outstanding_pings,
        "error_cb": events.error,
        "disconnected_cb": events.disconnected,
        "reconnected_cb": events.reconnected,
        "closed_cb": events.closed,
        **options.extra,
    }
    try:
        await nc.connect(**kwargs)
    except (TimeoutError, OSError, nats.errors.Error) as e:
        cause = events.last_error if isinstance(e, nats.errors.NoServersError) else e
        reason = describe_error(cause) if cause is not None else describe_error(e)
        with contextlib.suppress(Exception):  # tidying up a connection that failed
            await nc.close()
        raise ConnectError(f"cannot connect to {','.join(options.servers)}: {reason}") from e
    events.connected_once = True
    # The first connect tried each server once; from now on never give up.
    nc.options["max_reconnect_attempts"] = -1 if reconnect_forever else 0
    nc.options["allow_reconnect"] = reconnect_forever
    nc.options["reconnect_time_wait"] = options.reconnect_wait_s
    return nc


async def connect_with_retry(
    options: ConnectOptions,
    stop: asyncio.Event,
    *,
    on_disconnect: Callback | None = None,
    on_reconnect: Callback | None = None,
    max_backoff_s: float = 30.0,
) -> NATS | None:
    """Retry the first connect with exponential backoff until it works or ``stop`` is set.

    Logs one warning when the first attempt fails and one line when it succeeds.
    Returns ``None`` if stopped before connecting.
    """
    backoff = min(0.5, max_backoff_s)
    failing = False
    while not stop.is_set():
        try:
            nc = await connect(options, on_disconnect=on_disconnect, on_reconnect=on_reconnect)
        except ConnectError as e:
            if not failing:
                log.warning("%s; retrying with backoff", e)
                failing = True
            else:
                log.debug("%s; retrying in %.1fs", e, backoff)
            await wait_event(stop, backoff)
            backoff = min(backoff * 2, max_backoff_s)
            continue
        if failing:
            log.info("connected to NATS after retrying")
        return nc
    return None


async def close_connection(nc: NATS) -> None:
    """Drain ``nc`` when connected, else close it; return only once nats-py has stopped.

    ``drain()`` raises while nats-py is reconnecting (a shutdown during an outage), so
    then the connection is closed instead.  ``close()`` cancels the reconnect task, but
    on Python 3.11 ``asyncio.wait_for`` swallows that cancellation when a connect
    attempt fails at the same moment: nats-py then keeps retrying on the closed client
    and ``asyncio.run()`` waits for the task forever.  Cancel it until it is done.
    """
    task: asyncio.Task[None] | None = getattr(nc, "_reconnection_task", None)
    if nc.is_connected:
        await nc.drain()
    else:
        await nc.close()
    while task is not None and not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.1)
