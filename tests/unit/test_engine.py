"""The pure alert engine as tables: no NATS, no asyncio, no clock; ``now`` is a number.

Times are epoch seconds built from T0 plus binary fractions (1/8, 1/1024, ...), so the
boundaries (``elapsed == window + tolerance``) are exact in floating point.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heartbeat.durations import SECOND
from heartbeat.engine import (
    NEVER,
    Beat,
    EngineConfig,
    Health,
    Outcome,
    Record,
    evaluate,
    health,
    merged,
    miss_count,
    next_due,
)
from heartbeat.notify.base import EventKind, Notification
from heartbeat.subjects import COMPACT_MIN, NEXT_DUE_SCAN, Schedule, Track

SUBJECT = "heartbeat.service.api"
T0 = 1_700_000_000.0
HAIR = 1 / 1024  # exactly representable, so T0 + x + HAIR is exactly "just past" x
CHANNELS = ("log", "webhook")
MONITOR = "m1"


def ns(seconds: float) -> int:
    return round(seconds * SECOND)


def mkbeat(
    at: float,
    *,
    interval: float = 1.0,
    grace: float | None = None,
    host: str = "api-1",
    description: str = "API service",
) -> Beat:
    return Beat(
        last_seen=at,
        interval_ns=ns(interval),
        grace_ns=None if grace is None else ns(grace),
        host=host,
        description=description,
        generated_at="2024-06-01T12:00:00Z",
    )


def mkcfg(
    *, tolerance: float = 1.0, repeat: float = 3600.0, checkpoint: float = 60.0
) -> EngineConfig:
    return EngineConfig(repeat_every_s=repeat, tolerance_s=tolerance, checkpoint_every_s=checkpoint)


@dataclass
class Sim:
    """Drives the engine as the monitor does: keeps the newest beat, commits returned records."""

    cfg: EngineConfig = field(default_factory=mkcfg)
    sight_since: float = 0.0
    channels: Sequence[str] = CHANNELS
    rec: Record | None = None
    beat: Beat | None = None
    sent: list[Notification] = field(default_factory=list)
    writes: int = 0
    evals: int = 0

    def beat_at(self, at: float, **kw: object) -> None:
        self.beat = mkbeat(at, **kw)  # type: ignore[arg-type]

    def eval_at(self, now: float) -> Outcome:
        self.evals += 1
        out = evaluate(
            SUBJECT,
            self.rec,
            self.beat,
            now,
            self.cfg,
            sight_since=self.sight_since,
            monitor=MONITOR,
            channels=self.channels,
            new_alert_id=f"a{self.evals}",
        )
        if out.record is not None:
            self.rec = out.record
            self.writes += 1
        if out.notification is not None:
            self.sent.append(out.notification)
        return out

    @property
    def kinds(self) -> list[EventKind]:
        return [n.event for n in self.sent]

    @property
    def committed(self) -> Record:
        assert self.rec is not None
        return self.rec


def alerted(cfg: EngineConfig | None = None, **beat_kw: object) -> tuple[Sim, float]:
    """A subject that beat once at T0 and then alerted at the first instant it could."""
    sim = Sim(cfg=cfg or mkcfg())
    sim.beat_at(T0, **beat_kw)
    sim.eval_at(T0)
    at = sim.eval_at(T0).due + HAIR
    sim.eval_at(at)
    assert sim.kinds == [EventKind.ALERT]
    return sim, at


# ----- when an alert fires -------------------------------------------------------------


@pytest.mark.parametrize(
    ("tolerance", "interval", "grace", "elapsed", "alerts"),
    [
        pytest.param(1.0, 1.0, None, 0.5, False, id="tol1-elapsed0.5"),
        pytest.param(1.0, 1.0, None, 1.05, False, id="tol1-elapsed1.05-hair-late"),
        pytest.param(1.0, 1.0, None, 1.2, False, id="tol1-elapsed1.2"),
        pytest.param(1.0, 1.0, None, 1.9, False, id="tol1-elapsed1.9"),
        pytest.param(1.0, 1.0, None, 2.0, False, id="tol1-elapsed==window+tol"),
        pytest.param(1.0, 1.0, None, 2.0 + HAIR, True, id="tol1-just-past-window+tol"),
        pytest.param(1.0, 1.0, None, 3.0, True, id="tol1-elapsed3"),
        pytest.param(0.0, 1.0, None, 1.05, True, id="tol0-go-rule-elapsed1.05"),
        pytest.param(0.0, 1.0, None, 1.0, False, id="tol0-elapsed==interval"),
        pytest.param(0.0, 1.0, None, 1.0 + HAIR, True, id="tol0-just-past-interval"),
        pytest.param(1.0, 1.0, 5.0, 3.0, False, id="grace5-overrides-interval-elapsed3"),
        pytest.param(1.0, 1.0, 5.0, 6.0, False, id="grace5-elapsed==grace+tol"),
        pytest.param(1.0, 1.0, 5.0, 6.1, True, id="grace5-elapsed6.1"),
        pytest.param(1.0, 1.0, 0.0, 1.5, False, id="grace0-falls-back-elapsed1.5"),
        pytest.param(1.0, 1.0, 0.0, 2.1, True, id="grace0-falls-back-elapsed2.1"),
        pytest.param(1.0, 1.0, None, 2.1, True, id="grace-unset-elapsed2.1"),
        pytest.param(1.0, 10.0, 2.0, 3.5, True, id="grace-shorter-than-interval-wins"),
        pytest.param(1.0, 10.0, None, 3.5, False, id="interval10-elapsed3.5"),
    ],
)
def test_alert_threshold(
    tolerance: float, interval: float, grace: float | None, elapsed: float, alerts: bool
) -> None:
    sim = Sim(cfg=mkcfg(tolerance=tolerance))
    sim.beat_at(T0, interval=interval, grace=grace)
    assert sim.eval_at(T0).notification is None
    out = sim.eval_at(T0 + elapsed)
    assert (out.notification is not None) is alerts
    if alerts:
        assert out.notification is not None
        assert out.notification.event is EventKind.ALERT
        assert out.record is not None and out.record.alert_active
    else:
        assert out.record is None  # nothing new to write for a healthy subject


@pytest.mark.parametrize(
    ("tolerance", "gaps", "expected"),
    [
        pytest.param(1.0, [1.0] * 20, [], id="tol1-exact-1s"),
        pytest.param(1.0, [1.05, 1.2, 0.95, 1.05, 1.2, 0.8] * 4, [], id="tol1-jittery"),
        pytest.param(1.0, [1.9] * 5, [], id="tol1-always-1.9s"),
        pytest.param(0.0, [1.0, 1.0, 1.05, 1.0], [EventKind.ALERT, EventKind.RESOLVED], id="tol0"),
    ],
)
def test_healthy_beats_evaluated_often(
    tolerance: float, gaps: list[float], expected: list[EventKind]
) -> None:
    """Beats 1 s apart (give or take), evaluated many times between them and just before each."""
    sim = Sim(cfg=mkcfg(tolerance=tolerance))
    t = T0
    sim.beat_at(t)
    for gap in gaps:
        for frac in (0.0, 0.25, 0.5, 0.9, 0.99):
            sim.eval_at(t + gap * frac)
        sim.eval_at(t + gap)  # the instant before the next beat arrives
        t += gap
        sim.beat_at(t)
        sim.eval_at(t)
    assert sim.kinds == expected


def test_alert_fires_once_until_repeat() -> None:
    sim, at = alerted(mkcfg(repeat=60.0))
    for later in (at, at + 0.001, at + 1, at + 30, at + 59.9):
        out = sim.eval_at(later)
        assert out.notification is None
        assert out.record is None
        assert out.due == at + 60.0
    assert sim.kinds == [EventKind.ALERT]


@pytest.mark.parametrize(
    ("tolerance", "interval", "grace", "sight_since", "due"),
    [
        pytest.param(1.0, 1.0, None, 0.0, T0 + 2.0, id="interval+tol"),
        pytest.param(0.0, 1.0, None, 0.0, T0 + 1.0, id="tol0"),
        pytest.param(1.0, 1.0, 5.0, 0.0, T0 + 6.0, id="grace+tol"),
        pytest.param(1.0, 1.0, 0.0, 0.0, T0 + 2.0, id="grace0-interval+tol"),
        pytest.param(0.5, 15.0, 45.0, 0.0, T0 + 45.5, id="grace45+tol0.5"),
        pytest.param(1.0, 1.0, None, T0 + 10, T0 + 12.0, id="blind-sight-since+window+tol"),
        pytest.param(1.0, 1.0, None, T0 - 10, T0 + 2.0, id="sight-since-before-last-seen"),
    ],
)
def test_due_when_healthy(
    tolerance: float, interval: float, grace: float | None, sight_since: float, due: float
) -> None:
    sim = Sim(cfg=mkcfg(tolerance=tolerance), sight_since=sight_since)
    sim.beat_at(T0, interval=interval, grace=grace)
    assert sim.eval_at(T0 + 0.5).due == due
    assert next_due(sim.committed, sim.cfg, sight_since) == due


@pytest.mark.parametrize(
    ("repeat", "due_after_alert"),
    [
        pytest.param(60.0, lambda at: at + 60.0, id="repeat60"),
        pytest.param(12 * 3600.0, lambda at: at + 12 * 3600.0, id="repeat12h"),
        pytest.param(0.0, lambda at: NEVER, id="repeat0-never"),
    ],
)
def test_due_after_alert(repeat: float, due_after_alert: Callable[[float], float]) -> None:
    sim = Sim(cfg=mkcfg(repeat=repeat))
    sim.beat_at(T0)
    sim.eval_at(T0)
    at = T0 + 3.0
    out = sim.eval_at(at)
    assert out.notification is not None
    assert out.notification.event is EventKind.ALERT
    assert sim.committed.last_notified == at
    assert out.due == due_after_alert(at)
    assert next_due(sim.committed, sim.cfg) == out.due


def test_no_interval_means_nothing_to_decide() -> None:
    out = evaluate(SUBJECT, None, None, T0, mkcfg())
    assert out == Outcome(None, None, NEVER)
    assert next_due(Record(subject=SUBJECT), mkcfg()) == NEVER


# ----- repeats ---------------------------------------------------------------------------


def test_repeats_every_repeat_every_from_last_notified() -> None:
    sim, at = alerted(mkcfg(repeat=60.0))
    alert = sim.sent[0]
    assert alert.notification_id == "a3-1"
    assert sim.committed.notify_count == 1

    assert sim.eval_at(at + 60.0 - HAIR).notification is None
    out = sim.eval_at(at + 60.0)  # exactly at last_notified + repeat_every
    assert out.notification is not None
    assert out.notification.event is EventKind.REPEAT
    assert out.notification.alert_id == alert.alert_id == "a3"
    assert out.notification.notification_id == "a3-2"
    assert sim.committed.notify_count == 2
    assert sim.committed.last_notified == at + 60.0
    assert out.due == at + 120.0

    # A late evaluation moves the next repeat: it counts from when the repeat was sent.
    out = sim.eval_at(at + 125.0)
    assert out.notification is not None
    assert out.notification.notification_id == "a3-3"
    assert out.notification.missed_for_ns == ns(at + 125.0 - T0)
    assert out.due == at + 185.0
    assert sim.committed.alert_id == "a3"
    assert sim.kinds == [EventKind.ALERT, EventKind.REPEAT, EventKind.REPEAT]


def test_repeat_every_zero_never_repeats() -> None:
    sim, at = alerted(mkcfg(repeat=0.0))
    for later in (at + 60, at + 12 * 3600, at + 10**7):
        out = sim.eval_at(later)
        assert out.notification is None
        assert out.due == NEVER
    assert sim.kinds == [EventKind.ALERT]


# ----- resolved --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("back_at", "repeats", "interval"),
    [
        pytest.param(T0 + 2.5, 0, 1.0, id="back-right-after-alert"),
        pytest.param(T0 + 200.0, 2, 1.0, id="back-after-two-repeats"),
        pytest.param(T0 + 45.0, 0, 10.0, id="interval10"),
    ],
)
def test_resolved_once(back_at: float, repeats: int, interval: float) -> None:
    sim = Sim(cfg=mkcfg(repeat=60.0))
    sim.beat_at(T0, interval=interval)
    sim.eval_at(T0)
    first_alert_at = T0 + interval + 1.0 + HAIR
    sim.eval_at(first_alert_at)
    for i in range(1, repeats + 1):
        sim.eval_at(first_alert_at + 60.0 * i)
    assert sim.kinds == [EventKind.ALERT] + [EventKind.REPEAT] * repeats
    alert_id = sim.sent[0].alert_id

    sim.beat_at(back_at, interval=interval)
    now = back_at + 0.25
    out = sim.eval_at(now)
    n = out.notification
    assert n is not None
    assert n.event is EventKind.RESOLVED
    assert n.alert_id == alert_id
    assert n.notification_id == f"{alert_id}-{repeats + 2}"
    assert n.missed_for_ns == ns(back_at - T0)  # the gap between the two beats
    assert n.miss_count == math.floor((back_at - T0) / interval)
    assert n.last_seen == back_at
    assert n.created_at == now
    rec = sim.committed
    assert not rec.alert_active
    assert rec.alert_id == alert_id
    assert rec.alert_since is None
    assert rec.alert_last_seen is None
    assert rec.last_seen == back_at
    assert health(rec, now) is Health.OK
    assert out.due == back_at + interval + 1.0

    again = sim.eval_at(now + 0.1)
    assert again.notification is None
    assert again.record is None
    assert sim.kinds == [EventKind.ALERT] + [EventKind.REPEAT] * repeats + [EventKind.RESOLVED]


def test_old_beat_does_not_resolve() -> None:
    """A beat no newer than the one the alert was raised on is not a sign of life."""
    sim, at = alerted()
    sim.beat_at(T0)
    assert sim.eval_at(at + 1).notification is None
    assert sim.committed.alert_active


def test_new_alert_after_resolved_has_new_id() -> None:
    sim, at = alerted()
    sim.beat_at(at + 1)
    sim.eval_at(at + 1)
    sim.eval_at(at + 10)
    assert sim.kinds == [EventKind.ALERT, EventKind.RESOLVED, EventKind.ALERT]
    first, _, second = sim.sent
    assert second.alert_id != first.alert_id
    assert second.notification_id == f"{second.alert_id}-1"
    assert sim.committed.notify_count == 1


# ----- the notification ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "grace", "elapsed", "misses"),
    [
        pytest.param(1.0, None, 2.5, 2, id="interval1-elapsed2.5"),
        pytest.param(1.0, None, 3.0, 3, id="interval1-elapsed3-exact"),
        pytest.param(1.0, 5.0, 6.5, 6, id="grace5-counts-intervals"),
        pytest.param(2.0, None, 3.5, 1, id="interval2-elapsed3.5"),
        pytest.param(0.25, None, 1.5, 6, id="interval250ms"),
        pytest.param(15.0, 45.0, 46.125, 3, id="interval15-grace45"),
    ],
)
def test_alert_notification_fields(
    interval: float, grace: float | None, elapsed: float, misses: int
) -> None:
    sim = Sim()
    sim.beat_at(T0, interval=interval, grace=grace)
    now = T0 + elapsed
    n = sim.eval_at(now).notification
    assert n is not None
    assert n == Notification(
        event=EventKind.ALERT,
        subject=SUBJECT,
        description="API service",
        host="api-1",
        last_seen=T0,
        interval_ns=ns(interval),
        window_ns=ns(grace or interval),
        missed_for_ns=ns(elapsed),
        miss_count=misses,
        alert_id="a1",
        notification_id="a1-1",
        created_at=now,
        monitor=MONITOR,
    )
    assert n.miss_count == math.floor(elapsed / interval)
    rec = sim.committed
    assert rec.alert_since == now
    assert rec.alert_last_seen == T0
    assert rec.updated_by == MONITOR


@pytest.mark.parametrize(
    ("description", "shown"),
    [
        pytest.param("", SUBJECT, id="empty-falls-back-to-subject"),
        pytest.param("API service", "API service", id="given"),
    ],
)
def test_description_fallback(description: str, shown: str) -> None:
    sim = Sim()
    sim.beat_at(T0, description=description)
    n = sim.eval_at(T0 + 5).notification
    assert n is not None
    assert n.description == shown


# ----- pending deliveries ----------------------------------------------------------------


@pytest.mark.parametrize(
    "channels",
    [
        pytest.param(("log",), id="one"),
        pytest.param(("pushover", "webhook", "log"), id="three"),
    ],
)
def test_every_notification_is_queued_as_pending(channels: tuple[str, ...]) -> None:
    sim = Sim(cfg=mkcfg(repeat=60.0), channels=channels)
    sim.beat_at(T0)
    sim.eval_at(T0 + 5)  # alert
    sim.eval_at(T0 + 65)  # repeat
    sim.beat_at(T0 + 70)
    sim.eval_at(T0 + 70)  # resolved
    assert sim.kinds == [EventKind.ALERT, EventKind.REPEAT, EventKind.RESOLVED]
    pending = sim.committed.pending
    assert [p.notification for p in pending] == sim.sent
    assert all(p.channels == list(channels) for p in pending)


def test_previous_pending_entries_are_kept() -> None:
    sim, at = alerted(mkcfg(repeat=60.0))
    first = sim.committed.pending
    assert len(first) == 1
    sim.eval_at(at + 60)
    pending = sim.committed.pending
    assert len(pending) == 2
    assert pending[0] == first[0]
    assert pending[1].notification.event is EventKind.REPEAT


def test_no_channels_queues_nothing() -> None:
    """With no channel to deliver to, a pending entry could never be drained."""
    sim = Sim(channels=())
    sim.beat_at(T0)
    out = sim.eval_at(T0 + 5)
    assert out.notification is not None  # still decided, committed and logged by the caller
    assert sim.committed.alert_active
    assert sim.committed.pending == ()


# ----- blind periods ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sight_since", "now", "alerts"),
    [
        pytest.param(T0 + 100, T0 + 100.5, False, id="just-after-sight"),
        pytest.param(T0 + 100, T0 + 101.5, False, id="within-window+tol-of-sight"),
        pytest.param(T0 + 100, T0 + 102.0, False, id="at-window+tol-of-sight"),
        pytest.param(T0 + 100, T0 + 102.0 + HAIR, True, id="past-window+tol-of-sight"),
        pytest.param(T0 + 100, T0 + 500.0, True, id="long-after-sight"),
        pytest.param(T0 - 100, T0 + 2.0 + HAIR, True, id="sight-before-last-seen-no-effect"),
        pytest.param(0.0, T0 + 2.0 + HAIR, True, id="never-blind"),
    ],
)
def test_blind_period(sight_since: float, now: float, alerts: bool) -> None:
    sim = Sim(sight_since=sight_since)
    sim.beat_at(T0)
    sim.eval_at(T0)
    out = sim.eval_at(now)
    assert (out.notification is not None) is alerts
    if out.notification is not None:
        # The silence reported is measured from the last beat, blind time included.
        assert out.notification.missed_for_ns == ns(now - T0)
    else:
        assert out.due == max(T0, sight_since) + 2.0


# ----- checkpoints -----------------------------------------------------------------------


BASE = {"interval": 1.0, "grace": None, "host": "api-1", "description": "API service"}


@pytest.mark.parametrize(
    ("after", "changes", "written"),
    [
        pytest.param(1.0, {}, False, id="same-meta-1s"),
        pytest.param(59.0, {}, False, id="same-meta-59s"),
        pytest.param(60.0, {}, True, id="same-meta-at-checkpoint"),
        pytest.param(61.0, {}, True, id="same-meta-past-checkpoint"),
        pytest.param(1.0, {"interval": 2.0}, True, id="interval-changed"),
        pytest.param(1.0, {"grace": 5.0}, True, id="grace-set"),
        pytest.param(1.0, {"grace": 0.0}, True, id="grace-unset-to-zero"),
        pytest.param(1.0, {"host": "api-2"}, True, id="host-changed"),
        pytest.param(1.0, {"description": "API"}, True, id="description-changed"),
        pytest.param(0.0, {}, False, id="same-beat-again"),
        pytest.param(-5.0, {"host": "old"}, False, id="older-beat-ignored"),
    ],
)
def test_checkpoint(after: float, changes: dict[str, object], written: bool) -> None:
    sim = Sim(cfg=mkcfg(checkpoint=60.0))
    sim.beat_at(T0)
    assert sim.eval_at(T0).record is not None  # a new subject is created
    stored = sim.committed
    sim.beat_at(T0 + after, **{**BASE, **changes})
    now = T0 + max(after, 0.0) + 0.5
    out = sim.eval_at(now)
    assert out.notification is None
    assert (out.record is not None) is written
    if out.record is not None:
        assert out.record.last_seen == T0 + after
        assert out.record.updated_by == MONITOR
    else:
        assert sim.committed == stored
    # Written or not, the deadline follows the newest beat.
    newest = merged(stored, sim.beat, SUBJECT)
    assert newest.last_seen == max(T0, T0 + after)
    assert out.due == newest.last_seen + newest.window_ns / SECOND + 1.0


def test_new_subject_is_created() -> None:
    beat = mkbeat(T0)
    out = evaluate(SUBJECT, None, beat, T0 + 0.25, mkcfg(), monitor=MONITOR)
    assert out.notification is None
    assert out.record is not None
    assert out.record == Record(
        subject=SUBJECT,
        description="API service",
        host="api-1",
        interval_ns=SECOND,
        grace_ns=None,
        last_seen=T0,
        generated_at="2024-06-01T12:00:00Z",
        updated_by=MONITOR,
    )
    assert out.due == T0 + 2.0


def test_no_beat_no_write() -> None:
    sim = Sim()
    sim.beat_at(T0)
    sim.eval_at(T0)
    writes = sim.writes
    sim.beat = None  # e.g. the stream was not read yet
    assert sim.eval_at(T0 + 0.5).record is None
    assert sim.writes == writes


def test_checkpointing_keeps_kv_writes_rare() -> None:
    """Beats every second for ten minutes: about one write per checkpoint period."""
    sim = Sim(cfg=mkcfg(checkpoint=60.0))
    for i in range(600):
        sim.beat_at(T0 + i)
        sim.eval_at(T0 + i + 0.5)
    assert sim.sent == []
    assert sim.writes == 1 + 599 // 60  # the create, then one per full minute


@pytest.mark.parametrize(
    ("rec_last_seen", "beat_at", "takes_beat"),
    [
        pytest.param(T0, T0 + 1, True, id="newer-beat"),
        pytest.param(T0, T0, False, id="same-beat"),
        pytest.param(T0, T0 - 1, False, id="older-beat"),
        pytest.param(None, T0, True, id="no-record"),
        pytest.param(T0, None, False, id="no-beat"),
    ],
)
def test_merged(rec_last_seen: float | None, beat_at: float | None, takes_beat: bool) -> None:
    rec = None
    if rec_last_seen is not None:
        rec = Record(subject=SUBJECT, interval_ns=SECOND, last_seen=rec_last_seen, host="old")
    beat = None if beat_at is None else mkbeat(beat_at, interval=2.0, host="new")
    got = merged(rec, beat, SUBJECT)
    assert got.subject == SUBJECT
    if takes_beat:
        assert beat is not None
        assert (got.last_seen, got.host, got.interval_ns) == (beat.last_seen, "new", 2 * SECOND)
    else:
        assert got is rec


# ----- health and miss_count -------------------------------------------------------------


@pytest.mark.parametrize(
    ("interval", "grace", "alert_active", "elapsed", "expected"),
    [
        pytest.param(1.0, None, False, 0.5, Health.OK, id="ok"),
        pytest.param(1.0, None, False, 1.0, Health.OK, id="at-window-ok"),
        pytest.param(1.0, None, False, 1.0 + HAIR, Health.LATE, id="past-window-late"),
        pytest.param(1.0, None, False, 1.5, Health.LATE, id="late-within-tolerance"),
        pytest.param(1.0, None, False, 100.0, Health.LATE, id="late-no-alert-yet"),
        pytest.param(1.0, 5.0, False, 3.0, Health.OK, id="grace-ok"),
        pytest.param(1.0, 5.0, False, 5.5, Health.LATE, id="grace-late"),
        pytest.param(1.0, None, True, 5.0, Health.ALERT, id="alert"),
        pytest.param(1.0, None, True, 0.0, Health.ALERT, id="alert-wins"),
        pytest.param(0.0, None, False, 100.0, Health.OK, id="no-interval"),
    ],
)
def test_health(
    interval: float, grace: float | None, alert_active: bool, elapsed: float, expected: Health
) -> None:
    rec = Record(
        subject=SUBJECT,
        interval_ns=ns(interval),
        grace_ns=None if grace is None else ns(grace),
        last_seen=T0,
        alert_active=alert_active,
    )
    assert health(rec, T0 + elapsed) is expected


@pytest.mark.parametrize(
    ("interval", "elapsed", "expected"),
    [
        pytest.param(1.0, 0.5, 0, id="under-one"),
        pytest.param(1.0, 1.0, 1, id="exactly-one"),
        pytest.param(1.0, 2.5, 2, id="floor"),
        pytest.param(1.0, 3.0, 3, id="exactly-three"),
        pytest.param(0.25, 1.0, 4, id="sub-second-interval"),
        pytest.param(15.0, 44.875, 2, id="interval15"),
        pytest.param(1.0, -3.0, 0, id="clock-behind-last-seen"),
        pytest.param(0.0, 10.0, 0, id="no-interval"),
    ],
)
def test_miss_count(interval: float, elapsed: float, expected: int) -> None:
    rec = Record(subject=SUBJECT, interval_ns=ns(interval), last_seen=T0)
    assert miss_count(rec, T0 + elapsed) == expected


# ----- Schedule --------------------------------------------------------------------------


class Tracks(dict[str, Track]):
    """Tracks by subject, made on first use (the monitor's table, for these tests)."""

    def __missing__(self, subject: str) -> Track:
        self[subject] = track = Track(subject=subject)
        return track


def subjects(tracks: list[Track]) -> list[str]:
    return [t.subject for t in tracks]


@pytest.mark.parametrize(
    ("pushes", "now", "popped", "left_next"),
    [
        pytest.param([("a", 3), ("b", 1), ("c", 2)], 10, ["b", "c", "a"], NEVER, id="order"),
        pytest.param([("a", 3), ("b", 1), ("c", 2)], 2, ["b", "c"], 3, id="only-due"),
        pytest.param([("a", 1), ("b", 1)], 1, ["a", "b"], NEVER, id="due-at-now"),
        pytest.param([("a", 5), ("a", 2)], 2, ["a"], NEVER, id="earlier-replaces-later"),
        pytest.param([("a", 2), ("a", 5)], 2, ["a"], NEVER, id="later-keeps-earlier"),
        pytest.param([("a", 2), ("a", 5)], 1, [], 2, id="later-keeps-earlier-next"),
        pytest.param([("a", 5), ("a", 2), ("a", 1)], 10, ["a"], NEVER, id="one-live-entry"),
        pytest.param([("a", NEVER), ("b", 1)], 100, ["b"], NEVER, id="never-not-scheduled"),
        pytest.param([], 100, [], NEVER, id="empty"),
    ],
)
def test_schedule_pop_due(
    pushes: list[tuple[str, float]], now: float, popped: list[str], left_next: float
) -> None:
    s, t = Schedule(), Tracks()
    for subject, due in pushes:
        s.push(t[subject], due)
    assert subjects(s.pop_due(now)) == popped
    assert s.next_due() == left_next
    assert s.pop_due(now) == []  # popped subjects are gone
    assert all(t[p].due is None for p in popped)


def test_schedule_push_after_pop_and_len() -> None:
    s, t = Schedule(), Tracks()
    s.push(t["a"], 5)
    s.push(t["a"], 2)
    assert len(s) == 1
    assert t["a"].due == 2
    assert subjects(s.pop_due(2)) == ["a"]
    assert len(s) == 0
    s.push(t["a"], 5)  # rescheduled after evaluation; the stale (5, a) entry must not double it
    assert len(s) == 1
    assert s.next_due() == 5
    assert subjects(s.pop_due(10)) == ["a"]
    assert s.pop_due(10) == []
    assert s.next_due() == NEVER


def test_schedule_discard() -> None:
    s, t = Schedule(), Tracks()
    s.push(t["a"], 1)
    s.push(t["b"], 2)
    s.discard(t["a"])
    s.discard(t["missing"])
    assert len(s) == 1
    assert s.next_due() == 2
    assert subjects(s.pop_due(10)) == ["b"]
    s.push(t["a"], 3)  # a discarded subject can come back
    assert subjects(s.pop_due(10)) == ["a"]


def test_schedule_a_new_track_for_a_subject_is_not_confused_with_the_old() -> None:
    s = Schedule()
    old, new = Track(subject="a"), Track(subject="a")
    s.push(old, 1)
    s.discard(old)  # retired; its heap entry is stale
    s.push(new, 1)  # same subject, same deadline, another object
    s.push(Track(subject="b"), 1)
    assert len(s) == 2
    popped = s.pop_due(1)
    assert [p is new for p in popped if p.subject == "a"] == [True]
    assert subjects(popped) == ["a", "b"]


@pytest.mark.parametrize(
    ("limit", "batches"),
    [
        pytest.param(2, [["s0", "s1"], ["s2", "s3"], ["s4"], []], id="limit2"),
        pytest.param(5, [["s0", "s1", "s2", "s3", "s4"], []], id="limit5"),
        pytest.param(None, [["s0", "s1", "s2", "s3", "s4"], []], id="no-limit"),
    ],
)
def test_schedule_pop_due_limit(limit: int | None, batches: list[list[str]]) -> None:
    s, t = Schedule(), Tracks()
    for i in range(5):
        s.push(t[f"s{i}"], float(i))
    s.push(t["later"], 100.0)
    for batch in batches:
        assert subjects(s.pop_due(10.0, limit=limit)) == batch
    assert len(s) == 1
    assert s.next_due() == 100.0


def test_schedule_limit_counts_stale_entries_too() -> None:
    """One call's cost is bounded by ``limit`` even when stale entries lead the heap."""
    s, t = Schedule(), Tracks()
    s.push(t["a"], 1)
    s.move(t["a"], 8)  # leaves a stale (1, a) at the front
    s.push(t["b"], 2)
    s.push(t["c"], 3)
    assert subjects(s.pop_due(10, limit=2)) == ["b"]  # examined (1, a) and (2, b)
    tracks, examined = s.pop_scan(10, limit=5)
    assert subjects(tracks) == ["c", "a"] and examined == 2
    assert s.pop_scan(10, limit=5) == ([], 0) and len(s) == 0


def test_schedule_next_due_drops_a_bounded_number_of_stale_entries() -> None:
    """Past NEXT_DUE_SCAN stale entries at the front, next_due answers a lower bound
    (the first remaining entry's deadline) instead of dropping them all at once."""
    s, t = Schedule(), Tracks()
    moved = NEXT_DUE_SCAN + NEXT_DUE_SCAN // 2
    for i in range(moved):
        s.push(t[f"m{i}"], 1.0)
        s.move(t[f"m{i}"], 100.0)  # each leaves a stale entry at 1.0
    s.push(t["live"], 50.0)
    assert s.next_due() == 1.0  # a bound below the live deadlines
    assert s.next_due() == 50.0  # the rest dropped: the true next deadline
    assert len(s) == moved + 1
    assert subjects(s.pop_due(60.0)) == ["live"]


def test_schedule_many_subjects_none_due() -> None:
    s, t = Schedule(), Tracks()
    n = 100_000
    for i in range(n):
        s.push(t[f"heartbeat.s{i}"], T0 + 60 + i % 1000)
    assert s.pop_due(T0) == []
    assert len(s) == n
    assert s.next_due() == T0 + 60
    due = subjects(s.pop_due(T0 + 60))
    assert sorted(due) == sorted(f"heartbeat.s{i}" for i in range(0, n, 1000))
    assert len(s) == n - n // 1000


def test_schedule_compacts_stale_entries_keeping_order_and_live_count() -> None:
    """Deadlines moved again and again (and discards) leave stale entries; once they
    pass half the live ones (and COMPACT_MIN) the heap is rebuilt with the live ones
    only, and pops come out as before."""
    s, t = Schedule(), Tracks()
    n = 2000
    for i in range(n):
        s.push(t[f"s{i}"], 1000.0 + i)
    for rnd in range(1, 4):  # every deadline moved three times: 3n stale entries made
        for i in range(n):
            s.move(t[f"s{i}"], 1000.0 + i + rnd * 0.5 * (-1) ** i)
    for i in range(0, n, 4):
        s.discard(t[f"s{i}"])
    live = n - n // 4
    assert len(s) == live
    assert len(s._heap) <= live + live // 2 + COMPACT_MIN + 1  # compacted on the way
    s.compact()
    assert len(s._heap) == live
    expected = sorted((t[f"s{i}"].due or 0.0, f"s{i}") for i in range(n) if i % 4)
    assert s.next_due() == expected[0][0]
    assert subjects(s.pop_due(NEVER)) == [name for _, name in expected]
    assert len(s) == 0 and s.next_due() == NEVER


def test_schedule_compaction_keeps_one_entry_for_a_deadline_moved_back() -> None:
    s, t = Schedule(), Tracks()
    s.push(t["a"], 5)
    s.move(t["a"], 7)
    s.move(t["a"], 5)  # two (5, a) entries now, both matching its deadline
    s.push(t["b"], 6)
    s.compact()
    assert len(s._heap) == 2 and len(s) == 2
    assert subjects(s.pop_due(10)) == ["a", "b"]
    assert s.pop_due(10) == [] and s.next_due() == NEVER


# ----- properties ------------------------------------------------------------------------

EIGHTH = 0.125  # all generated times and durations are multiples of 1/8 s: exact floats

events = st.lists(
    st.tuples(st.sampled_from(["beat", "eval", "eval", "sight"]), st.integers(0, 240)),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(
    evs=events,
    interval=st.integers(1, 24),
    grace=st.one_of(st.none(), st.integers(0, 80)),
    tolerance=st.integers(0, 16),
    repeat=st.sampled_from([0, 4, 40, 400]),
    checkpoint=st.sampled_from([0, 8, 480]),
)
def test_alert_transitions_property(
    evs: list[tuple[str, int]],
    interval: int,
    grace: int | None,
    tolerance: int,
    repeat: int,
    checkpoint: int,
) -> None:
    sim = Sim(
        cfg=mkcfg(
            tolerance=tolerance * EIGHTH, repeat=repeat * EIGHTH, checkpoint=checkpoint * EIGHTH
        )
    )
    t = T0
    active: str | None = None  # the alert id of the open alert
    alert_ids: set[str] = set()
    for kind, step in evs:
        t += step * EIGHTH
        if kind == "beat":
            sim.beat_at(
                t, interval=interval * EIGHTH, grace=None if grace is None else grace * EIGHTH
            )
            continue
        if kind == "sight":
            sim.sight_since = t
            continue
        before = len(sim.sent)
        out = sim.eval_at(t)
        assert len(sim.sent) - before <= 1
        n = out.notification
        if n is not None:
            assert out.record is not None
            assert out.record.pending[-1].notification == n
            if n.event is EventKind.ALERT:
                assert active is None, "two ALERTs without a RESOLVED between them"
                assert n.alert_id not in alert_ids
                # never early, and never on silence seen only while blind
                window = (n.window_ns / SECOND) + sim.cfg.tolerance_s
                assert n.last_seen is not None and t - n.last_seen > window
                assert t - sim.sight_since > window
                active = n.alert_id
                alert_ids.add(active)
            elif n.event is EventKind.REPEAT:
                assert active == n.alert_id
            else:
                assert n.event is EventKind.RESOLVED
                assert active == n.alert_id, "RESOLVED without a preceding ALERT"
                active = None
        if sim.rec is None:  # no beat yet: nothing to track
            assert out == Outcome(None, None, NEVER)
            continue
        rec = sim.rec
        assert rec.alert_active is (active is not None)
        assert health(rec, t) is Health.ALERT or active is None
        # The deadline is honest: nothing happens before it without a new beat.
        if t < out.due < NEVER:
            probe = evaluate(
                SUBJECT, rec, sim.beat, (t + out.due) / 2, sim.cfg, sight_since=sim.sight_since
            )
            assert probe.notification is None
    ids = [n.notification_id for n in sim.sent]
    assert len(ids) == len(set(ids))


def test_pending_default_is_one_shared_immutable_empty() -> None:
    """Every record without deliveries shares the one empty tuple (no per-record list),
    committing a notification builds a new tuple, and the JSON is the same array."""
    from heartbeat.store import decode_record, encode_record

    a, b = Record(subject="heartbeat.a"), Record(subject="heartbeat.b")
    assert a.pending is b.pending and a.pending == ()
    decoded = decode_record(b'{"subject":"heartbeat.a","pending":[]}')
    assert decoded.pending == () and encode_record(decoded) == b'{"subject":"heartbeat.a"}'
    sim = Sim()
    sim.beat_at(T0)
    out = sim.eval_at(T0 + 5)
    assert out.record is not None and len(out.record.pending) == 1
    assert isinstance(out.record.pending, tuple)
    assert Record(subject="heartbeat.c").pending == ()  # the default was not touched
    data = encode_record(out.record)
    assert b'"pending":[{' in data
    again = decode_record(data)
    assert isinstance(again.pending, tuple) and encode_record(again) == data
