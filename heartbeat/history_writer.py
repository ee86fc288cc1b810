"""Appending history events to their stream, off to the side of the judge.

:meth:`HistoryWriter.record` never blocks and never raises: an event goes into a
bounded queue (when full it is counted and dropped, with a rate-limited log line),
and one task publishes the queue in order, pipelined, each with its
``Nats-Msg-Id`` so a retry or a re-emission by a new leader is stored once.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Iterable

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import DiscardPolicy, RetentionPolicy, StorageType, StreamConfig

from heartbeat.history import MSG_ID, Event, HistoryConfig, encode_event
from heartbeat.ratelog import RateLog
from heartbeat.store import ConfigConflict, StoreError

log = logging.getLogger(__name__)

MAX_QUEUE = 50_000  # a storm of 10k subjects makes ~20k events at once
BATCH = 256  # publishes in flight at once; the rest wait in the queue
TRIES = 3
PUBLISH_TIMEOUT_S = 5.0


async def ensure_events_stream(js: JetStreamContext, cfg: HistoryConfig) -> float:
    """Create the events stream if missing (or bring its max age to ``cfg``'s);
    return its duplicate window in seconds (what re-emission may count on)."""
    try:
        info = await js.stream_info(cfg.stream)
    except nats.js.errors.NotFoundError:
        info = None
    except (nats.errors.Error, TimeoutError) as e:
        raise StoreError(f"cannot read stream {cfg.stream}: {e}") from e
    if info is None:
        config = StreamConfig(
            name=cfg.stream,
            description="nats-heartbeat history: transitions and delivery outcomes",
            subjects=[cfg.filter_subject],
            storage=StorageType.FILE,
            retention=RetentionPolicy.LIMITS,
            discard=DiscardPolicy.OLD,
            max_age=cfg.max_age_s,
            duplicate_window=cfg.duplicate_window_s,
            num_replicas=cfg.replicas,
        )
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError as e:
            raise ConfigConflict(f"cannot create stream {cfg.stream}: {e.description}") from e
        except (nats.errors.Error, TimeoutError) as e:
            raise StoreError(f"cannot create stream {cfg.stream}: {e}") from e
        log.info("created stream %s for %s", cfg.stream, cfg.filter_subject)
        return cfg.duplicate_window_s
    c = info.config
    if cfg.filter_subject not in (c.subjects or []):
        raise ConfigConflict(
            f"stream {cfg.stream} captures {c.subjects}, not {cfg.filter_subject}: "
            "it is not a history stream (use another --history-stream)"
        )
    if c.max_age is not None and abs(c.max_age - cfg.max_age_s) > 1.0:
        # --history-max-age changed: the operator asked for it, so apply it.
        c.max_age = cfg.max_age_s
        c.duplicate_window = min(c.duplicate_window or cfg.duplicate_window_s, cfg.max_age_s)
        try:
            await js.update_stream(c)
        except (nats.errors.Error, TimeoutError) as e:
            raise StoreError(f"cannot update the max age of stream {cfg.stream}: {e}") from e
        log.info("stream %s now keeps events for %.0fs", cfg.stream, cfg.max_age_s)
    return float(c.duplicate_window or 120.0)


class HistoryWriter:
    """Publishes events in the order recorded; counts what it wrote, dropped, failed.

    Each event's publish starts at once (at most ``BATCH`` in flight, the rest wait in
    the queue), so its message goes down the connection before anything the caller
    does next on it: a transition's event before its delivery's cross-off
    (docs/architecture.md, "History").
    """

    def __init__(self, cfg: HistoryConfig, *, max_queue: int = MAX_QUEUE) -> None:
        self.cfg = cfg
        self.max_queue = max_queue
        self.duplicate_window_s = cfg.duplicate_window_s
        self.js: JetStreamContext | None = None
        self.written: Counter[str] = Counter()  # kind -> events the stream stored (new)
        self.duplicates = 0  # published again and recognised by the stream
        self.errors = 0  # given up after TRIES, or dropped because the queue was full
        self._queue: deque[Event] = deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self._log = RateLog(log, what="history events")

    async def start(self, js: JetStreamContext) -> None:
        """Make sure the stream exists, and publish through ``js`` (again, after a new
        connection)."""
        self.duplicate_window_s = await ensure_events_stream(js, self.cfg)
        self.js = js
        self._pump()

    def record(self, events: Iterable[Event]) -> None:
        """Queue ``events`` for publishing; never blocks, never raises."""
        for event in events:
            if not event.subject:
                continue  # every event is about a subject: its stream subject names it
            if len(self._queue) >= self.max_queue:
                self.errors += 1
                self._log.log(
                    "full",
                    logging.WARNING,
                    "history queue full (%d events): dropping a %s event of %s",
                    self.max_queue,
                    event.kind,
                    event.subject,
                )
                continue
            self._queue.append(event)
            self._idle.clear()
        self._pump()

    async def flush(self, timeout_s: float) -> bool:
        """Wait (at most ``timeout_s``) until everything queued was published or given up."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    async def stop(self, timeout_s: float = 2.0) -> None:
        await self.flush(timeout_s)
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _pump(self) -> None:
        js = self.js
        while js is not None and self._queue and len(self._tasks) < BATCH:
            task = asyncio.ensure_future(self._publish(js, self._queue.popleft()))
            self._tasks.add(task)
            task.add_done_callback(self._finished)
        if not self._queue and not self._tasks:
            self._idle.set()

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._pump()

    async def _publish(self, js: JetStreamContext, event: Event) -> None:
        headers = {MSG_ID: event.id} if event.id else None
        subject = self.cfg.subject_for(event.subject)
        data = encode_event(event)
        error: Exception | None = None
        for attempt in range(TRIES):
            try:
                ack = await js.publish(subject, data, headers=headers, timeout=PUBLISH_TIMEOUT_S)
            except (nats.errors.Error, TimeoutError, OSError) as e:
                error = e
                await asyncio.sleep(0.2 * 2**attempt)
                continue
            if ack.duplicate:
                self.duplicates += 1
            else:
                self.written[event.kind] += 1
            return
        self.errors += 1
        self._log.log(
            "error",
            logging.WARNING,
            "writing a %s event of %s to stream %s failed: %s",
            event.kind,
            event.subject,
            self.cfg.stream,
            error or "unknown error",
        )
