"""The pure alert engine: from (record, last beat, now) to what should happen.

Nothing here touches asyncio, NATS, HTTP, the clock or the environment: ``now`` is
a parameter, so every rule is testable as a table.  The monitor carries out what
:func:`evaluate` returns (a record to commit with compare-and-set, perhaps with a
notification to deliver) and asks again at the returned deadline.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

import msgspec

from heartbeat import jobrules
from heartbeat.durations import SECOND, window_of
from heartbeat.jobrules import Job as Job  # re-exported: Beat.job's type
from heartbeat.jobrules import JobState
from heartbeat.notification import EventKind, Notification
from heartbeat.quiet import LOUD, Hush, Quiet

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
    ``gc=False`` here and on every per-subject struct: they hold only strings, numbers
    and each other, never a cycle (docs/architecture.md, "Memory").
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
    # A tuple: its default is the one shared empty tuple (a list default is copied into
    # every record, 56 bytes each); the JSON is the same array.  Replaced, never mutated.
    pending: tuple[Pending, ...] = ()
    updated_by: str = ""
    job: JobState | None = None  # a job's runs and job alert (heartbeat.jobrules)
    back_at: float | None = None  # the first beat after its last alert (heartbeat.depends)

    @property
    def window_ns(self) -> int:
        return window_of(self.interval_ns, self.grace_ns)


class Beat(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """The newest heartbeat seen on the stream for a subject."""

    last_seen: float
    interval_ns: int
    grace_ns: int | None
    host: str
    description: str
    generated_at: str
    job: Job | None = None  # None for a plain beat (one slot, not eight, per subject)

    @property
    def window_ns(self) -> int:
        return window_of(self.interval_ns, self.grace_ns)


class Health(StrEnum):
    OK = "ok"
    LATE = "late"
    ALERT = "alert"


class Reason(StrEnum):
    """Why :func:`evaluate` writes a record (``NONE``: it writes nothing)."""

    ALERT = "alert"
    REPEAT = "repeat"
    RESOLVED = "resolved"
    FAILED = "failed"  # job rules (heartbeat.jobrules) from here
    RUNNING_LONG = "running_long"
    RAN_LONG = "ran_long"
    JOB_RESOLVED = "job_resolved"  # a job alert (failed, running_long) resolved
    CREATE = "create"  # the subject's first record
    CHECKPOINT = "checkpoint"  # declared facts changed, or last_seen is due for a save
    NONE = "none"


@dataclass(frozen=True)
class Outcome:
    """What to do for one subject: ``record`` to commit (None: nothing to write),
    ``notification`` committed with it (as pending), when to look again, and why."""

    record: Record | None
    notification: Notification | None
    due: float
    reason: Reason = Reason.NONE
    hushed: Quiet | None = None  # what kept back an alert or repeat due now (history)


def merged(rec: Record | None, beat: Beat | None, subject: str) -> Record:
    """The record with the newest beat's facts folded in (not yet written)."""
    base = rec if rec is not None else Record(subject=subject)
    if beat is None or beat.last_seen <= base.last_seen:
        return base
    if beat.job is not None:
        base = msgspec.structs.replace(base, job=jobrules.fold(base.job, beat.job, beat.last_seen))
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


Dependents = tuple[int, Sequence[str]]
"""A parent's missing dependents: how many, and the first few by name."""


def _notification(
    rec: Record,
    kind: EventKind,
    now: float,
    monitor: str,
    missed_for_s: float,
    dependents: Dependents | None = None,
) -> Notification:
    count, named = dependents if dependents is not None else (None, ())
    return Notification(
        event=kind,
        subject=rec.subject,
        description=rec.description or rec.subject,
        host=rec.host,
        last_seen=rec.last_seen or None,
        interval_ns=rec.interval_ns,
        window_ns=rec.window_ns,
        missed_for_ns=max(0, round(missed_for_s * SECOND)),
        miss_count=misses(missed_for_s, rec.interval_ns),
        alert_id=rec.alert_id,
        notification_id=f"{rec.alert_id}-{rec.notify_count}",
        created_at=now,
        monitor=monitor,
        dependents_missing=count,
        dependents=tuple(named),
    )


