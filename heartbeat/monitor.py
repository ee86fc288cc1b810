"""The monitor: ingest beats, mirror state, lead, evaluate deadlines, deliver.

Every replica consumes the heartbeat stream and mirrors the state bucket (hot
standby), so any replica answers status the same and a new leader is ready at
once.  Only the replica holding the lease evaluates: subjects whose deadline
passed (and subjects with news) go through the pure engine; decisions are
committed to KV with compare-and-set before any channel sends.

The monitor owns the loop and the wiring; per-subject state lives in
:class:`~heartbeat.subjects.Subjects`, which every collaborator is handed instead
of the monitor.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import nats.errors
from nats.aio.client import Client as NATS

from heartbeat.aio import wait_any
from heartbeat.connection import Headers, close_connection
from heartbeat.delivery import Deliveries
from heartbeat.depends import Dependencies, Dependency
from heartbeat.election import Election, lease_view
from heartbeat.engine import EngineConfig, Record
from heartbeat.feed import Feed
from heartbeat.groups import GROUP_PREFIX, Batcher, group_size
from heartbeat.history import Event, HistoryConfig, HistoryQuery, overlaps, resumed, retired_event
from heartbeat.history_read import read_history
from heartbeat.history_writer import HistoryWriter
from heartbeat.ingest import IngestLimits, Ingestor
from heartbeat.judge import Judge
from heartbeat.maintenance import MAX_WINDOW_S, Maintenance, Window
from heartbeat.metrics import Snapshot, TickTimer, render
from heartbeat.notification import EventKind, capacity_notice, monitor_notice
from heartbeat.notify.base import Notifier
from heartbeat.notify.retry import fan_out
from heartbeat.quiet import HushSource, Quieter
from heartbeat.ratelog import RateLog
from heartbeat.retire import Janitor
from heartbeat.routing import Route, Router
from heartbeat.sight import Sight
from heartbeat.silence_store import SilenceStore
from heartbeat.silences import DEFAULT_BUCKET as SILENCE_BUCKET
from heartbeat.silences import SilenceBook, status_of
from heartbeat.status import Filter, build_report, health_counts, quiet_counts
from heartbeat.status_schema import StatusReport
from heartbeat.store import (
    LEASE_KEY,
    RESERVED,
    ConfigConflict,
    StateStore,
    StoreConfig,
    StoreError,
    ensure_stream,
)
from heartbeat.subjects import Subjects, Track
from heartbeat.tally import Counts, Tally
from heartbeat.text import for_log

log = logging.getLogger(__name__)

Reconnect = Callable[[], Awaitable[NATS | None]]

REFRESH_SLICE = 10_000  # a standby's schedule upkeep, per slice (~0.1 s at 1M subjects)
REFRESH_SLICES = 10  # per tick: the 100k a tick always did
MIN_TICK_GAP_S = 0.05  # the shortest time between two ticks' starts (see _until_next_tick)


@dataclass(frozen=True)
class MonitorConfig:
    store: StoreConfig = field(default_factory=StoreConfig)
    engine: EngineConfig = field(default_factory=EngineConfig)
    poll_s: float = 1.0
    replica_id: str = "monitor"
    lease_ttl_s: float = 10.0
    blind_after_s: float = 30.0
    stall_check_s: float = 5.0
    unhealthy_after_s: float = 120.0  # blind this long: /healthz fails (a restart may help)
    delivery_deadline_s: float = 10.0
    delivery_retry_s: float = 5.0
    max_writes_per_tick: int = 5000
    max_subjects: int = 1_000_000
    max_payload: int = 8192  # a heartbeat larger than this is rejected unread
    tap: bool = True  # a core subscription makes new subjects known early (heartbeat.ingest)
    routes: tuple[Route, ...] = ()  # none: every subject to every channel
    maintenance: tuple[Window, ...] = ()  # [[maintenance]] windows (heartbeat.maintenance)
    group_over: int = 10  # more than this many due for one channel within group_wait_s: group
    group_wait_s: float = 2.0
    reconcile_every_s: float = 30.0
    catch_up_wait_s: float = 60.0  # start-up: the stream feed starts after the bucket's
    silence_bucket: str = SILENCE_BUCKET  # silences and pauses (heartbeat.silences)
    purge_silences_every_s: float = 3600.0  # the leader purges long-ended ones this often
    history: HistoryConfig | None = None  # the events stream; None: no history
    depends: tuple[Dependency, ...] = ()  # [[depends]]: dependents quiet while a parent is down


@dataclass
class _Parts:
    """What a started monitor talks to NATS with."""

    nc: NATS
    store: StateStore
    election: Election
    ingestor: Ingestor
    watch: Feed
    deliveries: Deliveries
    janitor: Janitor
    silences: SilenceStore
    silence_watch: Feed


class Monitor:
    """Watches every subject under the prefix; the alerting half of nats-heartbeat.

    Make it, pass :meth:`on_disconnect` / :meth:`on_reconnect` to the connection,
    then :meth:`start` it with that connection and :meth:`run` it.
    """

    def __init__(
        self,
        cfg: MonitorConfig,
        notifiers: Sequence[Notifier],
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.notifiers = {n.name: n for n in notifiers}
        self.clock = clock
        self.router = Router(list(self.notifiers), cfg.routes)
        self.subjects = Subjects(cfg.engine, max_subjects=cfg.max_subjects, router=self.router)
        self.sight = Sight(blind_after_s=cfg.blind_after_s, stall_check_s=cfg.stall_check_s)
        self.ready_event = asyncio.Event()
        self.judge = Judge(self.subjects, cfg.engine, cfg.replica_id, list(self.notifiers))
        self.judge.poll_s, self.judge.max_writes = cfg.poll_s, cfg.max_writes_per_tick
        self.judge.max_hold_s = 2 * cfg.stall_check_s  # by then a stall has blinded us
        self.counters = self.judge.counters
        # What keeps subjects quiet (heartbeat.quiet): one source per kind, asked by the
        # judge for every evaluation and by status and metrics for every subject.
        # Silences and pauses from their bucket (heartbeat.silences): always, since one can
        # be added at any time.
        self.silences = SilenceBook()
        self._silences_purged = 0.0
        sources: list[HushSource] = [self.silences]
        if cfg.maintenance:
            lookback = MAX_WINDOW_S + cfg.engine.tolerance_s
            sources.append(Maintenance(cfg.maintenance, lookback_s=lookback))
        # [[depends]] (heartbeat.depends): its hush, and the parents' dependents count.
        self.depends = Dependencies(self.subjects, cfg.depends)
        if cfg.depends:
            self.depends.attach()
            sources.append(self.depends)
            self.judge.dependents_for = self.depends.dependents_for
        self.quieter = Quieter(sources)
        self.judge.hush_for = self.quieter.hush_for
        self.tally = Tally(self.subjects.tracks.values, self.count_slice, clock)
        self.tick_timer = TickTimer()
        self._parts: _Parts | None = None
        self._terms_seen = 0
        self._term_targets: tuple[int, list[int | None]] = (0, [])  # (term, last seqs then)
        self._last_tick: float | None = None
        self._reconnect: Reconnect | None = None
        self._capacity_log = RateLog(log, what="refused subjects")
        self._refused_logged = 0
        self._capacity_told = False
        self._replacing: asyncio.Task[None] | None = None
        self.history: HistoryWriter | None = None
        if cfg.history is not None and cfg.history.enabled:
            if overlaps(cfg.history.filter_subject, cfg.store.filter_subject):
                raise ConfigConflict(
                    f"history subjects {cfg.history.filter_subject} overlap the heartbeat "
                    f"subjects {cfg.store.filter_subject}: choose another history prefix"
                )
            self.history = HistoryWriter(cfg.history)
            self.judge.history = self.history.record

    @property
    def parts(self) -> _Parts:
        if self._parts is None:
            raise RuntimeError("the monitor has not been started")
        return self._parts

    @property
    def ingestor(self) -> Ingestor:
        return self.parts.ingestor

    # ----- lifecycle -------------------------------------------------------------

    async def start(self, nc: NATS) -> None:
        """Ensure stream and bucket, start mirroring the bucket and consuming beats."""
        cfg = self.cfg
        js = nc.jetstream()
        await ensure_stream(js, cfg.store)
        if self.history is not None:
            await self.history.start(js)
        store = await StateStore.open(js, cfg.store)
        silences = await SilenceStore.open(js, cfg.silence_bucket, replicas=cfg.store.replicas)
        old = self._parts
        if old is None:
            self.subjects.defer_scheduling()  # until run() has caught up
            election = Election(store, cfg.replica_id, ttl_s=cfg.lease_ttl_s)
            election.eligible = not self.sight.blind
            deliveries = Deliveries(
                self.subjects,
                store,
                self.notifiers,
                deadline_s=cfg.delivery_deadline_s,
                retry_s=cfg.delivery_retry_s,
                leading=election.leading,
                clock=self.clock,
                batcher=Batcher(
                    over=cfg.group_over,
                    wait_s=cfg.group_wait_s,
                    max_size=group_size(int(nc.max_payload or 0)),
                ),
                monitor=cfg.replica_id,
                max_entry_bytes=int(nc.max_payload or 1 << 20) // 2,
            )
            if self.history is not None:
                deliveries.history = self.history.record
        else:  # a new connection: the same election and deliveries, on the new store
            election, deliveries = old.election, old.deliveries
            election.store = deliveries.store = store
        self._parts = parts = _Parts(
            nc=nc,
            store=store,
            election=election,
            ingestor=Ingestor(
                js,
                cfg.store.stream,
                cfg.store.filter_subject,
                self.subjects.on_beat,
                self.subjects.known,
                limits=IngestLimits.for_bucket(
                    cfg.store.bucket,
                    max_payload=min(cfg.max_payload, int(nc.max_payload or cfg.max_payload)),
                ),
                tap=nc if cfg.tap else None,
                tap_into=self.subjects,
                wall=self.clock,
            ),
            watch=store.watch(self._on_entry),
            deliveries=deliveries,
            janitor=Janitor(
                js,
                store,
                self.subjects,
                every_s=cfg.reconcile_every_s,
                clock=self.clock,
                on_retired=self._retired,
            ),
            silences=silences,
            silence_watch=silences.watch(self.silences.observe),
        )
        try:
            await parts.silence_watch.start()
            await parts.watch.start()
            # One catch-up at a time: the bucket's and the stream's together (1M records
            # and 1M beats) pass nats-server's max_pending for one connection (64 MB),
            # and it cuts the monitor off as a slow consumer, again at each retry.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(parts.watch.caught_up.wait(), cfg.catch_up_wait_s)
            await parts.ingestor.start()
        except (nats.errors.Error, TimeoutError, OSError) as e:
            await self.close()
            raise StoreError(f"cannot start consuming: {e or type(e).__name__}") from e
        log.info(
            "monitor %s: mirroring %s, consuming %s",
            cfg.replica_id,
            cfg.store.bucket,
            cfg.store.filter_subject,
        )

    @property
    def connection(self) -> NATS | None:
        """The connection in use (a new one after :meth:`run` replaced a closed one)."""
        return self._parts.nc if self._parts is not None else None

    async def run(self, stop: asyncio.Event, reconnect: Reconnect | None = None) -> None:
        """Campaign and tick until ``stop``; then hand over cleanly.

        ``reconnect`` makes a new connection (None: stopped first).  It is called when
        nats-py closes the connection for good (it does after a protocol error from
        the server, which reconnecting would not survive); the monitor is blind until
        the new connection has caught up.
        """
        self._reconnect = reconnect
        parts = self.parts
        await _wait_all(
            stop, parts.silence_watch.caught_up, parts.watch.caught_up, parts.ingestor.caught_up
        )
        if stop.is_set():
            return await self.close()
        self.subjects.schedule_deferred()
        self.ready_event.set()
        log.info(
            "monitor %s: caught up with %d subject(s), %d with a record",
            self.cfg.replica_id,
            *self.subjects.stats(),
        )
        campaign_stop = asyncio.Event()
        campaign = asyncio.create_task(parts.election.run(campaign_stop))
        while not stop.is_set():
            started = time.monotonic()
            tick = asyncio.ensure_future(self.tick())
            await wait_any(_done(tick), stop)
            if not tick.done():
                # A stop does not wait out a storm's tick: a commit cut short either
                # landed (its delivery is pending in KV for the next leader) or did not.
                tick.cancel()
                await asyncio.wait([tick], timeout=1.0)
                break
            if not tick.cancelled() and tick.exception() is not None:
                # The loop must go on; each subject's errors are handled inside.
                log.error("tick failed", exc_info=tick.exception())
            await self._sleep_after_tick(stop, started)
        # Hand over: send nothing more, let attempts under way finish, then step down.
        if self._replacing is not None:
            self._replacing.cancel()
        parts = self.parts
        await parts.deliveries.hand_over(2.0)
        if self.history is not None:
            await self.history.stop(2.0)  # what was decided is written before we go
        campaign_stop.set()
        await campaign
        await self.close()

    async def close(self) -> None:
        """Stop consuming (the connection is the caller's to close)."""
        if self._parts is None:
            return
        await self._parts.janitor.stop()
        await self._parts.ingestor.stop()
        await self._parts.watch.stop()
        await self._parts.silence_watch.stop()

    def _replace_if_closed(self) -> None:
        """Start replacing a connection nats-py closed for good (once at a time)."""
        nc = self.parts.nc
        if not nc.is_closed or self._reconnect is None or self._replacing is not None:
            return
        self._blinded(f"NATS connection closed: {nc.last_error or 'no reason given'}")
        self._replacing = asyncio.ensure_future(self._replace(self._reconnect))

    async def _replace(self, reconnect: Reconnect) -> None:
        try:
            await self.close()
            while True:
                nc = await reconnect()
                if nc is None:
                    return  # stopping
                try:
                    await self.start(nc)
                    break
                except StoreError as e:
                    log.warning("restarting on a new connection failed, retrying: %s", e)
                    await close_connection(nc)
                    await asyncio.sleep(1.0)
            self.sight.reconnected()
            log.info("monitor %s: on a new NATS connection", self.cfg.replica_id)
        except Exception:  # the next tick tries again
            log.exception("replacing the NATS connection failed")
        finally:
            self._replacing = None

    # ----- queries ---------------------------------------------------------------

    def leading(self) -> bool:
        return self._parts is not None and self._parts.election.leading()

    def judging(self) -> bool:
        """Leading, and caught up since this term began (so deciding)."""
        return self.leading() and self._terms_seen == self.parts.election.terms

    def kv_writes(self) -> int:
        """Compare-and-set writes made by this replica (decisions and deliveries)."""
        delivered = self._parts.deliveries.kv_writes if self._parts is not None else 0
        return self.counters.kv_writes + delivered

    def report(self, only: Filter | None = None) -> StatusReport:
        election = self._parts.election if self._parts is not None else None
        return build_report(
            self.subjects,
            self.clock(),
            monitor=self.cfg.replica_id,
            leader=self.leading(),
            leader_id=election.leader_id if election is not None else None,
            router=self.router if self.cfg.routes else None,
            only=only,
            hush_for=self.quieter.asking(),
            silences=[status_of(s) for s in self.silences.current(self.clock())],
        )

    async def read_history(self, query: HistoryQuery) -> list[Event]:
        """Events from the history stream (any replica can read it); StoreError if it
        cannot be read."""
        history = self.cfg.history
        if history is None or not history.enabled or self._parts is None:
            raise StoreError("history is off on this monitor")
        js = self._parts.nc.jetstream()
        return await read_history(js, history, query, self.clock(), timeout_s=5.0)

    def count_slice(self, tracks: Sequence[Track], now: float) -> Counts:
        """Health, quiet and routing counts of ``tracks`` (a slice of the Tally's pass)."""
        return Counts(
            health=health_counts(tracks, now),
            quiet=quiet_counts(tracks, now, self.quieter.asking()),  # none asked while idle
            unrouted=(
                sum(1 for t in tracks if self.router.route(t.subject).unrouted)
                if self.cfg.routes
                else 0
            ),
        )

    async def metrics(self) -> bytes:
        """The /metrics body: counts over every subject from the Tally (taken in slices,
        reused briefly), the rest read now."""
        return render(self.snapshot(await self.tally.counts()))

    def snapshot(self, counts: Counts | None = None) -> Snapshot:
        """Every figure for /metrics, at once (``counts``: a Tally's, else counted now)."""
        if counts is None:
            counts = self.count_slice(list(self.subjects.tracks.values()), self.clock())
        owed: Counter[str] = Counter()
        for subject in self.subjects.pending:
            rec = self.subjects.record(subject)
            owed.update(c for p in (rec.pending if rec else ()) for c in p.channels)
        owed.update(entry.channel for entry, _ in self.parts.deliveries.groups.values())
        parts = self.parts
        d = parts.deliveries
        return Snapshot(
            heartbeats=parts.ingestor.accepted,
            rejected=dict(parts.ingestor.rejected),
            subjects=counts.health,
            quiet=counts.quiet,
            deliveries=dict(d.results),
            retries=dict(d.retries),
            leader=self.leading(),
            lease_changes=parts.election.changes,
            consumer_lag=parts.ingestor.feed.last_pending,
            ready=self.ready()[0],
            kv_writes=self.kv_writes(),
            conflicts=self.counters.conflicts + d.conflicts,
            write_errors=self.counters.store_errors,
            ignored_records=self.subjects.ignored_records,
            refused_subjects=self.subjects.refused,
            held_alerts=self.judge.held_alerts,
            unrouted=counts.unrouted,
            tracked=len(self.subjects),
            tapped=parts.ingestor.tapped,
            pending=dict(owed),
            tick_buckets=tuple(self.tick_timer.buckets()),
            tick_total_s=self.tick_timer.total_s,
            history_events=dict(self.history.written) if self.history else {},
            history_errors=self.history.errors if self.history else 0,
        )

    def healthy(self) -> tuple[bool, str]:
        """Alive: the tick loop ran recently (or the monitor is still starting), and it
        has not been blind for longer than ``unhealthy_after_s``."""
        if self._last_tick is None:
            return True, "starting"
        age = time.monotonic() - self._last_tick
        if age > max(10.0, self.cfg.poll_s * 5):
            return False, f"evaluation loop stalled for {age:.0f}s"
        since = self.sight.blind_since
        if since is not None and self.clock() - since > self.cfg.unhealthy_after_s:
            return False, f"blind for {self.clock() - since:.0f}s (cannot see NATS)"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        """Ready: connected, bucket mirrored, stream caught up, not blind."""
        if self._parts is None or not self.ready_event.is_set():
            return False, "catching up"
        if not self._parts.nc.is_connected:
            return False, "NATS disconnected"
        if self.sight.blind:
            return False, "blind: catching up after an outage"
        return True, "ok"

    # ----- inputs ----------------------------------------------------------------

    def _on_entry(
        self, key: str, rec: Record | None, rev: int, data: bytes, headers: Headers
    ) -> None:
        parts = self.parts
        if key == LEASE_KEY:
            parts.election.observe(lease_view(data, headers, rev))
        elif key.startswith(GROUP_PREFIX):
            parts.deliveries.observe_group(key, data, headers, rev)
        elif key.startswith(RESERVED):
            return  # the monitor's own keys; none is a subject
        elif rec is not None:
            self.subjects.set_record(key, rec, rev)
        elif (t := self.subjects.get(key)) is not None and t.record is not None and rev > t.rev:
            log.info("record %s was deleted: retiring the subject", key)
            self._retired(key, t.rev, "record deleted")
            self.subjects.retire(key)
            parts.janitor.deleted(key)

    def _retired(self, subject: str, revision: int, why: str) -> None:
        """History: the leader records a retirement (named by the record's last revision,
        so the same whoever records it)."""
        if self.history is not None and self.leading():
            now = self.clock()
            self.history.record(
                [retired_event(subject, revision, monitor=self.cfg.replica_id, now=now, why=why)]
            )

    def _resume_history(self, now: float) -> None:
        """A new term: publish again the transitions still pending that a predecessor
        may have committed but not written (the stream drops those it did write)."""
        if self.history is None:
            return
        # Inside the duplicate window, with room for the time the publish takes.
        horizon = self.history.duplicate_window_s * 0.8
        records = (r for s in list(self.subjects.pending) if (r := self.subjects.record(s)))
        self.history.record(resumed(records, now, horizon))

    # ----- connection and sight --------------------------------------------------

    async def on_disconnect(self) -> None:
        self._blinded("NATS disconnected")

    async def on_reconnect(self) -> None:
        self.sight.reconnected()
        log.info("monitor %s: reconnected; catching up before judging", self.cfg.replica_id)

    def _blinded(self, why: str) -> None:
        if self.sight.blinded(self.clock(), leading=self.leading()):
            log.warning("monitor %s: blind (%s)", self.cfg.replica_id, why)
        self._eligible()

    def _eligible(self) -> None:
        # A blind replica neither holds nor seeks the lease, so one that sees leads.
        if self._parts is not None:
            self._parts.election.eligible = not self.sight.blind

    def _connected(self) -> bool:
        return self._parts is not None and bool(self._parts.nc.is_connected)

    async def _caught_up(self) -> bool:
        """Every feed says the server has nothing more to deliver.  Asked of all at once:
        a server that does not answer then costs one probe timeout a tick, not three."""
        counts = await asyncio.gather(*(f.pending(f.probe_timeout_s) for f in self._feeds()))
        return all(n == 0 for n in counts)

    async def _caught_up_with_term(self, term: int) -> bool:
        """Every feed has handled what its stream held when ``term`` began (its last
        sequence then), or has nothing more to deliver.  Beats keep coming at fleet size
        (10k a second at 100k subjects), so "nothing pending" alone may take many ticks
        to be seen at once on all three feeds; what was stored before the term is what
        a new leader must have seen.  A stream that did not say (each stream elects its
        own leader, and one lost with a node answers nothing) is asked again the next
        tick; a later answer can only ask for more."""
        feeds = self._feeds()
        if self._term_targets[0] != term:
            self._term_targets = (term, [None] * len(feeds))
        answers = await asyncio.gather(
            *(f.has_handled(t) for f, t in zip(feeds, self._term_targets[1], strict=True))
        )
        self._term_targets = (term, [target for _, target in answers])
        return all(done for done, _ in answers)

    def _feeds(self) -> tuple[Feed, Feed, Feed]:
        """What a replica reads: the beats, the state bucket, the silences bucket."""
        return (self.parts.ingestor.feed, self.parts.watch, self.parts.silence_watch)

    async def _check_sight(self, now: float) -> None:
        """Once per tick: blind notice, sight restored, or a stall check."""
        sight = self.sight
        if sight.blind_since is not None:
            blind_since = sight.blind_since
            if sight.blind_notice_due(now):
                await self._notice(EventKind.BLIND, blind_since, now)
            if sight.may_restore(connected=self._connected()) and await self._caught_up():
                blind_for, notify = sight.restored(now)
                self.subjects.sight_since = now
                self._eligible()
                log.info(
                    "monitor %s: sight restored after %.1fs; subjects need a full window of "
                    "silence from now before they alert",
                    self.cfg.replica_id,
                    blind_for,
                )
                if notify:
                    await self._notice(EventKind.SIGHT_RESTORED, blind_since, now)
            return
        if sight.stall_check_due(time.monotonic(), connected=self._connected()):
            feed = self.parts.ingestor.feed
            pending = await feed.pending()
            if sight.stall_sample(now, pending, feed.last_stream_seq, leading=self.leading()):
                log.warning(
                    "monitor %s: blind (heartbeat consumer stalled, %s message(s) pending)",
                    self.cfg.replica_id,
                    pending,
                )
                self._eligible()

    async def _check_capacity(self, now: float) -> None:
        """New subjects past --max-subjects: a line every 10 s at most, one notice."""
        refused = self.subjects.refused
        if refused == self._refused_logged:
            return
        if self._capacity_log.log(
            "capacity",
            logging.WARNING,
            "monitor %s tracks %d subjects (--max-subjects): %d beat(s) of new subjects "
            "refused so far, e.g. %s",
            self.cfg.replica_id,
            len(self.subjects),
            refused,
            for_log(self.subjects.first_refused),
        ):
            self._refused_logged = refused
        if not self._capacity_told:
            self._capacity_told = True
            notice = capacity_notice(self.cfg.replica_id, self.cfg.max_subjects, refused, now)
            await fan_out(
                list(self.notifiers.values()), notice, deadline_s=self.cfg.delivery_deadline_s
            )

    async def _notice(self, kind: EventKind, blind_since: float, now: float) -> None:
        """Blind notices go straight to the channels: notifiers do not need NATS."""
        notice = monitor_notice(kind, self.cfg.replica_id, blind_since, now)
        log.warning("monitor %s: sending %s notice", self.cfg.replica_id, kind)
        await fan_out(
            list(self.notifiers.values()), notice, deadline_s=self.cfg.delivery_deadline_s
        )

    async def _sleep_after_tick(self, stop: asyncio.Event, started: float) -> None:
        """Wait for the next tick: until the poll, or a deadline that comes sooner (also
        one scheduled while waiting: a new subject's, an alert's repeat), or the start of
        a term (a standby that wins the lease judges at once)."""
        schedule, election = self.subjects.schedule, self.parts.election
        sooner = asyncio.Event()
        schedule.on_sooner = election.on_lead = sooner.set
        try:
            while not stop.is_set():
                wait = self._until_next_tick(time.monotonic() - started)
                if wait <= 0:
                    return
                sooner.clear()
                schedule.alarm = self.clock() + wait if self.leading() else -math.inf
                await wait_any(sooner, stop, within_s=wait)
                if not sooner.is_set():
                    return
        finally:
            schedule.alarm, schedule.on_sooner, election.on_lead = -math.inf, None, None

    def _until_next_tick(self, elapsed: float) -> float:
        """Seconds to wait after a tick that took ``elapsed``: the poll, or less when the
        leader has a deadline sooner (an alert then waits for its deadline, not for the
        next poll); never under MIN_TICK_GAP_S since the last tick began, since at 1M
        subjects some deadline is due nearly all the time."""
        wait = self.cfg.poll_s - elapsed
        if self.leading():
            ahead = self.subjects.schedule.next_due() - self.clock()
            wait = min(wait, max(ahead, MIN_TICK_GAP_S - elapsed))
        return wait

    # ----- evaluation ------------------------------------------------------------

    async def tick(self) -> None:
        """Evaluate what is due, commit decisions, (re)start pending deliveries."""
        self._last_tick = time.monotonic()
        now = self.clock()
        self._replace_if_closed()
        if (woken := self.silences.take_changed()) is not None:
            self.subjects.wake(woken)  # a silence or pause began, ended or changed
        await self._check_sight(now)
        if not self._connected() or self.sight.blind:
            return
        if not self.leading():
            await self._refresh_schedule(now)
            return
        term = self.parts.election.terms  # once: a term may end and begin during the check
        if term != self._terms_seen:
            if not await self._caught_up_with_term(term):
                return  # a new leader judges nothing before it has seen everything
            self._terms_seen = term
            log.info("monitor %s leads; caught up, evaluating", self.cfg.replica_id)
            self._resume_history(now)
        await self._check_capacity(now)
        await self._purge_silences(now)
        started = time.perf_counter()
        await self._evaluate_due(now)
        self.tick_timer.observe(time.perf_counter() - started)

    async def _refresh_schedule(self, now: float) -> None:
        """A standby keeps its schedule true for a takeover (Subjects.refresh), in slices
        with a yield between: at 1M subjects one 100k pass held the loop ~1.2 s, and the
        lease read of a takeover waited behind it.  A slice that settles nothing (what is
        left is due in truth: the leader's to judge) or finds nothing more due ends the
        upkeep for this tick."""
        for _ in range(REFRESH_SLICES):
            if not self.subjects.refresh(now, REFRESH_SLICE):
                return
            await asyncio.sleep(0)

    async def _purge_silences(self, now: float) -> None:
        """Now and then, remove silences that ended long ago (heartbeat.silences)."""
        if now - self._silences_purged < self.cfg.purge_silences_every_s:
            return
        self._silences_purged = now
        for key, rev in self.silences.purgeable(now):
            try:
                if await self.parts.silences.purge(key, rev):
                    log.info("purged silence %s (ended over a week ago)", key)
            except StoreError as e:
                log.warning("purging silence %s failed: %s", key, e)
                return

    async def _evaluate_due(self, now: float) -> None:
        parts = self.parts
        parts.janitor.kick()
        feed = parts.ingestor.feed
        # A catch-up hands over the last beat per subject only: no proof before its end.
        handled_to = feed.handled_to_ns / 1e9 if feed.caught_up.is_set() else 0.0
        await self.judge.judge_due(now, parts.store, feed.unhandled, handled_to)
        for subject in list(self.subjects.pending):
            parts.deliveries.start(subject)
        parts.deliveries.flush()


def _done(task: asyncio.Future[None]) -> asyncio.Event:
    """An event set when ``task`` finishes."""
    event = asyncio.Event()
    task.add_done_callback(lambda _: event.set())
    return event


async def _wait_all(stop: asyncio.Event, *events: asyncio.Event) -> None:
    """Wait until every event is set, or until ``stop`` is."""
    for event in events:
        if not stop.is_set():
            await wait_any(event, stop)
