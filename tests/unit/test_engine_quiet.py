"""The quiet rules of evaluate() (heartbeat.quiet) as tables, with an injected clock.

A subject with a 1 s interval and no grace (window 1 s), tolerance 1 s, repeat 60 s:
ok, it alerts 2 s after its last beat.  Times are T0 plus binary fractions.
"""

from __future__ import annotations

import msgspec
import pytest

from heartbeat.durations import SECOND
from heartbeat.engine import NEVER, EngineConfig, Reason, Record, evaluate, next_due
from heartbeat.jobrules import FAIL, JobState
from heartbeat.notification import EventKind
from heartbeat.quiet import LOUD, Hush, Quiet, QuietKind, combine

SUBJECT = "heartbeat.batch.export"
T0 = 1_700_000_000.0
CFG = EngineConfig(repeat_every_s=60.0, tolerance_s=1.0, checkpoint_every_s=60.0)


def ok(at: float = T0) -> Record:
    return Record(subject=SUBJECT, interval_ns=SECOND, last_seen=at, generated_at="x")


def alerting(last_seen: float = T0, notified: float = T0 + 2.5) -> Record:
    return msgspec.structs.replace(
        ok(last_seen),
        alert_active=True,
        alert_id="a1",
        alert_since=notified,
        alert_last_seen=last_seen,
        last_notified=notified,
        notify_count=1,
    )


def silenced(until: float | None = T0 + 100.0) -> Hush:
    return Hush(Quiet(QuietKind.SILENCED, until, "s1"))


def ended(at: float) -> Hush:
    return Hush(None, at)


def beat_back(rec: Record, at: float) -> Record:
    return msgspec.structs.replace(rec, last_seen=at)


# (name, record, hush, now, reason expected)
CASES = [
    ("loud: alerts past window + tolerance", ok(), LOUD, T0 + 2.5, Reason.ALERT),
    ("silenced: missing does not alert", ok(), silenced(), T0 + 2.5, Reason.NONE),
    ("paused: no alert", ok(), Hush(Quiet(QuietKind.PAUSED, None, "p")), T0 + 50, Reason.NONE),
    ("maint: no alert", ok(), Hush(Quiet(QuietKind.MAINT, T0 + 9, "m[0]")), T0 + 5, Reason.NONE),
    (
        "suppressed: no alert",
        ok(),
        Hush(Quiet(QuietKind.SUPPRESSED, None, "heartbeat.dc1.uplink")),
        T0 + 5,
        Reason.NONE,
    ),
    ("silenced: an active alert does not repeat", alerting(), silenced(), T0 + 90, Reason.NONE),
    ("loud: an active alert repeats", alerting(), LOUD, T0 + 62.5, Reason.REPEAT),
    # Ended at T0+10, still missing: a full window (+ tolerance) from that end.
    ("ended: not before end + window", ok(), ended(T0 + 10), T0 + 12.0, Reason.NONE),
    ("ended: alerts after end + window", ok(), ended(T0 + 10), T0 + 12.25, Reason.ALERT),
    # Long ago: the floor no longer matters.
    ("ended long ago: normal deadline", ok(T0 + 100), ended(T0 + 10), T0 + 102.5, Reason.ALERT),
    # Repeat after quiet: keyed to last_notified, no earlier than end + window.
    ("repeat: not at end of quiet", alerting(), ended(T0 + 70), T0 + 71, Reason.NONE),
    ("repeat: a window after end", alerting(), ended(T0 + 70), T0 + 72.25, Reason.REPEAT),
]


@pytest.mark.parametrize(("name", "rec", "hush", "now", "want"), CASES, ids=[c[0] for c in CASES])
def test_quiet_rules(name: str, rec: Record, hush: Hush, now: float, want: Reason) -> None:
    out = evaluate(SUBJECT, rec, None, now, CFG, hush=hush, new_alert_id="new", channels=["c"])
    assert out.reason is want
    if want is Reason.NONE:
        assert out.notification is None


