"""Subjects, the per-replica table of tracks: records, beats, news and deadlines.

Pure: records and beats are built by hand, ``now`` is a number.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import msgspec
import pytest

from heartbeat.durations import SECOND
from heartbeat.engine import Beat, EngineConfig, Job, Pending, Record
from heartbeat.notification import EventKind, Notification
from heartbeat.store import decode_record, encode_record
from heartbeat.subjects import (
    CHECKPOINTS_PER_S,
    Subjects,
    Track,
    checkpoint_period,
    create_allowance,
)

A = "heartbeat.service.a"
B = "heartbeat.service.b"
C = "heartbeat.service.c"
T0 = 1_700_000_000.0
HAIR = 1 / 1024
TOLERANCE = 1.0
CFG = EngineConfig(repeat_every_s=60.0, tolerance_s=TOLERANCE, checkpoint_every_s=60.0)
WINDOW = 1.0  # every record and beat here: interval 1 s, no grace


def mkbeat(at: float, *, host: str = "h1", interval: float = 1.0) -> Beat:
    return Beat(
        last_seen=at,
        interval_ns=round(interval * SECOND),
        grace_ns=None,
        host=host,
        description="svc",
        generated_at="2024-06-01T12:00:00Z",
    )


def mkpending(nid: str) -> Pending:
    n = Notification(
        event=EventKind.ALERT,
        subject=A,
        description="svc",
        host="h1",
        last_seen=T0,
        interval_ns=SECOND,
        window_ns=SECOND,
        missed_for_ns=3 * SECOND,
        miss_count=3,
        alert_id=nid.split("-")[0],
        notification_id=nid,
        created_at=T0 + 3,
        monitor="m1",
    )
    return Pending(notification=n, channels=["log"])


def mkrecord(
    subject: str = A,
    *,
    at: float = T0,
    host: str = "h1",
    alert: bool = False,
    pending: list[Pending] | None = None,
) -> Record:
    return Record(
        subject=subject,
        description="svc",
        host=host,
        interval_ns=SECOND,
        last_seen=at,
        alert_active=alert,
        alert_id="a1" if alert else "",
        alert_since=at + 3 if alert else None,
        alert_last_seen=at if alert else None,
        last_notified=at + 3 if alert else None,
        notify_count=1 if alert else 0,
        pending=tuple(pending or ()),
    )


def mksubjects() -> Subjects:
    return Subjects(CFG)


def take_all(s: Subjects) -> list[str]:
    """Everything due at any time, and the news."""
    return s.take_due(float("inf"))


# ----- records ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    [
        pytest.param("", id="empty"),
        pytest.param("heartbeat.*", id="wildcard"),
        pytest.param("heartbeat.>", id="gt-wildcard"),
        pytest.param("heartbeat..a", id="empty-token"),
        pytest.param("heartbeat.a b", id="space"),
        pytest.param("heartbeat.a$", id="bad-char"),
    ],
)
def test_set_record_ignores_invalid_subjects(subject: str) -> None:
    s = mksubjects()
    s.set_record(subject, mkrecord(subject), 1)
    s.set_record(subject, mkrecord(subject), 2)
    assert s.ignored_records == 2
    assert len(s) == 0
    assert subject not in s.known
    assert s.held(subject) is None
    assert s.pending == set()
    assert take_all(s) == []


def test_set_record_holds_a_valid_one() -> None:
    s = mksubjects()
    rec = mkrecord()
    s.set_record(A, rec, 7)
    assert s.ignored_records == 0
    assert s.held(A) == (rec, 7)
    assert s.record(A) is rec
    assert s.beat(A) is None
    assert A in s.known
    track = s.get(A)
    assert track is not None
    assert track.due == T0 + WINDOW + TOLERANCE  # scheduled at its alert deadline


@pytest.mark.parametrize(
    ("first_rev", "second_rev", "second_wins"),
    [
        pytest.param(5, 4, False, id="older-ignored"),
        pytest.param(5, 5, False, id="equal-ignored-own-echo"),
        pytest.param(5, 6, True, id="newer-held"),
    ],
)
def test_set_record_revision_order(first_rev: int, second_rev: int, second_wins: bool) -> None:
    s = mksubjects()
    first, second = mkrecord(at=T0), mkrecord(at=T0 + 10, host="h2")
    s.set_record(A, first, first_rev)
    s.set_record(A, second, second_rev)
    assert s.held(A) == ((second, second_rev) if second_wins else (first, first_rev))


def test_set_record_after_forget_takes_any_revision() -> None:
    s = mksubjects()
    s.on_beat(A, mkbeat(T0))
    s.set_record(A, mkrecord(), 9)
    s.forget_record(A)
    rec = mkrecord(at=T0 + 1)
    s.set_record(A, rec, 3)
    assert s.held(A) == (rec, 3)


def test_set_record_naming_another_subject_uses_the_key() -> None:
    s = mksubjects()
    rec = mkrecord(B, host="by-hand")
    s.set_record(A, rec, 1)
    held = s.record(A)
    assert held is not None
    assert held.subject == A
    assert held == msgspec.structs.replace(rec, subject=A)
    assert s.get(B) is None


@pytest.mark.parametrize(
    ("steps", "pending"),
    [
        pytest.param([("set", A, True)], {A}, id="record-with-pending"),
        pytest.param([("set", A, False)], set(), id="record-without"),
        pytest.param([("set", A, True), ("set", A, False)], set(), id="delivered"),
        pytest.param([("set", A, False), ("set", A, True)], {A}, id="new-notification"),
        pytest.param([("set", A, True), ("forget", A, None)], set(), id="forgotten"),
        pytest.param([("set", A, True), ("retire", A, None)], set(), id="retired"),
        pytest.param([("set", A, True), ("hold-none", A, None)], set(), id="hold-none"),
        pytest.param([("set", A, True), ("set", B, True), ("set", A, False)], {B}, id="two"),
    ],
)
def test_pending_follows_records(
    steps: list[tuple[str, str, bool | None]], pending: set[str]
) -> None:
    s = mksubjects()
    for rev, (op, subject, owes) in enumerate(steps, start=1):
        if op == "set":
            s.set_record(
                subject, mkrecord(subject, pending=[mkpending("a1-1")] if owes else []), rev
            )
        elif op == "forget":
            s.forget_record(subject)
        elif op == "retire":
            s.retire(subject)
        else:
            s.hold(subject, None)
    assert s.pending == pending


def test_an_ignored_older_revision_does_not_change_pending() -> None:
    s = mksubjects()
    s.set_record(A, mkrecord(pending=[mkpending("a1-1")]), 5)
    s.set_record(A, mkrecord(), 4)
    assert s.pending == {A}


# ----- beats -----------------------------------------------------------------------------


def test_first_beat_schedules_and_queues_a_first_record() -> None:
    """A new subject is not news to evaluate at once (nothing to commit yet: the stream
    keeps its beat): it gets its deadline and a place in the queue for a first record."""
    s = mksubjects()
    beat = mkbeat(T0)
    s.on_beat(A, beat)
    assert s.dirty == set()
    assert s.beat(A) is beat
    assert s.record(A) is None
    assert A in s.known
    track = s.get(A)
    assert track is not None
    assert track.due == T0 + WINDOW + TOLERANCE
    assert list(s.unrecorded) == [A]


def test_first_job_beat_is_news() -> None:
    """A job's runs fold from every beat, so its first record is made at once."""
    s = mksubjects()
    s.on_beat(A, msgspec.structs.replace(mkbeat(T0), job=Job(kind="start", run_id="r1")))
    assert s.dirty == {A}
    assert not s.unrecorded


