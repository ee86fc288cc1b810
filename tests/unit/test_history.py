"""History events as pure functions: ids, what a commit records, re-emission, queries,
and the history table.  No NATS here (tests/integration/test_history.py has it)."""

from __future__ import annotations

import pytest

from cli.history import event_row, render_history
from heartbeat.durations import SECOND
from heartbeat.engine import Beat, EngineConfig, Job, Record, evaluate
from heartbeat.history import (
    Event,
    HistoryQuery,
    Kind,
    Result,
    committed,
    decode_event,
    delivery_event,
    delivery_id,
    encode_event,
    hushed_events,
    kind_of,
    overlaps,
    resumed,
    retired_event,
    transition_id,
)
from heartbeat.history_writer import HistoryWriter
from heartbeat.quiet import Hush, Quiet, QuietKind

SUBJECT = "heartbeat.db.main"
T0 = 1_700_000_000.0
CFG = EngineConfig(tolerance_s=1.0, repeat_every_s=60.0)
CHANNELS = ("log", "webhook:abcd1234")


def beat(at: float, **job: object) -> Beat:
    return Beat(
        last_seen=at, interval_ns=10 * SECOND, grace_ns=None, host="db-1",
        description="DB", generated_at="", job=Job(**job) if job else None,  # type: ignore[arg-type]
    )  # fmt: skip


def step(rec: Record | None, b: Beat | None, now: float, channels: tuple[str, ...] = CHANNELS):
    """Decide and commit; the events the commit records."""
    out = evaluate(
        SUBJECT, rec, b, now, CFG, monitor="m1", channels=channels, new_alert_id=f"a{int(now)}"
    )
    assert out.record is not None
    return out.record, committed(rec, out.record, out.notification)


def test_an_incident_records_each_transition_once_with_stable_ids() -> None:
    rec, evs = step(None, beat(T0), T0)
    assert evs == []  # a first record is no transition
    rec, evs = step(rec, None, T0 + 12)
    assert [(e.kind, e.notification_id) for e in evs] == [
        ("late", None),
        ("alert", "a1700000012-1"),
    ]
    late, alert = evs
    # Late when the window ran out (last beat + 10 s), named by the last beat.
    assert late.time == "2023-11-14T22:13:30Z"
    assert late.id == f"late:{SUBJECT}:1700000000.000000"
    assert late.detail == "no heartbeat within 10s" and late.alert_id == "a1700000012"
    assert alert.id == "alert:a1700000012-1" and alert.alert_id == "a1700000012"
    assert alert.time == "2023-11-14T22:13:32Z" and alert.monitor == "m1"
    assert alert.detail == "missed 12s (1 beats)"
    rec, evs = step(rec, None, T0 + 72)
    assert [(e.kind, e.id) for e in evs] == [("repeat", "repeat:a1700000012-2")]
    rec, evs = step(rec, beat(T0 + 80), T0 + 80)
    assert [e.kind for e in evs] == ["resolved"] and evs[0].detail == "back after 1m20s of silence"
    # Deciding the same again (a lost race redone, a re-emission) gives the same id.
    again = committed(None, rec, None)
    assert [e.id for e in again] == [
        late.id,
        "alert:a1700000012-1",
        "repeat:a1700000012-2",
        "resolved:a1700000012-3",
    ]


def test_a_transition_nobody_is_routed_is_still_recorded() -> None:
    rec, _ = step(None, beat(T0), T0, channels=())
    rec, evs = step(rec, None, T0 + 12, channels=())
    assert rec.pending == () and [e.kind for e in evs] == ["late", "alert"]


def test_a_job_failure_and_its_resolve_are_job_kinds() -> None:
    rec, _ = step(None, beat(T0, kind="start", run_id="r1"), T0)
    fail = beat(T0 + 5, kind="fail", run_id="r1", exit_code=3, duration_ns=5 * SECOND,
                output="line one\npg_dump: no space left")  # fmt: skip
    rec, evs = step(rec, fail, T0 + 5)
    assert [(e.kind, e.detail) for e in evs] == [
        ("failed", "exit 3 after 5s: pg_dump: no space left")
    ]
    ok = beat(T0 + 50, kind="success", run_id="r2", exit_code=0, duration_ns=SECOND)
    rec, evs = step(rec, ok, T0 + 50)
    assert [e.kind for e in evs] == ["job_resolved"]
    assert kind_of(rec.pending[-1].notification, rec) is Kind.JOB_RESOLVED


