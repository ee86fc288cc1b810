"""The monitor: ingest beats, keep state in KV, evaluate deadlines, deliver.

One :class:`Monitor` per process.  It loads the bucket, catches up the stream,
then ticks every ``poll_s``: subjects whose deadline passed (and subjects with
news) go through the pure engine; decisions are committed to KV with
compare-and-set before any channel sends; pending deliveries are retried until
every channel has them.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from nats.aio.client import Client as NATS

from heartbeat.aio import wait_event
from heartbeat.engine import (
    Beat,
    EngineConfig,
    Pending,
    Record,
    Schedule,
    evaluate,
    merged,
    next_due,
)
from heartbeat.ingest import Ingestor
from heartbeat.notify.base import Notifier
from heartbeat.notify.retry import DeliveryResult, fan_out
from heartbeat.status import build_report
from heartbeat.status_schema import StatusReport
from heartbeat.store import StateConflict, StateStore, StoreConfig, StoreError, ensure_stream

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorConfig:
    store: StoreConfig = field(default_factory=StoreConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    poll_s: float = 1.0
    replica_id: str = "monitor"
    delivery_deadline_s: float = 10.0
    delivery_retry_s: float = 5.0
    max_writes_per_tick: int = 5000


@dataclass
class Counters:
    evaluations: int = 0
    kv_writes: int = 0
    conflicts: int = 0
    store_errors: int = 0
    notifications: dict[tuple[str, str, str], int] = field(default_factory=dict)

    def notified(self, channel: str, kind: str, result: str) -> None:
        key = (channel, kind, result)
        self.notifications[key] = self.notifications.get(key, 0) + 1


class Monitor:
    """Watches every subject under the prefix; the alerting half of nats-heartbeat."""

    def __init__(
        self,
        nc: NATS,
        cfg: MonitorConfig,
        notifiers: Sequence[Notifier],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.nc = nc
        self.cfg = cfg
        self.notifiers = {n.name: n for n in notifiers}
        self.clock = clock
        self.js = nc.jetstream()
        self.store: StateStore | None = None
        self.ingestor = Ingestor(self.js, cfg.store.stream, cfg.store.filter_subject, self._on_beat)
        self.records: dict[str, tuple[Record, int]] = {}
        self.beats: dict[str, Beat] = {}
        self.schedule = Schedule()
        self.dirty: set[str] = set()
        self.with_pending: set[str] = set()
        self.busy: set[str] = set()  # subjects with a write in flight
        self.inflight: set[tuple[str, str]] = set()  # (notification_id, channel)
        self.retry_at: dict[tuple[str, str], float] = {}
        self.sight_since = 0.0
        self.blind_since: float | None = None
        self.ready_event = asyncio.Event()
        self._last_tick: float | None = None
        self.counters = Counters()
        self._tasks: set[asyncio.Task[None]] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    # ----- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Ensure stream and bucket, load the records, start consuming."""
        await ensure_stream(self.js, self.cfg.store)
        self.store = await StateStore.open(self.js, self.cfg.store)
        loaded = await self.store.load_all()
        self.records.update(loaded)
        for subject, (rec, _) in loaded.items():
            self._track(subject, rec)
            self.schedule.push(subject, next_due(rec, self.cfg.engine, self.sight_since))
        await self.ingestor.start()
        log.info(
            "monitor %s: loaded %d record(s) from %s, consuming %s",
            self.cfg.replica_id,
            len(loaded),
            self.cfg.store.bucket,
            self.cfg.store.filter_subject,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Tick until ``stop`` is set; then finish in-flight deliveries."""
        await self._wait_caught_up(stop)
        if not stop.is_set():
            self.ready_event.set()
            log.info(
                "monitor %s: caught up with %d subject(s)", self.cfg.replica_id, len(self.beats)
            )
        while not stop.is_set():
            started = time.monotonic()
            await self.tick()
            await wait_event(stop, self.cfg.poll_s - (time.monotonic() - started))
        await self.close()

    async def close(self) -> None:
        await self.ingestor.stop()
        if self._tasks:
            await asyncio.wait(self._tasks, timeout=self.cfg.delivery_deadline_s + 1)

    async def _wait_caught_up(self, stop: asyncio.Event) -> None:
        waiter = asyncio.ensure_future(self.ingestor.caught_up.wait())
        stopper = asyncio.ensure_future(stop.wait())
        await asyncio.wait({waiter, stopper}, return_when=asyncio.FIRST_COMPLETED)
        for f in (waiter, stopper):
            f.cancel()

    # ----- status ------------------------------------------------------------------

    def report(self) -> StatusReport:
        leading = self.leading()
        return build_report(
            self.records,
            self.beats,
            self.clock(),
            monitor=self.cfg.replica_id,
            leader=leading,
            leader_id=self.cfg.replica_id if leading else None,
        )

    def healthy(self) -> tuple[bool, str]:
        """Alive: the tick loop ran recently (or the monitor is still starting)."""
        if self._last_tick is None:
            return True, "starting"
        age = time.monotonic() - self._last_tick
        limit = max(10.0, self.cfg.poll_s * 5 + self.cfg.delivery_deadline_s)
        if age > limit:
            return False, f"evaluation loop stalled for {age:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        """Ready: connected to NATS, bucket loaded and stream caught up."""
        if not self.nc.is_connected:
            return False, "NATS disconnected"
        if not self.ready_event.is_set():
            return False, "catching up"
        return True, "ok"

    # ----- NATS connection events --------------------------------------------------

    async def on_disconnect(self) -> None:
        if self.blind_since is None:
            self.blind_since = self.clock()
            log.warning("monitor %s: blind (NATS disconnected)", self.cfg.replica_id)

    async def on_reconnect(self) -> None:
        now = self.clock()
        if self.blind_since is not None:
            log.info(
                "monitor %s: sight restored after %.1fs; subjects need a full window of "
                "silence from now before they alert",
                self.cfg.replica_id,
                now - self.blind_since,
            )
        self.blind_since = None
        self.sight_since = now
        for subject in list(self.records) + list(self.beats):
            self.dirty.add(subject)

    # ----- ingestion ---------------------------------------------------------------

    def _on_beat(self, subject: str, beat: Beat) -> None:
        prev = self.beats.get(subject)
        if prev is not None and beat.last_seen <= prev.last_seen:
            return
        self.beats[subject] = beat
        held = self.records.get(subject)
        if held is None or held[0].alert_active or _meta_differs(held[0], beat):
            self.dirty.add(subject)
        else:
            self.schedule.push(subject, next_due(merged(held[0], beat, subject), self.cfg.engine))

    # ----- evaluation --------------------------------------------------------------

    def leading(self) -> bool:
        """Whether this replica may act (always, until leader election is added)."""
        return True

    async def tick(self) -> None:
        """Evaluate what is due, commit decisions, (re)start pending deliveries."""
        self._last_tick = time.monotonic()
        if not self.nc.is_connected or self.store is None or not self.leading():
            return
        now = self.clock()
        due = self.schedule.pop_due(now)
        if self.dirty:
            due.extend(self.dirty)
            self.dirty.clear()
        writes = []
        for subject in dict.fromkeys(due):
            if subject in self.busy:
                self.dirty.add(subject)
                continue
            work = self._evaluate(subject, now)
            if work is not None:
                writes.append(work)
                if len(writes) >= self.cfg.max_writes_per_tick:
                    self.dirty.update(s for s in due if s not in self.busy)
                    break
        if writes:
            await asyncio.gather(*writes)
        self._retry_pending(now)

    def _evaluate(self, subject: str, now: float) -> asyncio.Future[None] | None:
        held = self.records.get(subject)
        rec, rev = held if held is not None else (None, 0)
        self.counters.evaluations += 1
        try:
            out = evaluate(
                subject,
                rec,
                self.beats.get(subject),
                now,
                self.cfg.engine,
                sight_since=self.sight_since,
                monitor=self.cfg.replica_id,
                channels=list(self.notifiers),
                new_alert_id=uuid.uuid4().hex[:16],
            )
        except Exception:
            log.exception("evaluating %s failed; retrying in %.0fs", subject, self.cfg.poll_s * 10)
            self.schedule.push(subject, now + self.cfg.poll_s * 10)
            return None
        self.schedule.push(subject, out.due)
        if out.record is None:
            return None
        if out.notification is not None:
            n = out.notification
            log.info("%s %s (id %s)", n.event, subject, n.notification_id)
        self.busy.add(subject)
        return asyncio.ensure_future(self._commit(out.record, rev))

    async def _commit(self, rec: Record, rev: int) -> None:
        assert self.store is not None
        subject = rec.subject
        try:
            new_rev = await self.store.put(rec, rev)
        except StateConflict:
            self.counters.conflicts += 1
            await self._reload(subject)
            return
        except StoreError as e:
            self.counters.store_errors += 1
            log.warning("committing %s failed, will retry: %s", subject, e)
            self.dirty.add(subject)
            return
        finally:
            self.busy.discard(subject)
        self.counters.kv_writes += 1
        self._set_record(subject, rec, new_rev)
        self._deliver_pending(subject, self.clock())

    async def _reload(self, subject: str) -> None:
        """After a lost compare-and-set: take what is in KV and decide again."""
        assert self.store is not None
        try:
            got = await self.store.get(subject)
        except StoreError as e:
            log.warning("reloading %s failed: %s", subject, e)
            got = None
        if got is not None:
            self._set_record(subject, *got)
        else:
            self.records.pop(subject, None)
        self.dirty.add(subject)

    def _set_record(self, subject: str, rec: Record, rev: int) -> None:
        self.records[subject] = (rec, rev)
        self._track(subject, rec)

    def _track(self, subject: str, rec: Record) -> None:
        if rec.pending:
            self.with_pending.add(subject)
        else:
            self.with_pending.discard(subject)

    # ----- delivery ----------------------------------------------------------------

    def _retry_pending(self, now: float) -> None:
        for subject in list(self.with_pending):
            self._deliver_pending(subject, now)

    def _deliver_pending(self, subject: str, now: float) -> None:
        held = self.records.get(subject)
        if held is None:
            return
        for pending in held[0].pending:
            nid = pending.notification.notification_id
            todo = []
            for channel in pending.channels:
                key = (nid, channel)
                if key in self.inflight or self.retry_at.get(key, 0.0) > now:
                    continue
                if channel not in self.notifiers:
                    log.warning("%s: channel %s is no longer configured; dropping", nid, channel)
                    self._spawn(self._mark_done(subject, nid, channel))
                    continue
                todo.append(self.notifiers[channel])
                self.inflight.add(key)
            if todo:
                self._spawn(self._send(subject, pending, todo))

    async def _send(self, subject: str, pending: Pending, notifiers: list[Notifier]) -> None:
        n = pending.notification

        async def record(channel: str, result: DeliveryResult) -> None:
            key = (n.notification_id, channel)
            outcome = "ok" if result.delivered else ("permanent" if result.permanent else "retry")
            self.counters.notified(channel, str(n.event), outcome)
            if result.delivered or result.permanent:
                self.retry_at.pop(key, None)
                await self._mark_done(subject, n.notification_id, channel)
            else:
                self.retry_at[key] = self.clock() + self.cfg.delivery_retry_s
            self.inflight.discard(key)

        try:
            await fan_out(notifiers, n, deadline_s=self.cfg.delivery_deadline_s, on_result=record)
        finally:
            for notifier in notifiers:
                self.inflight.discard((n.notification_id, notifier.name))

    async def _mark_done(self, subject: str, nid: str, channel: str) -> None:
        """Remove ``channel`` from the pending delivery ``nid`` (compare-and-set, retried)."""
        assert self.store is not None
        lock = self._locks.setdefault(subject, asyncio.Lock())
        async with lock:
            for _ in range(10):
                held = self.records.get(subject)
                if held is None:
                    return
                rec, rev = held
                pending = _without(rec.pending, nid, channel)
                if pending == rec.pending:
                    return
                new = msgspec.structs.replace(rec, pending=pending)
                try:
                    new_rev = await self.store.put(new, rev)
                except StateConflict:
                    self.counters.conflicts += 1
                    got = await self.store.get(subject)
                    if got is None:
                        self.records.pop(subject, None)
                        return
                    self._set_record(subject, *got)
                    continue
                except StoreError as e:
                    log.warning("recording delivery of %s to %s failed: %s", nid, channel, e)
                    await asyncio.sleep(0.2)
                    continue
                self.counters.kv_writes += 1
                self._set_record(subject, new, new_rev)
                return

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


def _meta_differs(rec: Record, beat: Beat) -> bool:
    return (rec.interval_ns, rec.grace_ns, rec.host, rec.description) != (
        beat.interval_ns,
        beat.grace_ns,
        beat.host,
        beat.description,
    )


def _without(pending: list[Pending], nid: str, channel: str) -> list[Pending]:
    out = []
    for p in pending:
        if p.notification.notification_id == nid:
            rest = [c for c in p.channels if c != channel]
            if rest:
                out.append(Pending(notification=p.notification, channels=rest))
        else:
            out.append(p)
    return out