def _with_notification(
    rec: Record,
    reason: Reason,
    now: float,
    monitor: str,
    channels: Sequence[str],
    missed_for_s: float,
    dependents: Dependents | None = None,
) -> tuple[Record, Notification]:
    """Commit ``reason``: bump the count, stamp last_notified, queue a pending delivery."""
    rec = msgspec.structs.replace(rec, notify_count=rec.notify_count + 1, last_notified=now)
    n = _notification(rec, EventKind(reason), now, monitor, missed_for_s, dependents)
    if not channels:  # nothing to deliver: an entry with no channels would never be drained
        return rec, n
    pending = (*rec.pending, Pending(notification=n, channels=list(channels)))
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
    hush: Hush = LOUD,
    dependents: Dependents | None = None,
) -> Outcome:
    """Decide alert / repeat / resolved / checkpoint for one subject.

    ``rec`` is the committed KV record (None if the subject has none yet), ``beat``
    the newest heartbeat on the stream, ``sight_since`` the end of the last blind
    period (no subject alerts on silence observed while blind), ``new_alert_id``
    the id to give an alert raised now, ``hush`` what keeps it quiet (heartbeat.quiet:
    while quiet nothing alerts or repeats; a resolve is still told), ``dependents``
    how many of its dependents are missing too, for its alert and repeats to say
    (heartbeat.depends).
    """
    cur = merged(rec, beat, subject)
    if cur.interval_ns <= 0:
        return Outcome(None, None, NEVER)
    quiet = hush.quiet is not None
    floor = max(sight_since, hush.ended)
    reason, new, notification = Reason.NONE, cur, None
    held_back = False
    if cur.alert_active and cur.last_seen > (cur.alert_last_seen or 0.0):
        # Beats resumed: resolve once.
        reason = Reason.RESOLVED
        gap = cur.last_seen - (cur.alert_last_seen or cur.last_seen)
        new, notification = _with_notification(cur, reason, now, monitor, channels, gap)
        new = msgspec.structs.replace(
            new, alert_active=False, alert_since=None, alert_last_seen=None, back_at=cur.last_seen
        )
    elif quiet:
        # Tracked and shown, never told (heartbeat.quiet); what it kept back is history.
        held_back = now >= _loud_deadline(cur, cfg, sight_since)
    elif not cur.alert_active:
        if cur.last_seen > 0 and now > alert_deadline(cur, cfg, floor):
            reason = Reason.ALERT
            new = msgspec.structs.replace(
                cur,
                alert_active=True,
                alert_id=new_alert_id,
                alert_since=now,
                alert_last_seen=cur.last_seen,
                notify_count=0,
            )
            new, notification = _with_notification(
                new, reason, now, monitor, channels, now - cur.last_seen, dependents
            )
    elif now >= repeat_deadline(cur, cfg, hush.ended):
        reason = Reason.REPEAT
        new, notification = _with_notification(
            cur, reason, now, monitor, channels, now - cur.last_seen, dependents
        )
    new, notification, reason = _job_step(
        rec, new, notification, reason, now, cfg, monitor, channels, new_alert_id, quiet
    )
    hushed = hush.quiet if held_back else None
    if reason is Reason.NONE:
        if rec is None:
            reason = Reason.CREATE
        elif _needs_checkpoint(rec, new, cfg):
            reason = Reason.CHECKPOINT
        else:
            return Outcome(None, None, _due(new, cfg, sight_since, hush, held_back), hushed=hushed)
    new = msgspec.structs.replace(new, updated_by=monitor)
    due = _due(new, cfg, sight_since, hush, held_back)
    return Outcome(new, notification, due, reason, hushed)


def _loud_deadline(rec: Record, cfg: EngineConfig, sight_since: float) -> float:
    """When a loud ``rec`` would alert or repeat next (quiet periods aside)."""
    if rec.alert_active:
        return repeat_deadline(rec, cfg)
    return alert_deadline(rec, cfg, sight_since) if rec.last_seen > 0 else NEVER