def test_resumed_repeats_only_what_the_stream_would_recognise() -> None:
    rec, _ = step(None, beat(T0), T0)
    rec, _ = step(rec, None, T0 + 12)
    rec, _ = step(rec, None, T0 + 72)
    got = list(resumed([rec], T0 + 100, horizon_s=60.0))
    assert [e.id for e in got] == ["repeat:a1700000012-2"]  # the alert is too old to resend
    assert [e.id for e in resumed([rec], T0 + 100, horizon_s=600.0)] == [
        f"late:{SUBJECT}:1700000000.000000",
        "alert:a1700000012-1",
        "repeat:a1700000012-2",
    ]
    assert list(resumed([rec], T0 + 1000, horizon_s=600.0)) == []


def test_delivery_ids_name_an_outcome_once_and_a_failed_round_per_replica() -> None:
    nid = "a1-1"
    assert delivery_id("sent", nid, "log", "m1", 1) == delivery_id("sent", nid, "log", "m2", 3)
    assert delivery_id("dropped", nid, "log", "m1", 1) == "dropped:a1-1:log"
    failed = {delivery_id("failed", nid, "log", m, r) for m in ("m1", "m2") for r in (1, 2)}
    assert len(failed) == 4
    assert delivery_id("sent", nid, "log", "m1", 1) != delivery_id("sent", nid, "slack", "m1", 1)
    assert transition_id("alert", nid) != transition_id("repeat", nid)


def test_a_delivery_event_neutralises_and_bounds_its_detail() -> None:
    rec, _ = step(None, beat(T0), T0)
    rec, _ = step(rec, None, T0 + 12)
    n = rec.pending[0].notification
    e = delivery_event(SUBJECT, n, "log", Result.FAILED, monitor="m1", now=T0 + 13, rnd=2,
                       detail="HTTP 500: \x1b[31mred\x1b[0m\nforged line" + "x" * 500)  # fmt: skip
    assert e.kind == "delivery" and e.result == "failed" and e.attempt == 2
    assert e.notification_kind == "alert" and e.id == "failed:a1700000012-1:log:m1:2"
    assert e.detail is not None and "\x1b" not in e.detail and "\n" not in e.detail
    assert len(e.detail) <= 200 and e.detail.startswith("HTTP 500: red forged line")


def test_events_are_plain_json_and_unknown_kinds_still_decode() -> None:
    e = retired_event(SUBJECT, 7, monitor="m1", now=T0, why="record deleted")
    data = encode_event(e)
    assert data.startswith(b'{"time":"2023-11-14T22:13:20Z","subject":"heartbeat.db.main"')
    assert b"null" not in data and decode_event(data) == e and e.id == "retired:heartbeat.db.main:7"
    later = decode_event(b'{"time":"t","subject":"s","kind":"silenced","monitor":"m","x":1}')
    assert later.kind == Kind.SILENCED == "silenced"