def test_resolve_is_told_inside_a_silence() -> None:
    rec = beat_back(alerting(), T0 + 20)
    out = evaluate(SUBJECT, rec, None, T0 + 20.5, CFG, hush=silenced(), channels=["c"])
    assert out.reason is Reason.RESOLVED
    assert out.notification is not None and out.notification.event is EventKind.RESOLVED
    assert out.record is not None and out.record.pending


def test_came_back_inside_the_window_nothing_after_it() -> None:
    # Missing inside the window, back before it ended: no alert then, and none after.
    inside = evaluate(SUBJECT, ok(), None, T0 + 5, CFG, hush=silenced(T0 + 10))
    assert inside.reason is Reason.NONE and inside.due == T0 + 10
    back = ok(T0 + 8)
    after = evaluate(SUBJECT, back, None, T0 + 10, CFG, hush=ended(T0 + 10))
    assert after.reason is Reason.NONE
    assert after.due == T0 + 12.0  # end + window + tolerance, then only if still silent


@pytest.mark.parametrize(
    ("hush", "want"),
    [
        (silenced(T0 + 30), T0 + 30),
        (Hush(Quiet(QuietKind.PAUSED, None, "p")), NEVER),
        (ended(T0 + 30), T0 + 32.0),
        (LOUD, T0 + 2.0),
    ],
)
def test_next_due_while_quiet(hush: Hush, want: float) -> None:
    assert next_due(ok(), CFG, 0.0, hush) == want


def test_quiet_overdue_subject_is_not_re_evaluated_every_tick() -> None:
    out = evaluate(SUBJECT, ok(), None, T0 + 50, CFG, hush=silenced(T0 + 100))
    assert out.due == T0 + 100


def test_repeat_timing_stays_keyed_to_last_notified() -> None:
    out = evaluate(SUBJECT, alerting(), None, T0 + 63, CFG, hush=ended(T0 + 30))
    assert out.reason is Reason.REPEAT
    assert out.record is not None and out.record.last_notified == T0 + 63


def failed_job() -> Record:
    job = JobState(last_result=FAIL, exit_code=1)
    return msgspec.structs.replace(ok(T0), job=job)


def test_a_failed_job_is_not_told_while_quiet_but_is_after() -> None:
    quiet = evaluate(SUBJECT, failed_job(), None, T0 + 0.5, CFG, hush=silenced(), channels=["c"])
    assert quiet.reason is not Reason.FAILED and quiet.notification is None
    loud = evaluate(SUBJECT, failed_job(), None, T0 + 0.5, CFG, hush=ended(T0), channels=["c"])
    assert loud.reason is Reason.FAILED


@pytest.mark.parametrize(
    ("hushes", "kind", "ended_at"),
    [
        ([], None, 0.0),
        ([silenced(T0 + 5), Hush(Quiet(QuietKind.PAUSED, None, "p"))], QuietKind.PAUSED, 0.0),
        ([Hush(Quiet(QuietKind.MAINT, T0 + 5, "m")), silenced(T0 + 1)], QuietKind.SILENCED, 0.0),
        ([ended(T0 + 3), ended(T0 + 7), LOUD], None, T0 + 7),
        ([ended(T0 + 3), silenced(T0 + 9)], QuietKind.SILENCED, T0 + 3),
    ],
)
def test_combine(hushes: list[Hush], kind: QuietKind | None, ended_at: float) -> None:
    got = combine(hushes)
    assert (got.quiet.kind if got.quiet else None) is kind
    assert got.ended == ended_at


def test_combine_prefers_the_later_end_among_equals() -> None:
    got = combine([silenced(T0 + 5), silenced(None), silenced(T0 + 9)])
    assert got.quiet is not None and got.quiet.until is None
    got = combine([silenced(T0 + 5), silenced(T0 + 9)])
    assert got.quiet is not None and got.quiet.until == T0 + 9
