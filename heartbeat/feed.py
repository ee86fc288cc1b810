"""An ordered push consumer that delivers the last message per subject, then live.

Both the heartbeat stream and the state bucket are read this way: a catch-up of
every subject's newest message (``caught_up`` is set when none is pending), then
every new message.  nats-py recreates an ordered consumer by itself after a gap
or a missed idle heartbeat (every ``idle_heartbeat_s * 2``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

import nats.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from heartbeat.connection import Headers, deliver_directly
from heartbeat.text import for_log

log = logging.getLogger(__name__)
YIELD_EVERY = 100  # messages handled between two yields: the read loop keeps reading meanwhile
# How long a catch-up check (has_handled, and the monitor's sight check) waits for an
# answer; it asks again on the next tick.  A stream whose leader is gone (a node lost)
# answers nothing, and nats-py's 5 s request timeout held a new leader that long.  Not
# for the alert proof or the stall check: a None there counts against the feed.
PROBE_TIMEOUT_S = 2.0


def delivery_of(msg: Msg) -> tuple[int, int, bool]:
    """Stream sequence, server timestamp (ns) and whether nothing more is pending.

    Read from ``msg.reply``: ``msg.metadata`` builds two frozen dataclasses and a
    datetime per message, a large share of a beat's cost (figures in
    docs/architecture.md, "The per-beat path").  The layouts are nats-py's: ``$JS.ACK.<stream>.
    <consumer>.<delivered>.<sseq>.<dseq>.<ts>.<pending>`` and, with domain and account
    hash, the 11 or 12 token form.  A plain tuple: one is made per message.
    """
    tokens = (msg.reply or "").split(".")
    n = len(tokens)
    if n > 1 and tokens[1] == "ACK" and tokens[0] == "$JS":
        if n == 9:
            return int(tokens[5]), int(tokens[7]), tokens[8] == "0"
        if n >= 11:
            return int(tokens[7]), int(tokens[9]), tokens[10] == "0"
    raise nats.errors.NotJSMessageError  # what msg.metadata raises for such a reply


Handler = Callable[[str, bytes, Headers, int, int], None]
"""Called with each message's subject, data and headers, its stream sequence and its
server timestamp (ns)."""


class Feed:
    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        subject: str,
        handle: Handler,
        *,
        idle_heartbeat_s: float = 1.0,
        probe_timeout_s: float = PROBE_TIMEOUT_S,
    ) -> None:
        self._js = js
        self.stream = stream
        self.subject = subject
        self._handle = handle
        self._idle_heartbeat_s = idle_heartbeat_s
        self.probe_timeout_s = probe_timeout_s
        self._sub: JetStreamContext.PushSubscription | None = None
        self.caught_up = asyncio.Event()
        self.last_stream_seq = 0
        self.last_pending: int | None = None  # from the last pending() call
        # Server time (ns) of the last message handled: in stream order, so every message
        # stored up to then has been handled (once caught up; heartbeat.judge's proof).
        self.handled_to_ns = 0
        self._since_yield = 0
        self.direct = False  # messages handed over by the connection (heartbeat.connection)
        self._caught_up_at: int | None = None  # a stream sequence that, handled, means caught up
        self._catching_up = True

    async def start(self) -> None:
        self._sub = await self._js.subscribe(
            self.subject,
            stream=self.stream,
            cb=self._on_msg,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            idle_heartbeat=self._idle_heartbeat_s,
            pending_msgs_limit=-1,
            pending_bytes_limit=-1,
        )
        self.direct = deliver_directly(self._sub, self._on_direct)
        info = await self._sub.consumer_info()
        if info.num_pending == 0:
            # The server may have sent messages it counts as delivered that this info
            # overtook on the wire: caught up once the last of them is handled.
            self._caught_up_at = int(info.delivered.stream_seq or 0) if info.delivered else 0
            if self.last_stream_seq >= self._caught_up_at and self._catching_up:
                self._catching_up = False
                self.caught_up.set()

    async def stop(self) -> None:
        sub, self._sub = self._sub, None
        if sub is not None:
            try:
                await sub.unsubscribe()
            except (nats.errors.Error, TimeoutError, OSError) as e:
                log.debug("unsubscribing from %s failed: %s", self.stream, e)

    async def pending(self, timeout_s: float | None = None) -> int | None:
        """Messages the server still has to deliver to us, or None if it cannot say
        (within ``timeout_s``; None: nats-py's request timeout)."""
        if self._sub is None:
            return None
        try:
            async with asyncio.timeout(timeout_s):
                info = await self._sub.consumer_info()
        except (nats.errors.Error, TimeoutError, OSError) as e:
            log.debug("consumer info for %s failed: %r", self.stream, e)
            self.last_pending = None
            return None
        self.last_pending = int(info.num_pending or 0)
        return self.last_pending

    async def last_stored_seq(self, timeout_s: float | None = None) -> int | None:
        """The stream's last sequence now (None if the server cannot say within
        ``timeout_s``): once this feed has handled it, it has seen everything stored
        until now."""
        try:
            async with asyncio.timeout(timeout_s):
                info = await self._js.stream_info(self.stream)
        except (nats.errors.Error, TimeoutError, OSError) as e:
            log.debug("stream info for %s failed: %r", self.stream, e)
            return None
        return int(info.state.last_seq or 0)

    async def has_handled(self, target: int | None) -> tuple[bool, int | None]:
        """Whether this feed has handled every message up to stream sequence ``target``
        or the server has nothing more for it; with ``target`` None, the stream's last
        sequence now is asked for.  Returns the answer and the target (None while the
        stream has not said).  Both are asked at once, each for ``probe_timeout_s``, and
        the first proof is enough: after a node loss one may answer nothing (a stream not
        yet re-elected, a consumer that lived on the node)."""
        bound = self.probe_timeout_s
        if target is not None:
            return self.last_stream_seq >= target or await self.pending(bound) == 0, target
        seq = asyncio.ensure_future(self.last_stored_seq(bound))
        count = asyncio.ensure_future(self.pending(bound))
        waiting: set[asyncio.Future[int | None]] = {seq, count}
        try:
            while waiting:
                _, waiting = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if seq.done():
                    target = seq.result()
                if (target is not None and self.last_stream_seq >= target) or (
                    count.done() and count.result() == 0
                ):
                    return True, target
            return False, target
        finally:
            for asked in (seq, count):
                if asked.done() and not asked.cancelled():
                    asked.exception()  # retrieved: one that failed after a proof is moot
                asked.cancel()

    async def unhandled(self) -> int | None:
        """Messages not yet handled: still at the server, or received and queued here
        (a busy process has not run their handler yet); None if the server cannot say."""
        pending = await self.pending()
        if pending is None or self._sub is None:
            return None
        return pending + self._sub.pending_msgs

    def _on_direct(
        self, subject: str, data: bytes, headers: Headers, seq: int, stamp_ns: int, drained: bool
    ) -> None:
        """A message handed over by the connection as it was read (the usual path)."""
        self.last_stream_seq = seq
        try:
            self._handle(subject, data, headers, seq, stamp_ns)
        except Exception:  # one bad message never stops the feed
            log.exception("handling %s from %s failed", for_log(subject), self.stream)
        self.handled_to_ns = stamp_ns
        if self._catching_up and (
            drained or (self._caught_up_at is not None and seq >= self._caught_up_at)
        ):
            self._catching_up = False  # a plain flag: Event.is_set was 5% of a burst
            self.caught_up.set()

    async def _on_msg(self, msg: Msg) -> None:
        """nats-py's callback: for what the connection does not hand over directly
        (another client class, a reply form with a JetStream domain)."""
        self._on_direct(msg.subject, msg.data, msg.headers, *delivery_of(msg))
        self._since_yield += 1
        if self._since_yield >= YIELD_EVERY:
            # nats-py calls us in a loop that does not yield while messages are queued:
            # in a catch-up of a million, the connection's pings and timers must run too.
            self._since_yield = 0
            await asyncio.sleep(0)


async def read_last(
    js: JetStreamContext, stream: str, subject: str, *, timeout_s: float
) -> dict[str, tuple[bytes, Headers, int]]:
    """Each subject's newest message (data, headers, stream sequence), read once.

    For small streams (the silences bucket): nats-py's ``KeyValue.keys`` can end its
    listing before a message the server already sent arrives, and list nothing.
    Raises ``TimeoutError`` past ``timeout_s`` and nats-py's errors as they come.
    """
    got: dict[str, tuple[bytes, Headers, int]] = {}

    def keep(subject: str, data: bytes, headers: Headers, seq: int, _stamp_ns: int) -> None:
        got[subject] = (data, headers, seq)

    feed = Feed(js, stream, subject, keep)
    try:
        async with asyncio.timeout(timeout_s):
            await feed.start()
            await feed.caught_up.wait()
    finally:
        await feed.stop()
    return got