def test_take_unrecorded_oldest_first_skipping_recorded_and_gone() -> None:
    s = mksubjects()
    for subject in (A, B, C):
        s.on_beat(subject, mkbeat(T0))
    s.set_record(A, mkrecord(A), 1)  # recorded meanwhile (a mirrored record, an alert)
    s.retire(B)
    s.on_beat("heartbeat.service.d", mkbeat(T0))
    assert s.take_unrecorded(1) == [C]
    assert s.take_unrecorded(5) == ["heartbeat.service.d"]
    assert s.take_unrecorded(5) == []


@pytest.mark.parametrize(
    ("tokens", "last", "now", "rate", "allowed"),
    [
        pytest.param(0.0, None, T0, 500.0, 500.0, id="first-tick-full"),
        pytest.param(0.0, T0, T0 + 0.2, 500.0, 100.0, id="refilled-by-elapsed"),
        pytest.param(300.0, T0, T0 + 10, 500.0, 500.0, id="capped-at-a-second"),
        pytest.param(3.0, T0, T0 - 1, 500.0, 3.0, id="clock-back"),
        pytest.param(0.0, T0, T0 + 0.5, 0.5, 0.25, id="slow-rate"),
        pytest.param(0.0, None, T0, 0.5, 1.0, id="at-least-one"),
    ],
)
def test_create_allowance(
    tokens: float, last: float | None, now: float, rate: float, allowed: float
) -> None:
    assert create_allowance(tokens, last, now, rate) == pytest.approx(allowed)


@pytest.mark.parametrize(
    ("second", "kept"),
    [
        pytest.param(T0 - 1, T0, id="older-ignored"),
        pytest.param(T0, T0, id="same-time-ignored"),
        pytest.param(T0 + 1, T0 + 1, id="newer-taken"),
    ],
)
def test_beat_order(second: float, kept: float) -> None:
    s = mksubjects()
    s.on_beat(A, mkbeat(T0))
    s.on_beat(A, mkbeat(second, host="other"))
    beat = s.beat(A)
    assert beat is not None
    assert beat.last_seen == kept
    assert beat.host == ("other" if kept != T0 else "h1")


