"""The pure alert engine: from (record, last beat, now) to what should happen.

Nothing here touches asyncio, NATS, HTTP, the clock or the environment: ``now`` is
a parameter, so every rule is testable as a table.  The monitor carries out what
:func:`evaluate` returns (a record to commit with compare-and-set, perhaps with a
notification to deliver) and asks again at the returned deadline.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import msgspec

from heartbeat.durations import SECOND
from heartbeat.notification import EventKind, Notification

NEVER = math.inf
_DURATIONS: dict[int, int] = {}


def shared_ns(ns: int) -> int:
    """The one int object for a duration: intervals repeat across subjects, and each
    int past 2**30 is a 32-byte object of its own (two per subject: record and beat)."""
    got = _DURATIONS.get(ns)
    if got is None:
        if len(_DURATIONS) >= 4096:
            _DURATIONS.clear()
        _DURATIONS[ns] = got = ns
    return got


@dataclass(frozen=True)
class EngineConfig:
    """The alerting rules; durations in seconds."""

    repeat_every_s: float = 12 * 3600.0
    tolerance_s: float = 1.0
    checkpoint_every_s: float = 60.0


class Pending(msgspec.Struct, kw_only=True):
    """A committed notification and the channels that still have to deliver it."""

    notification: Notification
    channels: list[str]


class Record(msgspec.Struct, kw_only=True, omit_defaults=True, gc=False):
    """The per-subject state kept in the KV bucket (one key per subject).

    Times are epoch seconds (``last_seen`` is the JetStream server timestamp of the
    last beat, checkpointed), durations integer nanoseconds as on the wire.

    ``gc=False``: a record holds only strings, numbers and its ``pending`` list (of
    notifications: strings and numbers again), so it can never be part of a reference
    cycle; leaving 100k records out of the cycle collector saves 16 bytes each and
    keeps full collections short.
    """

    subject: str
    description: str = ""
    host: str = ""
    interval_ns: int = 0
    grace_ns: int | None = None
    last_seen: float = 0.0
    generated_at: str = ""
    alert_active: bool = False
    alert_id: str = ""
    alert_since: float | None = None
    alert_last_seen: float | None = None
    last_notified: float | None = None
    notify_count: int = 0
    pending: list[Pending] = []
    updated_by: str = ""

    @property
    def window_ns(self) -> int:
        return self.grace_ns if self.grace_ns else self.interval_ns


class Job(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """The job fields of a beat (wire rules: heartbeat.schema, docs "Job beats");
    durations in integer nanoseconds, truncated to microseconds as ``interval_ns``."""

    kind: str = "beat"
    run_id: str = ""
    exit_code: int | None = None
    duration_ns: int | None = None
    output: str = ""
    schedule: str = ""
    timezone: str = ""
    max_runtime_ns: int | None = None


class Beat(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """The newest heartbeat seen on the stream for a subject.

    ``gc=False``: only strings and numbers, so no reference cycle; allocated outside
    the cycle collector, one is made per heartbeat without triggering collections.
    """

    last_seen: float
    interval_ns: int
    grace_ns: int | None
    host: str
    description: str
    generated_at: str
    job: Job | None = None  # None for a plain beat (one slot, not eight, per subject)

    @property
    def window_ns(self) -> int:
        return self.grace_ns if self.grace_ns else self.interval_ns


class Health(StrEnum):
    OK = "ok"
    LATE = "late"
    ALERT = "alert"


@dataclass(frozen=True)
class Outcome:
    """What to do for one subject: ``record`` to commit (None: nothing to write),
    ``notification`` committed with it (as pending), and when to look again."""

    record: Record | None
    notification: Notification | None
    due: float


def merged(rec: Record | None, beat: Beat | None, subject: str) -> Record:
    """The record with the newest beat's facts folded in (not yet written)."""
    base = rec if rec is not None else Record(subject=subject)
    if beat is None or beat.last_seen <= base.last_seen:
        return base
    return msgspec.structs.replace(
        base,
        last_seen=beat.last_seen,
        interval_ns=beat.interval_ns,
        grace_ns=beat.grace_ns,
        host=beat.host,
        description=beat.description,
        generated_at=beat.generated_at,
    )


def meta_differs(a: Record, b: Record | Beat) -> bool:
    """Whether the facts a heartbeat declares (interval, grace, host, description) differ."""
    return (  # not tuples: this runs for every beat
        a.interval_ns != b.interval_ns
        or a.grace_ns != b.grace_ns
        or a.host != b.host
        or a.description != b.description
    )


