"""Why evaluate() writes: the Reason of each Outcome, as a table, and the deadlines
(alert_deadline, repeat_deadline, next_due) checked against evaluate at their boundary.

Times are T0 plus binary fractions, so every boundary is exact in floating point.
"""

from __future__ import annotations

import msgspec
import pytest

from heartbeat.durations import SECOND
from heartbeat.engine import (
    NEVER,
    Beat,
    EngineConfig,
    Reason,
    Record,
    alert_deadline,
    evaluate,
    next_due,
    repeat_deadline,
)
from heartbeat.notification import EventKind

SUBJECT = "heartbeat.service.api"
T0 = 1_700_000_000.0
HAIR = 1 / 1024
REPEAT = 60.0
CHECKPOINT = 60.0
ALERTED_AT = T0 + 2.5  # when the alerting record below alerted (and last notified)


def mkcfg(*, tolerance: float = 1.0, repeat: float = REPEAT) -> EngineConfig:
    return EngineConfig(repeat_every_s=repeat, tolerance_s=tolerance, checkpoint_every_s=CHECKPOINT)


def mkbeat(
    at: float, *, interval: float = 1.0, grace: float | None = None, host: str = "api-1"
) -> Beat:
    return Beat(
        last_seen=at,
        interval_ns=round(interval * SECOND),
        grace_ns=None if grace is None else round(grace * SECOND),
        host=host,
        description="API service",
        generated_at="2024-06-01T12:00:00Z",
    )


def ok_record(at: float = T0, *, interval: float = 1.0, grace: float | None = None) -> Record:
    """A committed healthy record whose last beat was at ``at``."""
    return Record(
        subject=SUBJECT,
        description="API service",
        host="api-1",
        interval_ns=round(interval * SECOND),
        grace_ns=None if grace is None else round(grace * SECOND),
        last_seen=at,
        generated_at="2024-06-01T12:00:00Z",
        updated_by="m0",
    )


def alert_record(notified: float = ALERTED_AT) -> Record:
    """A committed record alerting since ALERTED_AT on silence after T0, last notified at
    ``notified``."""
    return msgspec.structs.replace(
        ok_record(T0),
        alert_active=True,
        alert_id="a0",
        alert_since=ALERTED_AT,
        alert_last_seen=T0,
        last_notified=notified,
        notify_count=1,
    )


NO_INTERVAL = Record(subject=SUBJECT, last_seen=T0, host="api-1")
EVENT = {
    Reason.ALERT: EventKind.ALERT,
    Reason.REPEAT: EventKind.REPEAT,
    Reason.RESOLVED: EventKind.RESOLVED,
}