def settled(rec: Record, *, popped: bool = True) -> Subjects:
    """A subject with a committed record and no news; its deadline popped if ``popped``."""
    s = mksubjects()
    s.set_record(A, rec, 1)
    if popped:
        assert s.take_due(T0 + 10_000) == [A]
    assert s.dirty == set()
    return s


@pytest.mark.parametrize(
    ("rec", "beat", "dirty"),
    [
        pytest.param(mkrecord(alert=True), mkbeat(T0 + 50), True, id="newer-beat-during-alert"),
        pytest.param(mkrecord(), mkbeat(T0 + 1, host="h2"), True, id="host-changed"),
        pytest.param(mkrecord(), mkbeat(T0 + 1, interval=2.0), True, id="interval-changed"),
        pytest.param(mkrecord(), mkbeat(T0 + 1), False, id="steady"),
    ],
)
def test_on_beat_news(rec: Record, beat: Beat, dirty: bool) -> None:
    s = settled(rec)
    s.on_beat(A, beat)
    assert (A in s.dirty) is dirty


def test_beat_during_alert_is_news_once() -> None:
    """The first beat seen during an alert is evaluated (it may resolve); the same beat
    again is not news."""
    s = settled(mkrecord(alert=True))
    s.on_beat(A, mkbeat(T0))
    assert s.dirty == {A}
    assert s.take_due(T0 + 10) == [A]
    s.on_beat(A, mkbeat(T0))
    s.on_beat(A, mkbeat(T0 - 1))
    assert s.dirty == set()
    s.on_beat(A, mkbeat(T0 + 1))
    assert s.dirty == {A}


def test_steady_beat_schedules_the_deadline() -> None:
    s = settled(mkrecord(at=T0))
    track = s.get(A)
    assert track is not None and track.due is None
    s.on_beat(A, mkbeat(T0 + 5))
    assert track.due == T0 + 5 + WINDOW + TOLERANCE
    assert s.schedule.next_due() == T0 + 5 + WINDOW + TOLERANCE
    assert s.dirty == set()


def test_steady_beat_counts_from_sight_since() -> None:
    s = settled(mkrecord(at=T0))
    s.sight_since = T0 + 100
    s.on_beat(A, mkbeat(T0 + 5))
    track = s.get(A)
    assert track is not None
    assert track.due == T0 + 100 + WINDOW + TOLERANCE


def test_steady_beat_leaves_a_set_deadline() -> None:
    """A newer beat before the deadline leaves it: the early entry pops first."""
    s = settled(mkrecord(at=T0), popped=False)
    track = s.get(A)
    assert track is not None and track.due == T0 + WINDOW + TOLERANCE
    s.on_beat(A, mkbeat(T0 + 1))
    assert track.due == T0 + WINDOW + TOLERANCE
    assert s.dirty == set()


def test_steady_beat_moves_a_deadline_it_has_passed() -> None:
    """An old record's deadline (loaded at start-up) behind a newer beat is moved at
    once, so it does not pop and cost an evaluation."""
    s = settled(mkrecord(at=T0), popped=False)
    track = s.get(A)
    assert track is not None and track.due == T0 + WINDOW + TOLERANCE
    s.on_beat(A, mkbeat(T0 + 5))
    assert track.due == T0 + 5 + WINDOW + TOLERANCE
    assert len(s.schedule) == 1
    assert s.take_due(T0 + 5) == []  # the old entry is stale
    assert s.take_due(T0 + 5 + WINDOW + TOLERANCE) == [A]
    assert len(s.schedule) == 0


def test_refresh_moves_deadlines_steady_beats_left_early() -> None:
    """A standby never evaluates: its early deadlines are moved to the true ones, and
    a subject really overdue stays due for the next leader."""
    s = mksubjects()
    s.set_record(A, mkrecord(A, at=T0), 1)
    s.set_record(B, mkrecord(B, at=T0), 1)
    s.on_beat(A, mkbeat(T0 + 1))  # before A's deadline (T0 + 2): not moved
    assert s.refresh(T0 + 2.5) is False  # both examined: nothing more due
    track = s.get(A)
    assert track is not None and track.due == T0 + 1 + WINDOW + TOLERANCE
    assert s.take_due(T0 + 2.5) == [B]  # B is silent: still due