def _notification(
    rec: Record, kind: EventKind, now: float, monitor: str, missed_for_s: float
) -> Notification:
    interval_s = rec.interval_ns / SECOND
    return Notification(
        event=kind,
        subject=rec.subject,
        description=rec.description or rec.subject,
        host=rec.host,
        last_seen=rec.last_seen or None,
        interval_ns=rec.interval_ns,
        window_ns=rec.window_ns,
        missed_for_ns=max(0, round(missed_for_s * SECOND)),
        miss_count=int(missed_for_s // interval_s) if interval_s > 0 else 0,
        alert_id=rec.alert_id,
        notification_id=f"{rec.alert_id}-{rec.notify_count}",
        created_at=now,
        monitor=monitor,
    )


def _with_notification(
    rec: Record,
    kind: EventKind,
    now: float,
    monitor: str,
    channels: Sequence[str],
    missed_for_s: float,
) -> tuple[Record, Notification]:
    """Commit ``kind``: bump the count, stamp last_notified, queue a pending delivery."""
    rec = msgspec.structs.replace(rec, notify_count=rec.notify_count + 1, last_notified=now)
    n = _notification(rec, kind, now, monitor, missed_for_s)
    if not channels:  # nothing to deliver: an entry with no channels would never be drained
        return rec, n
    pending = [*rec.pending, Pending(notification=n, channels=list(channels))]
    return msgspec.structs.replace(rec, pending=pending), n


def evaluate(
    subject: str,
    rec: Record | None,
    beat: Beat | None,
    now: float,
    cfg: EngineConfig,
    *,
    sight_since: float = 0.0,
    monitor: str = "",
    channels: Sequence[str] = (),
    new_alert_id: str = "",
) -> Outcome:
    """Decide alert / repeat / resolved / checkpoint for one subject.

    ``rec`` is the committed KV record (None if the subject has none yet), ``beat``
    the newest heartbeat on the stream, ``sight_since`` the end of the last blind
    period (no subject alerts on silence observed while blind), ``new_alert_id``
    the id to give an alert raised now.
    """
    cur = merged(rec, beat, subject)
    if cur.interval_ns <= 0:
        return Outcome(None, None, NEVER)
    window_s = cur.window_ns / SECOND
    notification: Notification | None = None
    new = cur

    if cur.alert_active and cur.last_seen > (cur.alert_last_seen or 0.0):
        # Beats resumed: resolve once.
        gap = cur.last_seen - (cur.alert_last_seen or cur.last_seen)
        new, notification = _with_notification(cur, EventKind.RESOLVED, now, monitor, channels, gap)
        new = msgspec.structs.replace(
            new, alert_active=False, alert_since=None, alert_last_seen=None
        )
    elif not cur.alert_active:
        since = max(cur.last_seen, sight_since)
        if now - since > window_s + cfg.tolerance_s and cur.last_seen > 0:
            new = msgspec.structs.replace(
                cur,
                alert_active=True,
                alert_id=new_alert_id,
                alert_since=now,
                alert_last_seen=cur.last_seen,
                notify_count=0,
            )
            new, notification = _with_notification(
                new, EventKind.ALERT, now, monitor, channels, now - cur.last_seen
            )
    elif (
        cfg.repeat_every_s > 0
        and cur.last_notified is not None
        and now >= cur.last_notified + cfg.repeat_every_s
    ):
        new, notification = _with_notification(
            cur, EventKind.REPEAT, now, monitor, channels, now - cur.last_seen
        )

    write = notification is not None or rec is None or _needs_checkpoint(rec, new, cfg)
    if write:
        new = msgspec.structs.replace(new, updated_by=monitor)
    return Outcome(new if write else None, notification, next_due(new, cfg, sight_since))


def _needs_checkpoint(old: Record, new: Record, cfg: EngineConfig) -> bool:
    if meta_differs(old, new):
        return True
    return new.last_seen - old.last_seen >= cfg.checkpoint_every_s


def next_due(rec: Record, cfg: EngineConfig, sight_since: float = 0.0) -> float:
    """When :func:`evaluate` could next decide something for ``rec`` without new beats."""
    if rec.interval_ns <= 0:
        return NEVER
    if rec.alert_active:
        if cfg.repeat_every_s <= 0 or rec.last_notified is None:
            return NEVER
        return rec.last_notified + cfg.repeat_every_s
    return max(rec.last_seen, sight_since) + rec.window_ns / SECOND + cfg.tolerance_s


def is_late(rec: Record, now: float) -> bool:
    """Silent past its window (Go's ``missing``); tolerance aside, an alert is due."""
    return (
        rec.last_seen > 0 and rec.interval_ns > 0 and (now - rec.last_seen) * SECOND > rec.window_ns
    )


def health(rec: Record, now: float) -> Health:
    """OK, LATE (silent past its window) or ALERT (an alert is active)."""
    if rec.alert_active:
        return Health.ALERT
    return Health.LATE if is_late(rec, now) else Health.OK


def miss_count(rec: Record, now: float) -> int:
    if rec.interval_ns <= 0:
        return 0
    return max(0, int((now - rec.last_seen) // (rec.interval_ns / SECOND)))


class Track(msgspec.Struct, gc=False, eq=False):
    """What one replica holds about one subject, in one object (one dict lookup).

    ``record`` and ``rev``: the committed KV record and its revision (None, 0 before
    the monitor has one); ``beat``: the newest heartbeat from the stream; ``due``:
    its live deadline in the :class:`Schedule` (None when unscheduled; only the
    schedule sets it).  ``gc=False``: it refers only to records, beats, strings and
    numbers, never back to itself.  ``eq=False``: compared by identity, and ordered
    by subject, so heap entries with equal deadlines compare cheaply.
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
        self._heap: list[tuple[float, Track]] = []
        self._live = 0

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
        heapq.heappush(self._heap, (due, track))

    def discard(self, track: Track) -> None:
        if track.due is not None:
            track.due = None
            self._live -= 1

    def next_due(self) -> float:
        while self._heap:
            due, track = self._heap[0]
            if track.due == due:
                return due
            heapq.heappop(self._heap)
        return NEVER

    def pop_due(self, now: float, limit: int | None = None) -> list[Track]:
        """Tracks whose deadline is <= now (at most ``limit``), removed from the schedule."""
        out: list[Track] = []
        heap = self._heap
        while heap and heap[0][0] <= now and (limit is None or len(out) < limit):
            due, track = heapq.heappop(heap)
            if track.due == due:
                track.due = None
                out.append(track)
        self._live -= len(out)
        return out
