"""The one owner of per-subject state on a replica: tracks, deadlines, news.

Every subject a replica knows has one :class:`Track` (its committed record, its
newest beat and its live deadline), held in :class:`Subjects` beside the
:class:`Schedule` of deadlines and the sets of subjects with news (``dirty``) and
with deliveries still owed (``pending``).  Only valid heartbeat subjects enter the
table: the ingestor relies on it to skip re-checking names it has seen.
Nothing here does I/O; the monitor's loop and the watch feed it.
"""

from __future__ import annotations

import dataclasses
import heapq
import logging
import math
import operator
import sys
from collections import deque
from collections.abc import Callable, Container, Iterator, Sequence

import msgspec

from heartbeat.durations import SECOND
from heartbeat.engine import (
    NEVER,
    Beat,
    EngineConfig,
    Record,
    alerting,
    merged,
    meta_differs,
    next_due,
)
from heartbeat.routing import Router
from heartbeat.schema import is_valid_subject

log = logging.getLogger(__name__)


class Track(msgspec.Struct, gc=False, eq=False):
    """What one replica holds about one subject, in one object (one dict lookup).

    ``record`` and ``rev``: the committed KV record and its revision (None, 0 before
    the monitor has one); ``beat``: the newest heartbeat from the stream; ``due``:
    its live deadline in the :class:`Schedule` (None when unscheduled; only the
    schedule sets it).  ``eq=False``: compared by identity, and ordered by subject,
    so heap entries with equal deadlines compare cheaply.
    """

    subject: str
    record: Record | None = None
    rev: int = 0
    beat: Beat | None = None
    due: float | None = None

    def __lt__(self, other: Track) -> bool:
        return self.subject < other.subject

    @property
    def held(self) -> tuple[Record, int] | None:
        return None if self.record is None else (self.record, self.rev)

    def view(self) -> Record:
        """The subject as it stands: the record with the newest beat folded in."""
        return merged(self.record, self.beat, self.subject)


_subject = operator.attrgetter("subject")


class Entry(msgspec.Struct, order=True, gc=False):
    """A deadline in the heap: ordered by ``due``, then by the track (its subject).
    Not a tuple: 32 bytes instead of 56 (no GC header, no length), compared in C."""

    due: float
    track: Track


COMPACT_MIN = 1024  # stale heap entries tolerated beyond the live ones before a compaction
NEXT_DUE_SCAN = 1024  # stale heap entries Schedule.next_due drops per call, at most