def test_take_due_examines_at_most_limit_entries_and_leaves_the_rest_due() -> None:
    s = mksubjects()
    silent = [f"heartbeat.silent{i}" for i in range(5)]
    for subject in silent:
        s.set_record(subject, mkrecord(subject, at=T0), 1)
    first = s.take_due(T0 + 2.5, limit=3)
    assert len(first) == 3
    assert s.schedule.next_due() <= T0 + 2.5  # the rest: still due, for the next tick
    assert sorted(first + s.take_due(T0 + 2.5, limit=3)) == sorted(silent)
    assert s.take_due(T0 + 2.5, limit=3) == []


@pytest.mark.parametrize(
    ("stale", "early", "silent", "more", "entries_after"),
    [
        pytest.param(5, 0, 0, True, 7, id="a-slice-of-stale-entries-goes-on"),
        pytest.param(0, 3, 0, True, 3, id="a-slice-of-early-deadlines-goes-on"),
        pytest.param(0, 0, 3, False, 3, id="a-slice-of-the-truly-due-stops"),
        pytest.param(1, 0, 1, False, 2, id="a-short-slice-stops"),
    ],
)
def test_refresh_examines_at_most_limit_entries(
    stale: int, early: int, silent: int, more: bool, entries_after: int
) -> None:
    """Stale heap entries count towards the limit: a slice's cost stays bounded."""
    s = mksubjects()
    for i in range(stale):  # deadlines moved later leave stale entries at the front
        subject = f"heartbeat.stale{i}"
        s.set_record(subject, mkrecord(subject, at=T0), 1)
        track = s.get(subject)
        assert track is not None
        s.schedule.move(track, T0 + 100)
    for i in range(early):
        subject = f"heartbeat.early{i}"
        s.set_record(subject, mkrecord(subject, at=T0), 1)
        s.on_beat(subject, mkbeat(T0 + 1))  # before its deadline: left early
    for i in range(silent):
        subject = f"heartbeat.silent{i}"
        s.set_record(subject, mkrecord(subject, at=T0), 1)
    assert s.refresh(T0 + 2.5, limit=3) is more
    assert len(s.schedule._heap) == entries_after  # 3 examined at most: 10 - 3 for 5 stale
    assert len(s.schedule) == stale + early + silent


@pytest.mark.parametrize(
    ("rec", "beat_at", "evaluated"),
    [
        pytest.param(mkrecord(at=T0), T0 + 1.5, False, id="steady-moved-on"),
        pytest.param(mkrecord(at=T0), T0, True, id="no-newer-beat"),
        pytest.param(mkrecord(at=T0, alert=True), T0 + 1.5, True, id="alerting"),
        pytest.param(mkrecord(at=T0 - 59), T0 + 1.5, True, id="checkpoint-due"),
    ],
)
def test_take_due_moves_on_a_steady_subject_without_evaluating(
    rec: Record, beat_at: float, evaluated: bool
) -> None:
    s = mksubjects()
    s.set_record(A, rec, 1)
    track = s.get(A)
    assert track is not None
    track.beat = mkbeat(beat_at)  # as a steady beat leaves it: the early deadline kept
    s.schedule.move(track, T0 + 2)
    assert s.take_due(T0 + 2) == ([A] if evaluated else [])
    if not evaluated:
        assert track.due == beat_at + WINDOW + TOLERANCE


def test_schedule_move() -> None:
    s = mksubjects()
    s.on_beat(A, mkbeat(T0))
    track = s.get(A)
    assert track is not None
    s.schedule.move(track, T0 + 100)
    assert s.schedule.next_due() == T0 + 100
    s.schedule.move(track, T0 + 50)
    assert s.schedule.pop_due(T0 + 60) == [track] and track.due is None
    s.schedule.move(track, T0 + 70)  # unscheduled: pushed
    s.schedule.move(track, float("inf"))  # never: unscheduled
    assert track.due is None and len(s.schedule) == 0 and s.schedule.next_due() == float("inf")


def test_newer_beat_without_a_record_schedules() -> None:
    """Beats of a subject still waiting for its first record only set its deadline."""
    s = mksubjects()
    s.on_beat(A, mkbeat(T0))
    assert s.take_due(T0 + 10) == [A]
    s.on_beat(A, mkbeat(T0 + 5))
    assert s.dirty == set()
    track = s.get(A)
    assert track is not None and track.due == T0 + 5 + WINDOW + TOLERANCE
    assert list(s.unrecorded) == [A]  # queued once