@pytest.mark.parametrize(
    ("a", "b", "overlap"),
    [
        ("heartbeat_events.>", "heartbeat.>", False),
        ("heartbeat.>", "heartbeat.>", True),
        ("heartbeat.events.>", "heartbeat.>", True),
        ("ev.>", ">", True),
        ("ev.>", "*.x.>", True),
        ("ev.a", "ev.b", False),
        ("ev.a", "ev.a.b", False),
        ("ev.*", "ev.a", True),
    ],
)
def test_overlaps(a: str, b: str, overlap: bool) -> None:
    assert overlaps(a, b) is overlap and overlaps(b, a) is overlap


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, HistoryQuery(">", 86_400.0, 100)),
        ({"subject": "heartbeat.db.>", "since": "7200", "limit": "5"},
         HistoryQuery("heartbeat.db.>", 7200.0, 5)),
        ({"since": "2h"}, HistoryQuery(">", 7200.0, 100)),
        ({"since": "0.5"}, HistoryQuery(">", 0.5, 100)),
        ({"limit": "1000"}, HistoryQuery(">", 86_400.0, 1000)),
    ],
)  # fmt: skip
def test_history_query(query: dict[str, str], expected: HistoryQuery) -> None:
    assert HistoryQuery.parse(query) == expected


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
        ({"limit": "x"}, "limit"),
        ({"since": "-1"}, "since"),
        ({"since": "0"}, "since"),
        ({"since": "soon"}, "since"),
        ({"subject": "a..b"}, "pattern"),
        ({"state": "ok"}, "unknown"),
    ],
)
def test_history_query_refuses(query: dict[str, str], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        HistoryQuery.parse(query)


def test_history_table() -> None:
    alert = Event(time="2026-12-01T10:00:00.123Z", subject=SUBJECT, kind="alert", monitor="m1",
                  alert_id="a", notification_id="a-1", detail="missed 46s (3 beats)")  # fmt: skip
    sent = Event(time="2026-12-01T10:00:01Z", subject=SUBJECT, kind="delivery", monitor="m1",
                 notification_id="a-1", channel="oncall", result="sent", attempt=1,
                 detail="1 attempt", notification_kind="alert")  # fmt: skip
    assert render_history([alert, sent]) == (
        "TIME                  SUBJECT            EVENT  CHANNEL  DETAIL\n"
        "2026-12-01T10:00:00Z  heartbeat.db.main  alert  -        missed 46s (3 beats)\n"
        "2026-12-01T10:00:01Z  heartbeat.db.main  sent   oncall   alert, 1 attempt\n"
    )
    assert render_history([], since="2h0m0s") == "No events in the last 2h0m0s.\n"
    hostile = Event(time="garbage\x1b[2J", subject="s\x1b]0;x\x07", kind="new\nkind", monitor="m")
    row = event_row(hostile)
    assert all("\x1b" not in cell and "\n" not in cell for cell in row)
    assert row[2] == "new kind"


async def test_the_writer_never_blocks_and_counts_what_it_drops() -> None:
    from heartbeat.history import HistoryConfig

    w = HistoryWriter(HistoryConfig(), max_queue=2)
    e = retired_event(SUBJECT, 1, monitor="m", now=T0, why="x")
    w.record([e, e, e, Event(time="t", subject="", kind="alert", monitor="m")])
    assert w.errors == 1  # the third did not fit; the subject-less one is no event at all
    assert not await w.flush(0.01)  # not started: nothing published yet


def test_a_notice_about_the_monitor_is_no_transition() -> None:
    from heartbeat.notification import EventKind as NK
    from heartbeat.notification import monitor_notice

    notice = monitor_notice(NK.BLIND, "m1", T0, T0 + 30)
    assert kind_of(notice, None) is None
    rec = Record(subject=SUBJECT, updated_by="m1")
    assert committed(None, rec, notice) == []


@pytest.mark.parametrize(
    ("kind", "ref", "event_kind"),
    [
        (QuietKind.SILENCED, "3f2a9c0d1b7e", "silenced"),
        (QuietKind.PAUSED, "p1", "paused"),
        (QuietKind.MAINT, "nightly", "maint"),
        (QuietKind.SUPPRESSED, "heartbeat.dc1.uplink", "suppressed"),
    ],
)
def test_an_alert_kept_back_by_a_quiet_is_late_then_the_quiet(
    kind: QuietKind, ref: str, event_kind: str
) -> None:
    rec, _ = step(None, beat(T0), T0)
    quiet = Quiet(kind, T0 + 100, ref)
    out = evaluate(SUBJECT, rec, None, T0 + 12, CFG, monitor="m1", hush=Hush(quiet))
    assert out.record is None and out.notification is None and out.hushed == quiet
    assert out.due == T0 + 100  # then at the quiet's end, not every tick
    evs = hushed_events(rec, quiet, T0 + 12, "m1")
    assert [e.kind for e in evs] == ["late", event_kind]
    assert evs[1].id == f"{event_kind}:{SUBJECT}:{ref}:1700000000.000000"
    assert evs[1].detail == f"alert kept back ({kind} by {ref})"
    # Another leader deciding it (a failover) writes the same ids: stored once.
    assert [e.id for e in hushed_events(rec, quiet, T0 + 30, "m2")] == [e.id for e in evs]


def test_a_quiet_subject_is_looked_at_once_when_its_alert_would_be_due() -> None:
    rec, _ = step(None, beat(T0), T0)
    quiet = Quiet(QuietKind.SILENCED, T0 + 100, "s1")
    early = evaluate(SUBJECT, rec, None, T0 + 5, CFG, hush=Hush(quiet))
    assert early.hushed is None and early.due == T0 + 11  # window + tolerance
    late = evaluate(SUBJECT, rec, None, T0 + 11.5, CFG, hush=Hush(quiet))
    assert late.hushed == quiet and late.due == T0 + 100


def test_a_repeat_kept_back_is_named_by_the_notification_it_would_follow() -> None:
    rec, _ = step(None, beat(T0), T0)
    rec, _ = step(rec, None, T0 + 12)
    quiet = Quiet(QuietKind.SILENCED, None, "s1")
    out = evaluate(SUBJECT, rec, None, T0 + 72, CFG, hush=Hush(quiet))
    assert out.hushed == quiet and out.notification is None
    evs = hushed_events(rec, quiet, T0 + 72, "m1")
    assert [(e.kind, e.id, e.alert_id) for e in evs] == [
        ("silenced", f"silenced:{SUBJECT}:s1:a1700000012-1", "a1700000012")
    ]
    assert evs[0].detail == "repeat kept back (silenced by s1)"