def _due(rec: Record, cfg: EngineConfig, sight_since: float, hush: Hush, held_back: bool) -> float:
    """:func:`next_due`, and while quiet once more at the loud deadline: the moment
    the quiet keeps an alert back is recorded in the history (then: its end)."""
    due = next_due(rec, cfg, sight_since, hush)
    if hush.quiet is not None and not held_back:
        due = min(due, _loud_deadline(rec, cfg, sight_since))
    return due


_JOB_REASONS = {
    EventKind.FAILED: Reason.FAILED,
    EventKind.RUNNING_LONG: Reason.RUNNING_LONG,
    EventKind.RAN_LONG: Reason.RAN_LONG,
    EventKind.RESOLVED: Reason.JOB_RESOLVED,
}


def _job_step(
    rec: Record | None,
    new: Record,
    notification: Notification | None,
    reason: Reason,
    now: float,
    cfg: EngineConfig,
    monitor: str,
    channels: Sequence[str],
    new_alert_id: str,
    quiet: bool = False,
) -> tuple[Record, Notification | None, Reason]:
    """Apply the job rules (heartbeat.jobrules) to ``new``; a job notification is
    queued after any missing-heartbeat one decided for the same record.  While quiet
    only a resolve is told: a job still failed or running long when quiet ends
    alerts then (a failure is a fact, not a silence to wait out)."""
    if new.job is None:
        return new, notification, reason
    since = new.job.alert_since
    state, kind = jobrules.step(
        rec.job if rec else None, new.job, now, cfg.tolerance_s, new_alert_id
    )
    if kind is None or (quiet and kind is not EventKind.RESOLVED):
        return new, notification, reason
    new = msgspec.structs.replace(new, job=state)
    n = _job_notification(new, state, kind, now, monitor, new_alert_id, since)
    if channels:
        pending = (*new.pending, Pending(notification=n, channels=list(channels)))
        new = msgspec.structs.replace(new, pending=pending)
    return new, n, _JOB_REASONS[kind]


def _job_notification(
    rec: Record,
    job: JobState,
    kind: EventKind,
    now: float,
    monitor: str,
    new_alert_id: str,
    alert_since: float | None,
) -> Notification:
    """A ``failed``, ``running_long``, ``ran_long`` or job ``resolved`` notification.

    A ``ran_long`` report has an id of its own (nothing resolves it); the others carry
    the job alert's id, ``<job alert id>-<count>`` as their notification id."""
    if kind is EventKind.RAN_LONG:
        alert_id = f"{new_alert_id}.ran_long"
        nid = f"{alert_id}-1"
    else:
        alert_id, nid = job.alert_id, f"{job.alert_id}-{job.notify_count}"
    duration = job.duration_ns
    if kind is EventKind.RUNNING_LONG and job.running_since is not None:
        duration = max(0, round((now - job.running_since) * SECOND))
    finished = kind is not EventKind.RUNNING_LONG
    open_for = now - alert_since if kind is EventKind.RESOLVED and alert_since else 0.0
    return Notification(
        event=kind,
        subject=rec.subject,
        description=rec.description or rec.subject,
        host=rec.host,
        last_seen=rec.last_seen or None,
        interval_ns=rec.interval_ns,
        window_ns=rec.window_ns,
        missed_for_ns=max(0, round(open_for * SECOND)),
        miss_count=0,
        alert_id=alert_id,
        notification_id=nid,
        created_at=now,
        monitor=monitor,
        exit_code=job.exit_code if finished else None,
        duration_ns=duration,
        output=job.output if finished else "",
        run_id=job.run_id,
        max_runtime_ns=job.max_runtime_ns,
    )


def _needs_checkpoint(old: Record, new: Record, cfg: EngineConfig) -> bool:
    if meta_differs(old, new) or old.job != new.job:
        return True
    return new.last_seen - old.last_seen >= cfg.checkpoint_every_s