# ----- forgetting, retiring ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("has_record", "has_beat", "forget", "kept"),
    [
        pytest.param(True, True, ["record"], True, id="record-gone-beat-kept"),
        pytest.param(True, True, ["beat"], True, id="beat-gone-record-kept"),
        pytest.param(True, True, ["record", "beat"], False, id="both-gone"),
        pytest.param(True, True, ["beat", "record"], False, id="both-gone-other-order"),
        pytest.param(True, False, ["record"], False, id="record-only"),
        pytest.param(False, True, ["beat"], False, id="beat-only"),
        pytest.param(True, False, ["beat"], True, id="forget-missing-beat-keeps-record"),
        pytest.param(False, True, ["record"], True, id="forget-missing-record-keeps-beat"),
    ],
)
def test_forget(has_record: bool, has_beat: bool, forget: list[str], kept: bool) -> None:
    s = mksubjects()
    if has_beat:
        s.on_beat(A, mkbeat(T0))
    if has_record:
        s.set_record(A, mkrecord(), 1)
    for what in forget:
        if what == "record":
            s.forget_record(A)
        else:
            s.forget_beat(A)
    assert (A in s.known) is kept
    assert len(s) == int(kept)
    if not kept:
        assert take_all(s) == []  # neither scheduled nor dirty


def test_forget_record_keeps_the_beat() -> None:
    s = mksubjects()
    beat = mkbeat(T0)
    s.on_beat(A, beat)
    s.set_record(A, mkrecord(), 4)
    s.forget_record(A)
    assert s.held(A) is None
    assert s.beat(A) is beat
    track = s.get(A)
    assert track is not None and track.rev == 0


def test_forget_unknown_is_harmless() -> None:
    s = mksubjects()
    s.forget_record(A)
    s.forget_beat(A)
    assert len(s) == 0


def test_retire_drops_and_counts() -> None:
    s = mksubjects()
    s.on_beat(A, mkbeat(T0))
    s.set_record(A, mkrecord(pending=[mkpending("a1-1")]), 1)
    s.set_record(B, mkrecord(B), 1)
    s.later(A)
    assert A in s.dirty and A in s.pending
    s.retire(A)
    assert s.retired == 1
    assert A not in s.known
    assert s.get(A) is None
    assert A not in s.pending
    assert A not in s.dirty
    assert len(s.schedule) == 1  # B's deadline only
    assert take_all(s) == [B]
    s.retire(B)
    assert s.retired == 2
    assert len(s) == 0


# ----- take_due --------------------------------------------------------------------------


def test_take_due_due_then_dirty_each_once() -> None:
    s = mksubjects()
    s.set_record(A, mkrecord(A, at=T0), 1)  # due at T0 + 2
    s.set_record(B, mkrecord(B, at=T0 + 10), 1)  # due at T0 + 12
    s.on_beat(C, mkbeat(T0))  # news
    s.later(A)  # due and dirty: once
    got = s.take_due(T0 + 2)
    assert got[0] == A
    assert sorted(got) == sorted([A, C])
    assert s.dirty == set()
    assert s.take_due(T0 + 2) == []  # each once
    assert s.take_due(T0 + 12) == [B]
    assert s.take_due(T0 + 10_000) == []


@pytest.mark.parametrize(
    ("now", "due"),
    [
        pytest.param(T0 + 2 - HAIR, [], id="just-before"),
        pytest.param(T0 + 2, [A], id="at-deadline"),
        pytest.param(T0 + 11, [A], id="between"),
        pytest.param(T0 + 12, [A, B], id="both-in-deadline-order"),
    ],
)
def test_take_due_by_deadline(now: float, due: list[str]) -> None:
    s = mksubjects()
    s.set_record(B, mkrecord(B, at=T0 + 10), 1)
    s.set_record(A, mkrecord(A, at=T0), 1)
    assert s.take_due(now) == due


def test_later_only_for_known_subjects() -> None:
    s = mksubjects()
    s.later(A)
    assert s.dirty == set()
    s.on_beat(A, mkbeat(T0))
    s.take_due(T0)
    s.later(A)
    assert s.take_due(T0) == [A]


# ----- known, hold -------------------------------------------------------------------------


def test_known_holds_exactly_the_admitted() -> None:
    s = mksubjects()
    s.on_beat(A, mkbeat(T0))
    s.set_record(B, mkrecord(B), 1)
    s.set_record("not a subject", mkrecord("not a subject"), 1)
    assert sorted(s.tracks) == [A, B]
    assert A in s.known and B in s.known
    assert C not in s.known
    assert "not a subject" not in s.known
    s.retire(A)
    assert A not in s.known
    assert s.stats() == (1, 1)


@pytest.mark.parametrize("with_beat", [True, False])
def test_hold(with_beat: bool) -> None:
    s = mksubjects()
    if with_beat:
        s.on_beat(A, mkbeat(T0))
    rec = mkrecord()
    s.hold(A, (rec, 3))
    assert s.held(A) == (rec, 3)
    s.hold(A, None)
    assert s.held(A) is None
    assert (A in s.known) is with_beat


