"""Ingestion: an ordered push consumer on the heartbeat stream.

It delivers the last beat of every subject (catch-up), then every new beat.
Each message is validated (payload subject must equal the NATS subject) and
handed to ``on_beat`` with the JetStream server timestamp as ``last_seen``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable
from datetime import datetime

from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from heartbeat.durations import to_ns
from heartbeat.engine import Beat
from heartbeat.errors import HeartbeatError, InvalidHeartbeat, InvalidSubject
from heartbeat.schema import decode, format_time, validate_subject

log = logging.getLogger(__name__)

BeatHandler = Callable[[str, Beat], None]


def beat_from_message(nats_subject: str, data: bytes, server_time: datetime) -> Beat:
    """Validate one stream message; raise :class:`InvalidHeartbeat` with a reason."""
    msg = decode(data)
    if msg.subject != nats_subject:
        raise InvalidHeartbeat(
            f"payload names subject {msg.subject!r} but was published on {nats_subject!r}",
            "subject_mismatch",
        )
    try:
        validate_subject(nats_subject)
    except InvalidSubject as e:
        raise InvalidHeartbeat(str(e), "bad_subject") from e
    assert msg.generated_at is not None
    return Beat(
        last_seen=server_time.timestamp(),
        interval_ns=to_ns(msg.interval),
        grace_ns=to_ns(msg.grace_period) if msg.grace_period is not None else None,
        host=msg.host,
        description=msg.description,
        generated_at=format_time(msg.generated_at),
    )


class Ingestor:
    """Consumes the stream and reports beats; tracks catch-up and rejections."""

    def __init__(
        self, js: JetStreamContext, stream: str, filter_subject: str, on_beat: BeatHandler
    ) -> None:
        self._js = js
        self._stream = stream
        self._filter = filter_subject
        self._on_beat = on_beat
        self._sub: JetStreamContext.PushSubscription | None = None
        self.caught_up = asyncio.Event()
        self.received = 0
        self.rejected: Counter[str] = Counter()
        self.last_message_at = 0.0  # event-loop time of the last message or idle heartbeat

    async def start(self) -> None:
        self._sub = await self._js.subscribe(
            self._filter,
            stream=self._stream,
            cb=self._handle,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
            idle_heartbeat=1.0,
            pending_msgs_limit=-1,
            pending_bytes_limit=-1,
        )
        info = await self._sub.consumer_info()
        if info.num_pending == 0 and self._sub.delivered == 0:
            self.caught_up.set()

    async def stop(self) -> None:
        if self._sub is not None:
            sub, self._sub = self._sub, None
            try:
                await sub.unsubscribe()
            except Exception as e:  # the connection may already be gone
                log.debug("unsubscribe failed: %s", e)

    async def _handle(self, msg: Msg) -> None:
        self.received += 1
        meta = msg.metadata
        try:
            beat = beat_from_message(msg.subject, msg.data, meta.timestamp)
        except InvalidHeartbeat as e:
            self.rejected[e.reason] += 1
            log.warning("rejected heartbeat on %s (%s): %s", msg.subject, e.reason, e)
        except HeartbeatError as e:
            self.rejected["invalid"] += 1
            log.warning("rejected heartbeat on %s: %s", msg.subject, e)
        else:
            self._on_beat(msg.subject, beat)
        if meta.num_pending == 0 and not self.caught_up.is_set():
            self.caught_up.set()
