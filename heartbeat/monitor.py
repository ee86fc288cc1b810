"""The monitor: ingest beats, mirror state, lead, evaluate deadlines, deliver.

Every replica consumes the heartbeat stream and mirrors the state bucket (hot
standby), so any replica answers status the same and a new leader is ready at
once.  Only the replica holding the lease evaluates: subjects whose deadline
passed (and subjects with news) go through the pure engine; decisions are
committed to KV with compare-and-set before any channel sends.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import msgspec
import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from heartbeat.aio import wait_any, wait_event
from heartbeat.delivery import Deliveries
from heartbeat.election import Election, lease_view
from heartbeat.engine import (
    Beat,
    EngineConfig,
    Record,
    Schedule,
    Track,
    evaluate,
    merged,
    meta_differs,
    next_due,
)
from heartbeat.feed import Feed
from heartbeat.ingest import Ingestor
from heartbeat.metrics import TickTimer
from heartbeat.notification import EventKind, monitor_notice
from heartbeat.notify.base import Notifier
from heartbeat.notify.retry import fan_out
from heartbeat.retire import Janitor
from heartbeat.schema import is_valid_subject
from heartbeat.sight import Sight
from heartbeat.status import build_report
from heartbeat.status_schema import StatusReport
from heartbeat.store import (
    LEASE_KEY,
    StateConflict,
    StateStore,
    StoreConfig,
    StoreError,
    ensure_stream,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class MonitorConfig:
    store: StoreConfig = field(default_factory=StoreConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    poll_s: float = 1.0
    replica_id: str = "monitor"
    lease_ttl_s: float = 10.0
    blind_after_s: float = 30.0
    stall_check_s: float = 5.0
    delivery_deadline_s: float = 10.0
    delivery_retry_s: float = 5.0
    max_writes_per_tick: int = 5000
    reconcile_every_s: float = 30.0


@dataclass
class Counters:
    evaluations: int = 0
    kv_writes: int = 0
    conflicts: int = 0
    store_errors: int = 0
    retired: int = 0
    ignored_records: int = 0  # under keys that are not heartbeat subjects


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
        self.election = Election(
            self.js,
            cfg.store.bucket,
            cfg.replica_id,
            ttl_s=cfg.lease_ttl_s,
            on_change=self._on_leadership,
            eligible=self._sighted,
        )
        self.store: StateStore | None = None
        self.watch: Feed | None = None
        self.deliveries: Deliveries | None = None
        # Everything held per subject, in one table: a beat costs one lookup.
        self.tracks: dict[str, Track] = {}
        self.schedule = Schedule()
        self.ingestor = Ingestor(
            self.js, cfg.store.stream, cfg.store.filter_subject, self._on_beat, self.tracks
        )
        self.dirty: set[str] = set()
        self.with_pending: set[str] = set()
        self.busy: set[str] = set()  # subjects with a write in flight
        self.sight = Sight(
            cfg.replica_id,
            clock=clock,
            connected=lambda: bool(nc.is_connected),
            leading=self.leading,
            feeds=self._feeds,
            notice=self._notice,
            blind_after_s=cfg.blind_after_s,
            stall_check_s=cfg.stall_check_s,
        )
        self.ready_event = asyncio.Event()
        self.counters = Counters()
        self.janitor: Janitor | None = None
        self.tick_timer = TickTimer()
        self.stopping = False
        self._takeover = False
        self._last_tick: float | None = None

    # ----- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Ensure stream and bucket, start mirroring the bucket and consuming beats."""
        await ensure_stream(self.js, self.cfg.store)
        self.store = await StateStore.open(self.js, self.cfg.store)
        self.deliveries = Deliveries(
            self,
            self.store,
            self.notifiers,
            deadline_s=self.cfg.delivery_deadline_s,
            retry_s=self.cfg.delivery_retry_s,
            may_send=self.may_send,
            clock=self.clock,
        )
        self.janitor = Janitor(
            self.js,
            self.store,
            self,
            every_s=self.cfg.reconcile_every_s,
            clock=self.clock,
        )
        self.watch = self.store.watch(self._on_entry)
        try:
            await self.watch.start()
            await self.ingestor.start()
        except (nats.errors.Error, TimeoutError, OSError) as e:
            await self.close()
            raise StoreError(f"cannot start consuming: {e or type(e).__name__}") from e
        log.info(
            "monitor %s: mirroring %s, consuming %s",
            self.cfg.replica_id,
            self.cfg.store.bucket,
            self.cfg.store.filter_subject,
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Campaign and tick until ``stop``; then hand over cleanly."""
        assert self.watch is not None and self.deliveries is not None
        await _wait_all(stop, self.watch.caught_up, self.ingestor.caught_up)
        if stop.is_set():
            return await self.close()
        self.ready_event.set()
        log.info(
            "monitor %s: caught up with %d subject(s), %d with a record",
            self.cfg.replica_id,
            len(self.tracks),
            sum(1 for t in self.tracks.values() if t.record is not None),
        )
        campaign_stop = asyncio.Event()
        campaign = asyncio.create_task(self.election.run(campaign_stop))
        while not stop.is_set():
            started = time.monotonic()
            try:
                await self.tick()
            except Exception:  # the loop must go on; each subject's errors are handled below
                log.exception("tick failed")
            await wait_event(stop, self.cfg.poll_s - (time.monotonic() - started))
        # Hand over: send nothing more, let attempts under way finish, then step down.
        self.stopping = True
        await self.deliveries.drain(2.0)
        campaign_stop.set()
        await campaign
        await self.close()

    async def close(self) -> None:
        if self.janitor is not None:
            await self.janitor.stop()
        await self.ingestor.stop()
        if self.watch is not None:
            await self.watch.stop()

    # ----- queries ---------------------------------------------------------------

    def leading(self) -> bool:
        return self.election.leading()

    def held(self, subject: str) -> tuple[Record, int] | None:
        """The subject's committed record and its KV revision, if there is one."""
        t = self.tracks.get(subject)
        return None if t is None else t.held

    def record(self, subject: str) -> Record | None:
        t = self.tracks.get(subject)
        return None if t is None else t.record

    def beat(self, subject: str) -> Beat | None:
        """The newest heartbeat seen for the subject."""
        t = self.tracks.get(subject)
        return None if t is None else t.beat

    def kv_writes(self) -> int:
        """Compare-and-set writes made by this replica (decisions and deliveries)."""
        delivered = self.deliveries.kv_writes if self.deliveries is not None else 0
        return self.counters.kv_writes + delivered

    def _sighted(self) -> bool:
        """Whether this replica may lead: it sees the data path (DESIGN section 6)."""
        return not self.sight.blind

    def may_send(self) -> bool:
        return not self.stopping and self.leading()

    def report(self) -> StatusReport:
        return build_report(
            list(self.tracks.values()),
            self.clock(),
            monitor=self.cfg.replica_id,
            leader=self.leading(),
            leader_id=self.election.leader_id,
        )

    def healthy(self) -> tuple[bool, str]:
        """Alive: the tick loop ran recently (or the monitor is still starting)."""
        if self._last_tick is None:
            return True, "starting"
        age = time.monotonic() - self._last_tick
        if age > max(10.0, self.cfg.poll_s * 5):
            return False, f"evaluation loop stalled for {age:.0f}s"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        """Ready: connected, bucket mirrored, stream caught up, not blind."""
        if not self.nc.is_connected:
            return False, "NATS disconnected"
        if not self.ready_event.is_set():
            return False, "catching up"
        if self.sight.blind:
            return False, "blind: catching up after an outage"
        return True, "ok"

    # ----- inputs ----------------------------------------------------------------

    def _on_beat(self, subject: str, beat: Beat) -> None:
        """Every valid beat comes here (the hot path: one table lookup, no allocation)."""
        track = self.tracks.get(subject)
        if track is None:
            # One string per subject, shared by every table keyed by it (the bucket feed
            # interns record keys too): 100k subjects hold one copy each, not three.
            subject = sys.intern(subject)
            self.tracks[subject] = Track(subject=subject, beat=beat)
            self.dirty.add(subject)
            return
        prev = track.beat
        if prev is not None and beat.last_seen <= prev.last_seen:
            return
        track.beat = beat
        rec = track.record
        if rec is None or rec.alert_active or meta_differs(rec, beat):
            self.dirty.add(subject)
        elif track.due is None:
            # With a deadline already set, a newer beat only moves it later: the early
            # entry pops, the engine finds nothing to do and pushes the true one.
            cur = merged(rec, beat, subject)
            self.schedule.push(track, next_due(cur, self.cfg.engine, self.sight.sight_since))

    def _on_entry(self, key: str, rec: Record | None, rev: int, msg: Msg) -> None:
        if key == LEASE_KEY:
            self.election.observe(lease_view(msg.data, msg.headers, rev))
        elif rec is not None:
            self.set_record(key, rec, rev)
        elif (t := self.tracks.get(key)) is not None and t.record is not None and rev > t.rev:
            log.info("record %s was deleted: retiring the subject", key)
            self.retire_local(key)
            if self.janitor is not None:
                self.janitor.deleted(key)

    def set_record(self, subject: str, rec: Record, rev: int) -> None:
        """Hold ``rec`` (KV revision ``rev``) as the subject's committed record."""
        track = self.tracks.get(subject)
        if track is None:
            if not is_valid_subject(subject):
                # No monitor writes such a key, and no beat can ever arrive for it; the
                # table holds valid subjects only (the Ingestor relies on it).
                self.counters.ignored_records += 1
                log.warning("ignoring record %s: not a valid heartbeat subject", subject)
                return
            self.tracks[subject] = track = Track(subject=subject)
        elif track.record is not None and track.rev >= rev:
            return  # what we hold already (our own write's echo), or older
        if rec.subject != subject:  # written by hand: the key is what the record is about
            log.warning("record %s names subject %r; using the key", subject, rec.subject)
            rec = msgspec.structs.replace(rec, subject=track.subject)
        track.record, track.rev = rec, rev
        if rec.pending:
            self.with_pending.add(subject)
        else:
            self.with_pending.discard(subject)
        due = next_due(merged(rec, track.beat, subject), self.cfg.engine, self.sight.sight_since)
        self.schedule.push(track, due)

    def forget_record(self, subject: str) -> None:
        self.with_pending.discard(subject)
        track = self.tracks.get(subject)
        if track is not None:
            track.record, track.rev = None, 0
            if track.beat is None:
                self._drop(track)

    def forget_beat(self, subject: str) -> None:
        """Forget the subject's beat (purged from the stream), keeping its record."""
        track = self.tracks.get(subject)
        if track is not None:
            track.beat = None
            if track.record is None:
                self._drop(track)

    def retire_local(self, subject: str) -> None:
        """Forget everything about ``subject`` (its record and stream beat are gone)."""
        self.with_pending.discard(subject)
        track = self.tracks.get(subject)
        if track is not None:
            self._drop(track)
        self.counters.retired += 1

    def _drop(self, track: Track) -> None:
        del self.tracks[track.subject]
        self.schedule.discard(track)
        self.dirty.discard(track.subject)
        track.record = track.beat = None  # stale heap entries may refer to it a while

    async def _on_leadership(self, leading: bool) -> None:
        if leading:
            self._takeover = True
        else:
            log.info("monitor %s no longer leads", self.cfg.replica_id)

    # ----- connection and sight --------------------------------------------------

    async def on_disconnect(self) -> None:
        self.sight.blinded("NATS disconnected")

    async def on_reconnect(self) -> None:
        self.sight.reconnected()

    def _feeds(self) -> list[Feed]:
        return [self.ingestor.feed] + ([self.watch] if self.watch is not None else [])

    async def _notice(self, kind: EventKind, blind_since: float, now: float) -> None:
        """Blind notices go straight to the channels: notifiers do not need NATS."""
        notice = monitor_notice(kind, self.cfg.replica_id, blind_since, now)
        log.warning("monitor %s: sending %s notice", self.cfg.replica_id, kind)
        await fan_out(
            list(self.notifiers.values()), notice, deadline_s=self.cfg.delivery_deadline_s
        )

    # ----- evaluation ------------------------------------------------------------

    async def tick(self) -> None:
        """Evaluate what is due, commit decisions, (re)start pending deliveries."""
        self._last_tick = time.monotonic()
        now = self.clock()
        await self.sight.check(now)
        if not self.nc.is_connected or self.sight.blind or not self.leading():
            return
        if self._takeover:
            if not await self.sight.caught_up():
                return  # a new leader judges nothing before it has seen everything
            self._takeover = False
            log.info("monitor %s leads; caught up, evaluating", self.cfg.replica_id)
        started = time.perf_counter()
        await self._evaluate_due(now)
        self.tick_timer.observe(time.perf_counter() - started)

    async def _evaluate_due(self, now: float) -> None:
        assert self.janitor is not None
        self.janitor.kick()
        due = [t.subject for t in self.schedule.pop_due(now)]
        if self.dirty:
            due.extend(self.dirty)
            self.dirty.clear()
        writes: list[asyncio.Future[None]] = []
        for subject in dict.fromkeys(due):
            if subject in self.busy or len(writes) >= self.cfg.max_writes_per_tick:
                self.dirty.add(subject)
                continue
            work = self._evaluate(subject, now)
            if work is not None:
                writes.append(work)
        if writes:
            await asyncio.gather(*writes)
        assert self.deliveries is not None
        for subject in list(self.with_pending):
            self.deliveries.start(subject)

    def _evaluate(self, subject: str, now: float) -> asyncio.Future[None] | None:
        track = self.tracks.get(subject)
        if track is None:
            return None  # retired since it was queued
        rec, rev = track.record, track.rev
        self.counters.evaluations += 1
        try:
            out = evaluate(
                subject,
                rec,
                track.beat,
                now,
                self.cfg.engine,
                sight_since=self.sight.sight_since,
                monitor=self.cfg.replica_id,
                channels=list(self.notifiers),
                new_alert_id=uuid.uuid4().hex[:16],
            )
        except Exception:
            log.exception("evaluating %s failed; retrying in %.0fs", subject, self.cfg.poll_s * 10)
            self.schedule.push(track, now + self.cfg.poll_s * 10)
            return None
        self.schedule.push(track, out.due)
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
        except StateConflict:  # take what is in KV and decide again
            self.counters.conflicts += 1
            await self.reload(subject)
            self.dirty.add(subject)
            return
        except StoreError as e:
            self.counters.store_errors += 1
            log.warning("committing %s failed, will retry: %s", subject, e)
            self.dirty.add(subject)
            return
        finally:
            self.busy.discard(subject)
        self.counters.kv_writes += 1
        self.set_record(subject, rec, new_rev)  # the tick starts its deliveries

    async def reload(self, subject: str) -> tuple[Record, int] | None:
        """After a lost compare-and-set: hold what KV holds now, and return it (what is
        held already if KV cannot be read)."""
        assert self.store is not None
        try:
            got = await self.store.get(subject)
        except StoreError as e:
            log.warning("reloading %s failed: %s", subject, e)
            return self.held(subject)
        if got is not None:
            self.set_record(subject, *got)
        else:
            self.forget_record(subject)
        return got


async def _wait_all(stop: asyncio.Event, *events: asyncio.Event) -> None:
    """Wait until every event is set, or until ``stop`` is."""
    for event in events:
        if not stop.is_set():
            await wait_any(event, stop)