@pytest.mark.parametrize(
    ("subjects", "period"),
    [(0, 60.0), (10_000, 60.0), (30_000, 60.0), (30_001, 120.0), (100_000, 240.0),
     (1_000_000, 3840.0)],
)  # fmt: skip
def test_checkpoints_stay_under_a_fleet_wide_rate(subjects: int, period: float) -> None:
    assert checkpoint_period(60.0, subjects) == period
    assert subjects / period <= CHECKPOINTS_PER_S


def _quick_cases() -> list[Track]:
    from heartbeat.jobrules import JobState

    def beat(at: float, grace: int | None = None, interval: float = 2.0) -> Beat:
        return msgspec.structs.replace(mkbeat(at, interval=interval), grace_ns=grace)

    def rec(at: float, **kw: object) -> Record:
        kw.setdefault("interval_ns", 3 * SECOND)
        return Record(subject=B, last_seen=at, **kw)  # type: ignore[arg-type]

    job = msgspec.structs.replace(mkbeat(T0), job=Job(kind="start", run_id="r"))
    return [
        Track(subject=B, beat=beat(T0)),
        Track(subject=B, beat=beat(T0, grace=0)),
        Track(subject=B, beat=beat(T0, grace=3 * SECOND)),
        Track(subject=B, beat=beat(T0, grace=SECOND // 3)),
        Track(subject=B, beat=beat(T0 + 2), record=rec(T0)),  # the beat is newer
        Track(subject=B, beat=beat(T0 - 2), record=rec(T0)),  # the record is newer
        Track(subject=B, beat=beat(T0), record=rec(T0)),  # as old as each other
        Track(subject=B, beat=beat(T0), record=rec(T0 - 9, interval_ns=0)),
        Track(subject=B, beat=beat(T0 - 9), record=rec(T0, interval_ns=0)),
        Track(
            subject=B, beat=beat(T0), record=rec(T0 - 9, alert_active=True, last_notified=T0 - 5)
        ),
        Track(subject=B, beat=beat(T0), record=rec(T0 - 9, job=JobState())),
        Track(subject=B, beat=job),
        Track(subject=B, beat=job, record=rec(T0 - 9)),
        Track(subject=B, record=rec(T0)),
        Track(subject=B, record=rec(T0, alert_active=True, last_notified=T0 - 5)),
        Track(subject=B),
    ]


@pytest.mark.parametrize("track", _quick_cases())
@pytest.mark.parametrize("sight_since", [0.0, T0 - 10, T0 + 5])
@pytest.mark.parametrize("fleet", [1, 100_000])
def test_the_quick_deadline_is_next_due_of_the_view(
    track: Track, sight_since: float, fleet: int
) -> None:
    from heartbeat.engine import next_due
    from heartbeat.routing import Route, Router

    router = Router(["log"], [Route(subjects=["heartbeat.>"], channels=["log"],
                                    repeat_every_s=5.0)])  # fmt: skip
    subjects = Subjects(CFG, router=router)
    subjects.sight_since = sight_since
    for i in range(fleet - 1):  # a fleet this big stretches the checkpoint period
        subjects.tracks[f"heartbeat.x.{i}"] = track
    expected = next_due(track.view(), subjects.engine_for(B), sight_since)
    assert subjects.due_of(track) == expected


def test_a_first_beat_is_scheduled_at_next_due_of_its_view() -> None:
    from heartbeat.engine import next_due

    subjects = Subjects(CFG)
    beat = mkbeat(T0, interval=2.0)
    subjects.on_beat(B, beat)
    track = subjects.get(B)
    assert track is not None and track.due == next_due(track.view(), CFG)


def test_a_deadline_before_the_alarm_calls_on_sooner_once() -> None:
    from heartbeat.subjects import Schedule

    schedule, calls = Schedule(), []
    schedule.on_sooner = lambda: calls.append(schedule.alarm)
    a, b, c = Track(subject=A), Track(subject=B), Track(subject=C)
    schedule.push(a, T0 + 50)  # no alarm set: nobody waits
    assert calls == []
    schedule.alarm = T0 + 10
    schedule.push(b, T0 + 20)  # after the alarm
    schedule.move(a, T0 + 30)
    assert calls == []
    schedule.push(c, T0 + 5)  # sooner: the alarm moves there, one call
    schedule.move(a, T0 + 7)  # not sooner than the new alarm
    assert calls == [T0 + 5]
    schedule.move(b, T0 + 1)
    assert calls == [T0 + 5, T0 + 1]


def test_a_record_equal_to_the_beat_shares_its_objects() -> None:
    """The echo of a record checkpointed from the beat held (decoded: its own strings
    and float) points at the beat's; a record that differs keeps its own values."""
    s = mksubjects()
    beat = mkbeat(T0 + 0.25)
    s.on_beat(A, beat)
    data = encode_record(
        msgspec.structs.replace(mkrecord(at=T0 + 0.25), generated_at=beat.generated_at)
    )
    rec = decode_record(data)
    assert rec.generated_at is not beat.generated_at and rec.last_seen is not beat.last_seen
    s.set_record(A, rec, 1)
    held = s.record(A)
    assert held is rec and encode_record(held) == data  # the same value
    assert held.generated_at is beat.generated_at
    assert held.last_seen is beat.last_seen and held.description is beat.description
    s.on_beat(B, mkbeat(T0 + 5))
    other = mkrecord(B, at=T0)
    s.set_record(B, other, 1)
    assert s.record(B) is other and other.last_seen == T0 and other.generated_at == ""


# ----- the tap: new subjects known before their stream copy ---------------------------


@pytest.mark.parametrize(
    ("tapped_at", "stream_at"),
    [(T0 + 0.2, T0), (T0, T0 + 0.2), (T0, T0)],  # the replica's clock ahead, behind, equal
)
def test_a_tapped_beat_is_replaced_by_its_stream_copy_older_or_not(
    tapped_at: float, stream_at: float
) -> None:
    s = mksubjects()
    s.on_tapped(A, mkbeat(tapped_at), b"tapped")
    assert A in s.tapped and s.due_of(s.tracks[A]) == tapped_at + WINDOW + TOLERANCE
    copy = mkbeat(stream_at)
    s.on_beat(A, copy)
    assert s.tracks[A].beat is copy and not s.tapped
    s.on_beat(A, mkbeat(stream_at - 0.1))  # confirmed: order rules again
    assert s.tracks[A].beat is copy


def test_an_identical_stream_copy_confirms_the_tapped_beat_at_the_servers_time() -> None:
    s = mksubjects()
    tapped = mkbeat(T0 + 0.2)
    s.on_tapped(A, tapped, b"payload")
    assert not s.confirm_tapped(A, b"other payload", T0)  # decoded as any beat instead
    assert not s.confirm_tapped(B, b"payload", T0)  # not tapped
    assert s.confirm_tapped(A, b"payload", T0)
    beat = s.tracks[A].beat
    assert beat is not None and beat.last_seen == T0 and not s.tapped
    assert msgspec.structs.replace(beat, last_seen=tapped.last_seen) == tapped
    assert s.due_of(s.tracks[A]) == T0 + WINDOW + TOLERANCE
    assert not s.confirm_tapped(A, b"payload", T0 + 1)  # once


def test_the_tap_never_changes_a_known_subject_a_job_or_a_full_table() -> None:
    s = Subjects(CFG, max_subjects=2)
    first = mkbeat(T0)
    s.on_beat(A, first)
    assert not s.on_tapped(A, mkbeat(T0 + 5), b"tapped")
    assert s.tracks[A].beat is first and not s.tapped
    assert not s.on_tapped(
        B, msgspec.structs.replace(mkbeat(T0), job=Job(kind="start", run_id="r")), b"tapped"
    )
    assert B not in s.tracks  # a job's runs fold from the stream's beats only
    assert s.on_tapped(B, mkbeat(T0), b"tapped")  # admitted: the only one counted
    assert not s.on_tapped(C, mkbeat(T0), b"tapped")
    assert C not in s.tracks and s.refused == 0  # the stream's copy counts the refusal
    s.on_beat(C, mkbeat(T0))
    assert s.refused == 1


def test_a_tapped_subject_retired_or_purged_is_no_longer_waited_for() -> None:
    s = mksubjects()
    s.on_tapped(A, mkbeat(T0), b"tapped")
    s.on_tapped(B, mkbeat(T0), b"tapped")
    s.retire(A)
    s.forget_beat(B)
    assert not s.tapped and not s.tracks


@pytest.mark.parametrize("gone", ["retire", "forget_beat", "stream copy"])
def test_an_emptied_tapped_table_is_freed_however_it_empties(gone: str) -> None:
    s = mksubjects()
    empty = sys.getsizeof({})
    subjects = [f"heartbeat.burst.{i}" for i in range(1000)]
    for subject in subjects:
        s.on_tapped(subject, mkbeat(T0), b"tapped")
    for subject in subjects:
        if gone == "stream copy":
            s.on_beat(subject, mkbeat(T0 + 1))
        else:
            getattr(s, gone)(subject)
        if subject != subjects[-1]:
            assert sys.getsizeof(s.tapped) > empty  # popping alone keeps the table
    assert not s.tapped and sys.getsizeof(s.tapped) == empty


def test_the_tracks_in_subject_order_follow_subjects_that_come_and_go() -> None:
    s = Subjects(CFG)
    names = [f"heartbeat.o.{c}" for c in "qwertyuiop"]
    for n in names[:5]:
        s.on_beat(n, mkbeat(T0))

    def order() -> list[str]:
        return [t.subject for t in s.in_order()]

    assert order() == sorted(names[:5])
    kept = s.in_order()
    s.on_beat(names[5], mkbeat(T0))  # a first plain beat
    s.on_beat(names[6], msgspec.structs.replace(mkbeat(T0), job=Job(kind="start")))  # a job's
    s.set_record(names[7], Record(subject=names[7], interval_ns=SECOND, last_seen=T0), 1)
    assert order() == sorted(names[:8])
    assert s.in_order() is kept  # new ones were added to it: a merge, not a sort of all
    s.retire(names[0])
    s.forget_beat(names[5])  # no record either: gone
    assert order() == sorted(set(names[:8]) - {names[0], names[5]})
    s.tracks[names[9]] = Track(subject=names[9])  # behind its back: still noticed
    assert order() == sorted(set(names) - {names[0], names[5], names[8]})
    assert s.in_order() is s.in_order()  # kept, not sorted again


def test_alerting_holds_exactly_the_subjects_whose_committed_record_alerts() -> None:
    from heartbeat.engine import Health, health
    from heartbeat.jobrules import JobState

    s = mksubjects()
    B, C, D = A + ".b", A + ".c", A + ".d"
    job_alert = msgspec.structs.replace(mkrecord(C), job=JobState(alert="failed"))
    steps: list[tuple[str, Callable[[], None], set[str]]] = [
        ("an alert", lambda: s.set_record(A, mkrecord(A, alert=True), 1), {A}),
        ("a quiet record", lambda: s.set_record(B, mkrecord(B), 1), {A}),
        ("a job alert", lambda: s.set_record(C, job_alert, 1), {A, C}),
        ("an older revision", lambda: s.set_record(A, mkrecord(A), 1), {A, C}),
        ("resolved", lambda: s.set_record(A, mkrecord(A), 2), {C}),
        ("alerts again", lambda: s.set_record(B, mkrecord(B, alert=True), 2), {B, C}),
        ("a beat", lambda: s.on_beat(B, mkbeat(T0 + 10)), {B, C}),
        ("record deleted", lambda: s.hold(C, None), {B}),
        ("retired", lambda: s.retire(B), set()),
        ("an alert again", lambda: s.set_record(D, mkrecord(D, alert=True), 1), {D}),
        ("its beat purged", lambda: s.forget_beat(D), {D}),
        ("then its record", lambda: s.forget_record(D), set()),
    ]
    for what, step, want in steps:
        step()
        assert s.alerting == want, what
        by_rule = {
            t.subject for t in s if t.record is not None and health(t.record, T0) is Health.ALERT
        }
        assert by_rule == want, what


def load(s: Subjects) -> None:
    """A first start-up's inputs: records from the bucket, then the stream's beats."""
    s.on_beat(C, mkbeat(T0 + 5))  # a new subject, seen before its record (the tap)
    s.set_record(A, mkrecord(A, at=T0), 1)  # steady: a newer beat comes
    s.set_record(B, mkrecord(B, at=T0), 1)  # no beat in the stream
    s.set_record(C, mkrecord(C, at=T0 + 4), 2)
    alerting = "heartbeat.service.alerting"
    s.set_record(alerting, mkrecord(alerting, at=T0, alert=True), 1)
    s.on_beat(A, mkbeat(T0 + 30))  # past its record's deadline
    s.on_beat(alerting, mkbeat(T0 + 30))  # news, not a move
    s.set_record(A, mkrecord(A, at=T0 + 30), 3)  # an update after its beat


def test_deferred_scheduling_gives_every_deadline_and_no_stale_entries() -> None:
    """A start-up that defers gives each track the deadline an undeferred one gives,
    with one heap entry a track (undeferred: the records' deadlines left behind)."""
    plain, deferred = mksubjects(), mksubjects()
    deferred.defer_scheduling()
    load(plain)
    load(deferred)
    early = {t.subject: t.due for t in deferred if t.due is not None}
    assert early == {t.subject: t.due for t in plain if t.subject in (A, C)}  # beats did
    assert deferred.schedule_deferred() == 2  # B and the alerting one
    assert {t.subject: t.due for t in deferred} == {t.subject: t.due for t in plain}
    assert len(deferred.schedule._heap) == len(deferred.schedule) == 4
    assert len(plain.schedule._heap) > len(plain.schedule)
    assert deferred.take_due(float("inf")) == plain.take_due(float("inf"))


def test_a_record_schedules_at_once_after_deferring_ends() -> None:
    s = mksubjects()
    s.defer_scheduling()
    s.set_record(A, mkrecord(A, at=T0), 1)
    assert s.get(A).due is None  # type: ignore[union-attr]
    assert s.schedule_deferred() == 1
    assert s.schedule_deferred() == 0
    s.set_record(B, mkrecord(B, at=T0), 1)
    assert s.get(B).due == T0 + WINDOW + TOLERANCE  # type: ignore[union-attr]
