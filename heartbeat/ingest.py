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

from heartbeat.durations import to_ns
from heartbeat.engine import Beat
from heartbeat.errors import InvalidHeartbeat, InvalidSubject
from heartbeat.feed import Feed
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
    """Consumes the heartbeat stream and reports valid beats; counts rejections."""

    def __init__(
        self, js: JetStreamContext, stream: str, filter_subject: str, on_beat: BeatHandler
    ) -> None:
        self._on_beat = on_beat
        self.feed = Feed(js, stream, filter_subject, self._handle)
        self.rejected: Counter[str] = Counter()
        self.accepted = 0

    @property
    def caught_up(self) -> asyncio.Event:
        return self.feed.caught_up

    @property
    def received(self) -> int:
        return self.feed.received

    async def start(self) -> None:
        await self.feed.start()

    async def stop(self) -> None:
        await self.feed.stop()

    def _handle(self, msg: Msg) -> None:
        try:
            beat = beat_from_message(msg.subject, msg.data, msg.metadata.timestamp)
        except InvalidHeartbeat as e:
            self.rejected[e.reason] += 1
            log.warning("rejected heartbeat on %s (%s): %s", msg.subject, e.reason, e)
            return
        self.accepted += 1
        self._on_beat(msg.subject, beat)