@pytest.mark.parametrize(
    ("rec", "beat", "now", "sight_since", "repeat", "reason"),
    [
        # a first record
        pytest.param(None, mkbeat(T0), T0 + 0.5, 0.0, REPEAT, Reason.CREATE, id="create"),
        pytest.param(None, mkbeat(T0), T0, 0.0, REPEAT, Reason.CREATE, id="create-at-beat"),
        pytest.param(
            None, mkbeat(T0), T0 + 2 + HAIR, 0.0, REPEAT, Reason.ALERT, id="first-record-alerts"
        ),
        pytest.param(None, None, T0, 0.0, REPEAT, Reason.NONE, id="nothing-known"),
        pytest.param(
            None, mkbeat(T0, interval=0.0), T0, 0.0, REPEAT, Reason.NONE, id="beat-no-interval"
        ),
        # checkpoints
        pytest.param(
            ok_record(),
            mkbeat(T0 + 1, host="api-2"),
            T0 + 1.5,
            0.0,
            REPEAT,
            Reason.CHECKPOINT,
            id="host-changed",
        ),
        pytest.param(
            ok_record(),
            mkbeat(T0 + 1, interval=2.0),
            T0 + 1.5,
            0.0,
            REPEAT,
            Reason.CHECKPOINT,
            id="interval-changed",
        ),
        pytest.param(
            ok_record(),
            mkbeat(T0 + 1, grace=5.0),
            T0 + 1.5,
            0.0,
            REPEAT,
            Reason.CHECKPOINT,
            id="grace-changed",
        ),
        pytest.param(
            ok_record(),
            mkbeat(T0 + CHECKPOINT),
            T0 + CHECKPOINT + 0.5,
            0.0,
            REPEAT,
            Reason.CHECKPOINT,
            id="last-seen-advanced-checkpoint-every",
        ),
        pytest.param(
            ok_record(),
            mkbeat(T0 + CHECKPOINT - HAIR),
            T0 + CHECKPOINT,
            0.0,
            REPEAT,
            Reason.NONE,
            id="last-seen-advanced-just-under",
        ),
        # nothing to write
        pytest.param(ok_record(), mkbeat(T0 + 1), T0 + 1.5, 0.0, REPEAT, Reason.NONE, id="steady"),
        pytest.param(ok_record(), None, T0 + 1.5, 0.0, REPEAT, Reason.NONE, id="no-beat"),
        pytest.param(ok_record(), mkbeat(T0), T0 + 1.5, 0.0, REPEAT, Reason.NONE, id="same-beat"),
        pytest.param(
            ok_record(),
            mkbeat(T0 - 5, host="old"),
            T0 + 1.5,
            0.0,
            REPEAT,
            Reason.NONE,
            id="older-beat-changes-nothing",
        ),
        pytest.param(NO_INTERVAL, None, T0 + 999, 0.0, REPEAT, Reason.NONE, id="no-interval"),
        # alert
        pytest.param(ok_record(), None, T0 + 2, 0.0, REPEAT, Reason.NONE, id="at-alert-deadline"),
        pytest.param(
            ok_record(), None, T0 + 2 + HAIR, 0.0, REPEAT, Reason.ALERT, id="past-alert-deadline"
        ),
        pytest.param(
            ok_record(grace=5.0), None, T0 + 6 + HAIR, 0.0, REPEAT, Reason.ALERT, id="grace"
        ),
        pytest.param(
            ok_record(grace=5.0), None, T0 + 6, 0.0, REPEAT, Reason.NONE, id="grace-at-deadline"
        ),
        pytest.param(
            ok_record(), None, T0 + 50, T0 + 49, REPEAT, Reason.NONE, id="blind-until-recently"
        ),
        pytest.param(
            ok_record(),
            None,
            T0 + 51 + HAIR,
            T0 + 49,
            REPEAT,
            Reason.ALERT,
            id="window-after-sight",
        ),
        # repeat
        pytest.param(
            alert_record(), None, ALERTED_AT + 1, 0.0, REPEAT, Reason.NONE, id="alerting-quiet"
        ),
        pytest.param(
            alert_record(),
            None,
            ALERTED_AT + REPEAT - HAIR,
            0.0,
            REPEAT,
            Reason.NONE,
            id="before-repeat",
        ),
        pytest.param(
            alert_record(),
            None,
            ALERTED_AT + REPEAT,
            0.0,
            REPEAT,
            Reason.REPEAT,
            id="at-repeat",
        ),
        pytest.param(
            alert_record(), None, T0 + 10**6, 0.0, REPEAT, Reason.REPEAT, id="long-after-repeat"
        ),
        pytest.param(
            alert_record(), None, T0 + 10**6, 0.0, 0.0, Reason.NONE, id="repeat-off-never"
        ),
        pytest.param(
            alert_record(),
            mkbeat(T0),
            ALERTED_AT + REPEAT,
            0.0,
            REPEAT,
            Reason.REPEAT,
            id="old-beat-repeats-not-resolves",
        ),
        # resolved
        pytest.param(
            alert_record(), mkbeat(T0 + 30), T0 + 30.5, 0.0, REPEAT, Reason.RESOLVED, id="resolved"
        ),
        pytest.param(
            alert_record(),
            mkbeat(ALERTED_AT + 5 * REPEAT),
            ALERTED_AT + 5 * REPEAT,
            0.0,
            REPEAT,
            Reason.RESOLVED,
            id="resolved-wins-over-repeat",
        ),
        pytest.param(
            alert_record(),
            mkbeat(T0 + 30, host="moved"),
            T0 + 30.5,
            0.0,
            REPEAT,
            Reason.RESOLVED,
            id="resolved-with-new-facts",
        ),
    ],
)
def test_reason(
    rec: Record | None,
    beat: Beat | None,
    now: float,
    sight_since: float,
    repeat: float,
    reason: Reason,
) -> None:
    out = evaluate(
        SUBJECT,
        rec,
        beat,
        now,
        mkcfg(repeat=repeat),
        sight_since=sight_since,
        monitor="m1",
        channels=["log"],
        new_alert_id="a1",
    )
    assert out.reason is reason
    assert (out.record is None) is (reason is Reason.NONE)
    if reason in EVENT:
        assert out.notification is not None
        assert out.notification.event is EVENT[reason]
        assert out.record is not None
        assert out.record.pending[-1].notification == out.notification
    else:
        assert out.notification is None
    if out.record is not None:
        assert out.record.updated_by == "m1"
        assert out.record.subject == SUBJECT