class Schedule:
    """Deadlines of tracks in a heap; at most one live deadline per track.

    ``push`` records a deadline; an earlier deadline replaces a later one, a later
    one is kept lazily (the early entry pops, the caller re-evaluates and pushes
    the true deadline).  The live deadline is the track's ``due``, so whether a
    subject is scheduled is an attribute read, with no table of its own.
    ``pop_due(now)`` costs O(log n) per due track and O(1) when nothing is due,
    whatever the number of tracks.
    """

    def __init__(self) -> None:
        self._heap: list[Entry] = []
        self._live = 0
        # The loop's next tick (clock time); a deadline pushed before it calls on_sooner
        # once (the monitor's loop then sleeps less).  -inf: nobody waits for deadlines.
        self.alarm = -math.inf
        self.on_sooner: Callable[[], None] | None = None

    def _sooner(self, due: float) -> None:
        if due < self.alarm and self.on_sooner is not None:
            self.alarm = due
            self.on_sooner()

    def __len__(self) -> int:
        return self._live

    def push(self, track: Track, due: float) -> None:
        if due == NEVER:
            return
        current = track.due
        if current is not None and current <= due:
            return
        if current is None:
            self._live += 1
        track.due = due
        heapq.heappush(self._heap, Entry(due, track))
        if current is not None:
            self._stale()
        if due < self.alarm:
            self._sooner(due)

    def move(self, track: Track, due: float) -> None:
        """Replace a scheduled track's deadline by ``due`` (later or earlier); the old
        heap entry stays behind, stale, and is skipped when it pops."""
        if track.due is None:
            self.push(track, due)
        elif due == NEVER:
            self.discard(track)
        elif due != track.due:
            track.due = due
            heapq.heappush(self._heap, Entry(due, track))
            self._stale()
            if due < self.alarm:
                self._sooner(due)

    def discard(self, track: Track) -> None:
        if track.due is not None:
            track.due = None
            self._live -= 1
            self._stale()

    def _stale(self) -> None:
        """Compact the heap once stale entries (left by ``move``, an earlier ``push``,
        ``discard``) pass half the live ones: each is an entry, a float and a slot, ~64
        bytes, held until its deadline pops, which for a deadline moved away can be
        hours (a replica that loaded old records moves every subject's once).  O(n)
        at most once per n/2 stale entries made: O(1) amortized."""
        live = self._live
        if len(self._heap) - live > live // 2 + COMPACT_MIN:
            self.compact()

    def compact(self) -> None:
        """Drop every stale entry (one live entry per scheduled track is kept)."""
        seen: set[int] = set()
        live = []
        for entry in self._heap:
            track = entry.track
            if track.due == entry.due and id(track) not in seen:
                seen.add(id(track))
                live.append(entry)
        heapq.heapify(live)
        self._heap = live

    def next_due(self) -> float:
        """The next live deadline; or, while over :data:`NEXT_DUE_SCAN` stale entries
        lead the heap, the first remaining one's: earlier than any live deadline, so a
        caller that wakes then finds nothing due and pops them in its tick.  Bounded:
        ~460k stale entries led the heap after a 1M start-up, and dropping them all here
        held a new leader's loop 0.6 s before its first tick."""
        heap = self._heap
        for _ in range(NEXT_DUE_SCAN):
            if not heap:
                return NEVER
            entry = heap[0]
            if entry.track.due == entry.due:
                return entry.due
            heapq.heappop(heap)
        return heap[0].due if heap else NEVER

    def pop_due(self, now: float, limit: int | None = None) -> list[Track]:
        """Tracks whose deadline is <= now, removed from the schedule; at most ``limit``
        heap entries are examined (see :meth:`pop_scan`)."""
        return self.pop_scan(now, limit)[0]

    def pop_scan(self, now: float, limit: int | None = None) -> tuple[list[Track], int]:
        """Tracks whose deadline is <= now, removed from the schedule, and how many heap
        entries were examined: at most ``limit``, stale ones included, so one call's cost
        is bounded however many stale entries lead the heap (a replica that loaded 1M
        records and then their beats held ~460k, and popping them in one call held the
        loop over a second)."""
        out: list[Track] = []
        heap = self._heap
        examined = 0
        while heap and heap[0].due <= now and (limit is None or examined < limit):
            entry = heapq.heappop(heap)
            examined += 1
            track = entry.track
            if track.due == entry.due:
                track.due = None
                out.append(track)
        self._live -= len(out)
        return out, examined


Held = tuple[Record, int] | None
CHECKPOINTS_PER_S = 500.0  # healthy subjects' last_seen writes, at most, whatever the fleet
CREATES_PER_S = 500.0  # first records of healthy new subjects, at most (a burst queues)


def checkpoint_period(base_s: float, subjects: int) -> float:
    """How often a healthy subject's last_seen is saved: ``base_s``, doubled until the
    whole fleet's checkpoints stay under :data:`CHECKPOINTS_PER_S` (1M subjects at a
    60 s base: every 3840 s).  The stream holds every subject's newest beat anyway."""
    period = base_s
    while period > 0 and subjects / period > CHECKPOINTS_PER_S:
        period *= 2
    return period


def create_allowance(tokens: float, last: float | None, now: float, rate: float) -> float:
    """First records the leader may start at ``now``: a token bucket holding at most one
    second's worth (``rate``), refilled since ``last`` (None: a full bucket)."""
    burst = max(1.0, rate)
    if last is None:
        return burst
    return min(burst, tokens + max(0.0, now - last) * rate)