def alert_deadline(rec: Record, cfg: EngineConfig, sight_since: float = 0.0) -> float:
    """After this time an ok subject alerts: a window and the tolerance past its last
    beat, or past the end of the last blind period if that came later."""
    if rec.job is not None:
        due = jobrules.missing_after(rec.job, rec.last_seen, rec.interval_ns, rec.window_ns)
        if due is not None:
            return max(due, sight_since + rec.window_ns / SECOND) + cfg.tolerance_s
    return max(rec.last_seen, sight_since) + rec.window_ns / SECOND + cfg.tolerance_s


def proven_after(rec: Record, reason: Reason, cfg: EngineConfig) -> float:
    """The server time up to which every beat must have been handled for an accusation
    decided on ``rec`` (its view before the decision) to stand: its silence past the
    window, or a run under way past ``max_runtime`` with no end heard."""
    if reason is Reason.RUNNING_LONG and rec.job is not None:
        return jobrules.running_long_deadline(rec.job, cfg.tolerance_s)
    return alert_deadline(rec, cfg)


def repeat_deadline(rec: Record, cfg: EngineConfig, quiet_ended: float = 0.0) -> float:
    """From this time an active alert repeats: keyed to the stored last_notified, and
    no earlier than a window after the end of the last quiet period."""
    if cfg.repeat_every_s <= 0 or rec.last_notified is None:
        return NEVER
    due = rec.last_notified + cfg.repeat_every_s
    if quiet_ended > 0.0:
        due = max(due, quiet_ended + rec.window_ns / SECOND + cfg.tolerance_s)
    return due


def next_due(rec: Record, cfg: EngineConfig, sight_since: float = 0.0, hush: Hush = LOUD) -> float:
    """When :func:`evaluate` could next decide something for ``rec`` without new beats
    (while quiet: when the quiet ends by itself; its source reschedules otherwise)."""
    if rec.interval_ns <= 0:
        return NEVER
    if hush.quiet is not None:
        return NEVER if hush.quiet.until is None else hush.quiet.until
    if rec.alert_active:
        due = repeat_deadline(rec, cfg, hush.ended)
    else:
        due = alert_deadline(rec, cfg, max(sight_since, hush.ended))
    if rec.job is not None:
        due = min(due, jobrules.next_due(rec.job, cfg.tolerance_s))
    return due


def is_late(rec: Record, now: float) -> bool:
    """Silent past its window (Go's ``missing``); tolerance aside, an alert is due.
    A job is late past its scheduled run plus grace (heartbeat.jobrules)."""
    if rec.job is not None and rec.last_seen > 0 and rec.interval_ns > 0:
        due = jobrules.missing_after(rec.job, rec.last_seen, rec.interval_ns, rec.window_ns)
        if due is not None:
            return now > due
    return silent_past(rec.last_seen, rec.interval_ns, rec.window_ns, now)


def silent_past(last_seen: float, interval_ns: int, window_ns: int, now: float) -> bool:
    """A plain heartbeat seen at ``last_seen`` is silent past its window at ``now``."""
    return last_seen > 0 and interval_ns > 0 and (now - last_seen) * SECOND > window_ns


def alerting(rec: Record) -> bool:
    """An alert is active: a missing heartbeat's, or a job's ``failed`` / ``running_long``."""
    return rec.alert_active or (rec.job is not None and bool(rec.job.alert))


def health(rec: Record, now: float) -> Health:
    """OK, LATE (silent past its window) or ALERT (:func:`alerting`)."""
    if alerting(rec):
        return Health.ALERT
    return Health.LATE if is_late(rec, now) else Health.OK


def misses(silent_s: float, interval_ns: int) -> int:
    """Whole intervals missed in ``silent_s`` seconds of silence."""
    if interval_ns <= 0:
        return 0
    return max(0, int(silent_s // (interval_ns / SECOND)))


def miss_count(rec: Record, now: float) -> int:
    return misses(now - rec.last_seen, rec.interval_ns)