# ----- the deadlines agree with evaluate ---------------------------------------------------


@pytest.mark.parametrize(
    ("rec", "tolerance", "sight_since", "deadline"),
    [
        pytest.param(ok_record(), 1.0, 0.0, T0 + 2.0, id="interval1-tol1"),
        pytest.param(ok_record(), 0.0, 0.0, T0 + 1.0, id="tol0"),
        pytest.param(ok_record(grace=5.0), 1.0, 0.0, T0 + 6.0, id="grace5"),
        pytest.param(ok_record(interval=15.0, grace=45.0), 0.5, 0.0, T0 + 45.5, id="grace45"),
        pytest.param(ok_record(), 1.0, T0 + 100, T0 + 102.0, id="after-blind"),
        pytest.param(ok_record(), 1.0, T0 - 100, T0 + 2.0, id="blind-before-last-seen"),
    ],
)
def test_alert_deadline_boundary(
    rec: Record, tolerance: float, sight_since: float, deadline: float
) -> None:
    cfg = mkcfg(tolerance=tolerance)
    assert alert_deadline(rec, cfg, sight_since) == deadline
    assert next_due(rec, cfg, sight_since) == deadline
    assert repeat_deadline(rec, cfg) == NEVER  # never notified

    def at(now: float) -> Reason:
        out = evaluate(SUBJECT, rec, None, now, cfg, sight_since=sight_since)
        if out.reason is Reason.NONE:
            assert out.due == deadline  # asks again exactly at the deadline
        return out.reason

    assert at(deadline - HAIR) is Reason.NONE
    assert at(deadline) is Reason.NONE  # the window and tolerance are inclusive
    assert at(deadline + HAIR) is Reason.ALERT


@pytest.mark.parametrize(
    ("notified", "repeat", "deadline"),
    [
        pytest.param(ALERTED_AT, 60.0, ALERTED_AT + 60.0, id="repeat60"),
        pytest.param(ALERTED_AT + 600, 60.0, ALERTED_AT + 660.0, id="from-last-notified"),
        pytest.param(ALERTED_AT, 12 * 3600.0, ALERTED_AT + 12 * 3600.0, id="repeat12h"),
    ],
)
def test_repeat_deadline_boundary(notified: float, repeat: float, deadline: float) -> None:
    rec, cfg = alert_record(notified), mkcfg(repeat=repeat)
    assert repeat_deadline(rec, cfg) == deadline
    assert next_due(rec, cfg) == deadline

    def at(now: float) -> Reason:
        out = evaluate(SUBJECT, rec, None, now, cfg)
        if out.reason is Reason.NONE:
            assert out.due == deadline
        return out.reason

    assert at(deadline - HAIR) is Reason.NONE
    assert at(deadline) is Reason.REPEAT  # repeats are due at the deadline itself
    assert at(deadline + HAIR) is Reason.REPEAT


def test_after_alert_next_due_is_the_repeat_deadline() -> None:
    cfg = mkcfg()
    now = T0 + 2 + HAIR
    out = evaluate(SUBJECT, ok_record(), None, now, cfg, new_alert_id="a1")
    assert out.reason is Reason.ALERT
    assert out.record is not None
    assert out.due == now + REPEAT == repeat_deadline(out.record, cfg)
    assert next_due(out.record, cfg) == out.due


def test_after_resolved_next_due_is_the_alert_deadline() -> None:
    cfg = mkcfg()
    out = evaluate(SUBJECT, alert_record(), mkbeat(T0 + 30), T0 + 30.5, cfg)
    assert out.reason is Reason.RESOLVED
    assert out.record is not None
    assert out.due == T0 + 32.0 == alert_deadline(out.record, cfg)


@pytest.mark.parametrize(
    ("rec", "repeat"),
    [
        pytest.param(NO_INTERVAL, REPEAT, id="no-interval"),
        pytest.param(alert_record(), 0.0, id="repeat-off"),
    ],
)
def test_never_due(rec: Record, repeat: float) -> None:
    cfg = mkcfg(repeat=repeat)
    assert next_due(rec, cfg) == NEVER
    out = evaluate(SUBJECT, rec, None, T0 + 10**7, cfg)
    assert out.reason is Reason.NONE
    assert out.record is None
    assert out.due == NEVER