def _share_beat(rec: Record, beat: Beat) -> None:
    """Point ``rec`` at the beat's objects where they are equal: a record checkpointed
    from the beat the stream still holds (the echo of the leader's own write, records
    loaded at start-up) would keep a second copy of its time and ``generated_at``
    (~100 bytes a subject).  Equal values only: the record is the same value after."""
    if rec.generated_at == beat.generated_at:
        rec.generated_at = beat.generated_at
    if rec.last_seen == beat.last_seen and rec.last_seen > 0:  # 0.0 and -0.0 alike
        rec.last_seen = beat.last_seen
    if rec.description == beat.description:
        rec.description = beat.description


class Subjects:
    """Tracks by subject, their schedule, and which subjects need the loop's attention.

    ``dirty``: subjects with news (a first beat, changed facts, a beat during an
    alert, a lost write) to evaluate at the next tick.  ``pending``: subjects whose
    committed record still owes deliveries.  ``sight_since``: the end of the last
    blind period, which deadlines count from (set by the monitor).
    """

    def __init__(
        self,
        engine: EngineConfig,
        *,
        max_subjects: int = 1_000_000,
        router: Router | None = None,
    ) -> None:
        self.engine = engine
        self.router = router
        self._engines: dict[tuple[float | None, float], EngineConfig] = {}
        self.max_subjects = max_subjects
        self.refused = 0  # beats of new subjects past max_subjects, counted, not tracked
        self.first_refused = ""
        self.tracks: dict[str, Track] = {}
        self.schedule = Schedule()
        self.dirty: set[str] = set()
        self.pending: set[str] = set()
        # Subjects whose committed record alerts (health ALERT): ?state=alert at 1M
        # subjects reads these instead of passing over every track (~160 ms).
        self.alerting: set[str] = set()
        self.unrecorded: deque[str] = deque()
        self.sight_since = 0.0
        self.ignored_records = 0  # under keys that are not heartbeat subjects
        self.retired = 0
        # Subjects whose beats someone else must see (dependency parents: their beat,
        # or their retirement, wakes the dependents they keep quiet); checked on every
        # beat, so a set.  Called with (subject, previous beat, new beat or None: gone).
        self.watched: Container[str] = frozenset()
        self.on_watched: Callable[[str, Beat | None, Beat | None], None] | None = None
        # New subjects known from a core subscription (heartbeat.ingest's tap) whose
        # stream copy has not come yet: that copy replaces their beat, older or not.
        # Each holds a hash of the payload the tap saw, so an identical copy needs no
        # decoding.  A hash, not the bytes: while the stream lags behind a flood of new
        # subjects, up to --max-subjects payloads of up to --max-payload would wait here.
        # (bytes hashes are keyed per process, so a publisher cannot aim for a collision.)
        self.tapped: dict[str, int] = {}
        # Every track by subject, kept once the status answer asks (in_order): ~8 bytes a
        # subject, so that a GET / does not sort all of them again (subjects come in no
        # order: ~25 ms at 100k).  A new one goes at the end and the next ask sorts the
        # nearly sorted list (a merge); one that leaves drops it (None: rebuilt).
        self._order: list[Track] | None = None
        self._order_sorted = True
        # While a first start-up loads the bucket (see defer_scheduling): records do
        # not schedule a track that has no deadline yet.
        self._deferring = False

    def __len__(self) -> int:
        return len(self.tracks)

    def __iter__(self) -> Iterator[Track]:
        return iter(self.tracks.values())

    @property
    def known(self) -> Container[str]:
        """Subjects already admitted (each a valid subject), for the ingestor."""
        return self.tracks

    def get(self, subject: str) -> Track | None:
        return self.tracks.get(subject)

    def in_order(self) -> list[Track]:
        """Every track, in subject order (the caller must not change the list)."""
        order = self._order
        if order is None or len(order) != len(self.tracks):
            order = self._order = sorted(self.tracks.values(), key=_subject)
        elif not self._order_sorted:
            order.sort(key=_subject)
        self._order_sorted = True
        return order

    def _added(self, track: Track) -> None:
        if self._order is not None:
            self._order.append(track)
            self._order_sorted = False

    def held(self, subject: str) -> Held:
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

    # ----- inputs --------------------------------------------------------------------

    def on_beat(self, subject: str, beat: Beat) -> None:
        """Every valid beat comes here (the hot path: one table lookup, no allocation)."""
        track = self.tracks.get(subject)
        if track is None:
            if len(self.tracks) >= self.max_subjects:
                self.refused += 1
                self.first_refused = self.first_refused or subject
                return
            if beat.job is None:
                self._admit(subject, beat)
            else:
                subject = sys.intern(subject)
                self.tracks[subject] = track = Track(subject=subject, beat=beat)
                self._added(track)
                self.dirty.add(subject)  # a job's runs fold from every beat: record it now
            return
        prev = track.beat
        if (
            prev is not None
            and beat.last_seen <= prev.last_seen
            and not (self.tapped and subject in self.tapped)
        ):
            return
        if self.tapped:
            self._untap(subject)
        track.beat = beat
        if subject in self.watched and self.on_watched is not None:
            self.on_watched(subject, prev, beat)
        rec = track.record
        if rec is None:
            if beat.job is not None:
                self.dirty.add(subject)
            else:
                self._after(track, beat)  # its first record is queued in unrecorded
        elif rec.alert_active or meta_differs(rec, beat):
            self.dirty.add(subject)
        elif beat.job is not None and (beat.job.kind != "beat" or rec.job is None):
            self.dirty.add(subject)  # a job's start or end: rare, always decided and saved
        else:
            self._after(track, beat)

    def _admit(self, subject: str, beat: Beat) -> Track:
        """A new subject's track from its first plain beat.  Nothing to commit yet (the
        stream keeps this beat): its deadline, and a place in the queue for a first
        record."""
        subject = sys.intern(subject)  # one string per subject, shared with its record
        self.tracks[subject] = track = Track(subject=subject, beat=beat)
        self._added(track)
        self.unrecorded.append(subject)
        self.schedule.push(track, self.due_of(track))
        return track

    def on_tapped(self, subject: str, beat: Beat, data: bytes) -> bool:
        """A plain beat of a subject not known yet, seen before the stream delivered it
        (its time is when this replica received it; ``data``: its payload); its stream
        copy replaces it.  Whether it was admitted."""
        if subject in self.tracks or beat.job is not None or len(self.tracks) >= self.max_subjects:
            return False  # the stream's copy decides (and counts a refusal once)
        self.tapped[self._admit(subject, beat).subject] = hash(data)
        return True

    def _untap(self, subject: str) -> None:
        """``subject`` no longer waits for its stream copy."""
        tapped = self.tapped
        if tapped.pop(subject, None) is not None and not tapped:
            tapped.clear()  # frees the table: a burst's 100k entries are ~5 MB

    def confirm_tapped(self, subject: str, data: bytes, last_seen: float) -> bool:
        """The stream's copy of a tapped beat, if its payload is the one the tap saw
        (then it is that beat at the server's time, decoded once); whether it was."""
        if self.tapped.get(subject) != hash(data):
            return False
        track = self.tracks[subject]  # a tapped subject is tracked (_drop forgets it)
        assert track.beat is not None
        self.on_beat(subject, msgspec.structs.replace(track.beat, last_seen=last_seen))
        return True

    def due_of(self, track: Track) -> float:
        """``next_due`` of the track's view, without building the view for a plain
        heartbeat that is not alerting: at a million subjects, start-up and a standby's
        upkeep ask this of every subject, and a view is a new record each time.  Any
        route or fleet size gives the same answer: they change repeats and checkpoints,
        not the tolerance."""
        rec, beat = track.record, track.beat
        if (beat is None or beat.job is None) and (
            rec is None or (rec.job is None and not rec.alert_active)
        ):
            if beat is not None and (rec is None or beat.last_seen > rec.last_seen):
                seen: Beat | Record = beat
            elif rec is not None:
                seen = rec
            else:
                return NEVER  # an empty track (none is kept): what next_due says of it
            if seen.interval_ns <= 0:
                return NEVER
            return (
                max(seen.last_seen, self.sight_since)
                + seen.window_ns / SECOND
                + self.engine.tolerance_s
            )
        return next_due(track.view(), self.engine_for(track.subject), self.sight_since)

    def _after(self, track: Track, beat: Beat) -> None:
        """Schedule a steady beat's subject.  A deadline already set and still ahead of
        the beat is left alone (the early entry pops, the engine finds nothing to do
        and pushes the true one); one the beat has passed is moved now, so a replica
        that loaded old records (start-up, a standby taking over) does not evaluate
        every subject in its first tick."""
        due = track.due
        if due is None:
            self._schedule(track)
        elif due < beat.last_seen:
            self.schedule.move(track, self.due_of(track))

    def _schedule(self, track: Track) -> None:
        self.schedule.push(track, self.due_of(track))

    def engine_for(self, subject: str) -> EngineConfig:
        """The rules for ``subject``: the monitor's, with its route's repeat interval and
        the checkpoint period for the fleet's size (:func:`checkpoint_period`)."""
        repeat = None
        if self.router is not None and self.router.routes:
            repeat = self.router.route(subject).repeat_every_s
        period = checkpoint_period(self.engine.checkpoint_every_s, len(self.tracks))
        if repeat is None and period == self.engine.checkpoint_every_s:
            return self.engine
        key = (repeat, period)
        got = self._engines.get(key)
        if got is None:
            got = self._engines[key] = dataclasses.replace(
                self.engine,
                repeat_every_s=self.engine.repeat_every_s if repeat is None else repeat,
                checkpoint_every_s=period,
            )
        return got

    def channels_for(self, subject: str, default: Sequence[str]) -> Sequence[str]:
        """The channels ``subject``'s notifications go to (``default`` without routes)."""
        return default if self.router is None else self.router.route(subject).channels

    def hold(self, subject: str, held: Held) -> None:
        """What the bucket holds for ``subject`` now (None: no record)."""
        if held is None:
            self.forget_record(subject)
        else:
            self.set_record(subject, *held)

    def set_record(self, subject: str, rec: Record, rev: int) -> None:
        """Hold ``rec`` (KV revision ``rev``) as the subject's committed record."""
        track = self.tracks.get(subject)
        if track is None:
            if not is_valid_subject(subject):
                # No monitor writes such a key, and no beat can ever arrive for it.
                self.ignored_records += 1
                log.warning("ignoring record %s: not a valid heartbeat subject", subject)
                return
            self.tracks[subject] = track = Track(subject=subject)
            self._added(track)
        elif track.record is not None and track.rev >= rev:
            return  # what we hold already (our own write's echo), or older
        if rec.subject != subject:  # written by hand: the key is what the record is about
            log.warning("record %s names subject %r; using the key", subject, rec.subject)
            rec = msgspec.structs.replace(rec, subject=track.subject)
        if track.beat is not None:
            _share_beat(rec, track.beat)
        track.record, track.rev = rec, rev
        if rec.pending:
            self.pending.add(subject)
        else:
            self.pending.discard(subject)
        if alerting(rec):
            self.alerting.add(track.subject)
        else:
            self.alerting.discard(subject)
        if track.due is not None or not self._deferring:
            self._schedule(track)

    def defer_scheduling(self) -> None:
        """Until :meth:`schedule_deferred`, a record does not schedule a track with no
        deadline yet; its first beat does (or that call).

        For a first start-up, before anything is judged: the stream's catch-up brings a
        newer beat for most subjects, and each would move the deadline its record set
        (at 1M subjects, ~half a million moves, as many stale heap entries and a
        compaction, ~10% of the start-up)."""
        self._deferring = True

    def schedule_deferred(self) -> int:
        """Schedule every track still without a deadline (and stop deferring); how many
        were looked at.  One pass over the tracks, before the first tick."""
        self._deferring = False
        waiting = [t for t in self.tracks.values() if t.due is None]
        for track in waiting:
            self._schedule(track)
        return len(waiting)

    def forget_record(self, subject: str) -> None:
        self.pending.discard(subject)
        self.alerting.discard(subject)
        track = self.tracks.get(subject)
        if track is not None:
            track.record, track.rev = None, 0
            if track.beat is None:
                self._drop(track)

    def forget_beat(self, subject: str) -> None:
        """Forget the subject's beat (purged from the stream), keeping its record."""
        self._untap(subject)
        track = self.tracks.get(subject)
        if track is not None:
            track.beat = None
            if track.record is None:
                self._drop(track)

    def retire(self, subject: str) -> None:
        """Forget everything about ``subject`` (its record and stream beat are gone)."""
        self.pending.discard(subject)
        track = self.tracks.get(subject)
        if track is not None:
            self._drop(track)
        self.retired += 1

    def _drop(self, track: Track) -> None:
        if track.subject in self.watched and self.on_watched is not None:
            self.on_watched(track.subject, track.beat, None)
        del self.tracks[track.subject]
        self._order = None
        self.alerting.discard(track.subject)
        self._untap(track.subject)
        self.schedule.discard(track)
        self.dirty.discard(track.subject)
        track.record = track.beat = None  # stale heap entries may refer to it a while

    # ----- the loop's view -------------------------------------------------------------

    def take_due(self, now: float, limit: int | None = None) -> list[str]:
        """Subjects to evaluate now: deadlines passed (at most ``limit`` heap entries
        examined; the rest stay due), then news; each once.  A deadline that passed
        only because steady beats left it early gets the true one here, without an
        evaluation (at 1M subjects beating every minute: 16k a second)."""
        popped = self.schedule.pop_due(now, limit)
        due = [t.subject for t in popped if not self._moved_on(t, now)]
        if self.dirty:
            due.extend(self.dirty)
            self.dirty.clear()
        return list(dict.fromkeys(due))

    def _moved_on(self, track: Track, now: float) -> bool:
        """Reschedule ``track`` if the engine has nothing to decide for it: healthy, a
        newer beat with the same facts, no checkpoint due, no job, nothing owed."""
        rec, beat = track.record, track.beat
        if (
            rec is None
            or beat is None
            or rec.alert_active
            or rec.pending
            or rec.job is not None
            or beat.job is not None
            or beat.last_seen <= rec.last_seen
            or meta_differs(rec, beat)
        ):
            return False
        engine = self.engine_for(track.subject)
        if beat.last_seen - rec.last_seen >= engine.checkpoint_every_s:
            return False  # a checkpoint: the engine writes it
        due = self.due_of(track)
        if due <= now:
            return False
        self.schedule.push(track, due)
        return True

    def refresh(self, now: float, limit: int = 100_000) -> bool:
        """A standby's upkeep of the schedule: deadlines passed only because steady beats
        do not move a deadline (the leader's evaluations would) get the true one, so a
        replica that takes over does not evaluate every subject in its first tick.  Ones
        still due are put back for the leader to come.  At most ``limit`` heap entries
        are examined; whether more may need it (all ``limit`` were examined and some
        deadline moved or stale entry went: what follows may be early too)."""
        tracks, examined = self.schedule.pop_scan(now, limit)
        settled = examined - len(tracks)  # stale entries dropped
        for track in tracks:
            due = self.due_of(track)
            self.schedule.push(track, due)
            settled += due > now
        return examined == limit and settled > 0

    def take_unrecorded(self, n: int) -> list[str]:
        """Up to ``n`` subjects, oldest first, still without a record: to give one."""
        out: list[str] = []
        queue, tracks = self.unrecorded, self.tracks
        while queue and len(out) < n:
            subject = queue.popleft()
            track = tracks.get(subject)
            if track is not None and track.record is None:
                out.append(subject)
        return out

    def later(self, subject: str) -> None:
        """Evaluate ``subject`` again at the next tick."""
        if subject in self.tracks:
            self.dirty.add(subject)

    def wake(self, match: Callable[[str], bool]) -> int:
        """Evaluate every subject ``match`` accepts at the next tick (a silence added
        or lifted, a parent back: what keeps them quiet changed); how many."""
        woken = [s for s in self.tracks if match(s)]
        self.dirty.update(woken)
        return len(woken)

    def push(self, track: Track, due: float) -> None:
        self.schedule.push(track, due)

    def stats(self) -> tuple[int, int]:
        """(subjects, subjects with a record)."""
        return len(self.tracks), sum(1 for t in self.tracks.values() if t.record is not None)
