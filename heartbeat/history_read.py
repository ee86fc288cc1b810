"""Reading history back: the events of subjects matching a pattern since a time.

An ephemeral ordered consumer filtered on ``<prefix>.<pattern>`` (the server does
the filtering) starts at ``now - since`` and reads until nothing is pending; the
newest ``limit`` events are kept, oldest first.  Any replica (or the CLI) can read.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from datetime import UTC, datetime

import msgspec
import nats.errors
import nats.js.errors
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import ConsumerConfig, DeliverPolicy

from heartbeat.feed import delivery_of
from heartbeat.history import Event, HistoryConfig, HistoryQuery, decode_event
from heartbeat.store import StoreError

log = logging.getLogger(__name__)

MAX_SCAN = 1_000_000  # events read at most for one answer (the newest `limit` kept)


async def read_history(
    js: JetStreamContext,
    cfg: HistoryConfig,
    query: HistoryQuery,
    now: float,
    *,
    timeout_s: float = 10.0,
) -> list[Event]:
    """The newest ``query.limit`` events matching ``query``, oldest first.

    Raises :class:`StoreError` when the stream cannot be read (missing, no answer
    within ``timeout_s``).  Payloads that are not events are skipped.
    """
    kept: deque[Event] = deque(maxlen=query.limit)
    done = asyncio.Event()
    seen = 0

    async def on_msg(msg: Msg) -> None:
        nonlocal seen
        seen += 1
        try:
            _seq, _ts, drained = delivery_of(msg)
        except nats.errors.Error:
            drained = False
        with contextlib.suppress(msgspec.DecodeError, msgspec.ValidationError):
            kept.append(decode_event(msg.data))
        if drained or seen >= MAX_SCAN:
            done.set()

    start = datetime.fromtimestamp(max(0.0, now - query.since_s), UTC)
    config = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_TIME, opt_start_time=start)
    deadline = time.monotonic() + timeout_s
    try:
        sub = await js.subscribe(
            cfg.subject_for(query.pattern),
            stream=cfg.stream,
            cb=on_msg,
            config=config,
            ordered_consumer=True,
            idle_heartbeat=1.0,
            pending_msgs_limit=-1,
            pending_bytes_limit=-1,
        )
    except nats.js.errors.NotFoundError as e:
        raise StoreError(f"stream {cfg.stream} does not exist (history is off?)") from e
    except (nats.errors.Error, TimeoutError, OSError) as e:
        raise StoreError(f"cannot read stream {cfg.stream}: {e}") from e
    try:
        info = await sub.consumer_info()
        if info.num_pending == 0 and sub.delivered == 0:
            return []
        await asyncio.wait_for(done.wait(), max(0.1, deadline - time.monotonic()))
    except TimeoutError as e:
        raise StoreError(f"reading stream {cfg.stream} took longer than {timeout_s:g}s") from e
    except nats.errors.Error as e:
        raise StoreError(f"cannot read stream {cfg.stream}: {e}") from e
    finally:
        with contextlib.suppress(nats.errors.Error, TimeoutError, OSError):
            await sub.unsubscribe()
    return list(kept)
