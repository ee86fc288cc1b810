"""The job rules of the pure engine as tables, with injected clocks (``now`` is a number).

Each case drives :func:`heartbeat.engine.evaluate` the way the monitor does: the
committed record, the newest beat, ``now``; then the outcome's record is "committed"
and evaluated again, which must decide nothing new (idempotence), also with no beat
at all (a restart that holds only the record).
"""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import msgspec
import pytest

from heartbeat.durations import SECOND
from heartbeat.engine import (
    NEVER,
    Beat,
    EngineConfig,
    Job,
    Outcome,
    Reason,
    Record,
    evaluate,
    is_late,
    next_due,
)
from heartbeat.jobrules import JobState, next_run
from heartbeat.notification import EventKind
from heartbeat.notify import words
from heartbeat.subjects import Subjects

SUBJECT = "heartbeat.backup"
T0 = 1_700_000_000.0
CFG = EngineConfig(tolerance_s=1.0, repeat_every_s=3600.0)
CHANNELS = ("log",)
MIN = 60 * SECOND
BERLIN = ZoneInfo("Europe/Berlin")


def beat(at: float, kind: str = "beat", **job: object) -> Beat:
    interval = int(job.pop("interval_ns", 10 * MIN))  # type: ignore[call-overload]
    grace = job.pop("grace_ns", interval + 2 * MIN)
    return Beat(
        last_seen=at,
        interval_ns=interval,
        grace_ns=grace,  # type: ignore[arg-type]
        host="db-1",
        description="Nightly backup",
        generated_at="",
        job=Job(kind=kind, **job),  # type: ignore[arg-type]
    )


def decide(rec: Record | None, b: Beat | None, now: float) -> Outcome:
    return evaluate(SUBJECT, rec, b, now, CFG, channels=CHANNELS, new_alert_id=f"a{int(now)}")


def commit(rec: Record | None, b: Beat | None, now: float) -> tuple[Record, Outcome]:
    """Evaluate, "commit", and check that deciding again changes nothing."""
    out = decide(rec, b, now)
    new = out.record if out.record is not None else rec
    assert new is not None
    for again in (decide(new, b, now), decide(new, None, now)):
        assert again.record is None or again.notification is None, again.reason
        assert again.reason in (Reason.NONE, Reason.CHECKPOINT)
    return new, out


def events(rec: Record) -> list[str]:
    return [str(p.notification.event) for p in rec.pending]


def test_fail_alerts_at_once_and_the_next_success_resolves() -> None:
    rec, out = commit(None, beat(T0, "start", run_id="r1"), T0)
    assert out.reason is Reason.CREATE and rec.job is not None and rec.job.running
    fail = beat(T0 + 192, "fail", run_id="r1", exit_code=1, duration_ns=192 * SECOND, output="x")
    rec, out = commit(rec, fail, T0 + 192.5)
    assert out.reason is Reason.FAILED and events(rec) == ["failed"]
    n = out.notification
    assert n is not None and n.exit_code == 1 and n.output == "x" and n.run_id == "r1"
    assert n.body()["duration"] == "3m12s" and n.body()["exit_code"] == 1
    assert words.headline(n) == (
        "heartbeat.backup (Nightly backup) FAILED: exit 1 after 3m12s (host db-1): x"
    )
    # A second failure in the same streak: recorded, no second alert.
    fail2 = beat(T0 + 700, "fail", run_id="r2", exit_code=2, duration_ns=SECOND)
    rec, out = commit(rec, fail2, T0 + 700)
    assert out.reason is Reason.CHECKPOINT and len(rec.pending) == 1
    assert rec.job is not None and rec.job.exit_code == 2
    ok = beat(T0 + 1300, "success", run_id="r3", exit_code=0, duration_ns=5 * SECOND)
    rec, out = commit(rec, ok, T0 + 1300)
    assert out.reason is Reason.JOB_RESOLVED and events(rec) == ["failed", "resolved"]
    first, last = (p.notification for p in rec.pending)
    assert first.alert_id == last.alert_id and first.notification_id != last.notification_id
    assert rec.job is not None and rec.job.alert == "" and rec.job.last_success == T0 + 1300
    assert "is OK again: a run succeeded in 5s" in words.headline(last)


def test_running_long_alerts_once_and_its_end_resolves() -> None:
    start = beat(T0, "start", run_id="r1", max_runtime_ns=MIN)
    rec, out = commit(None, start, T0)
    assert out.due == T0 + 60 + CFG.tolerance_s
    rec, out = commit(rec, start, T0 + 61)  # at the bound: not yet
    assert out.reason is Reason.NONE
    rec, out = commit(rec, start, T0 + 61.5)
    assert out.reason is Reason.RUNNING_LONG and events(rec) == ["running_long"]
    assert out.notification is not None and out.notification.duration_ns == 61.5 * SECOND
    assert "RUNNING LONG: running for 1m2s, max runtime 1m" in words.headline(out.notification)
    # Once: long after, still running, nothing new (no repeat, not missing either).
    rec, out = commit(rec, None, T0 + 86400)
    assert out.reason is Reason.NONE and not rec.alert_active
    assert next_due(rec, CFG) == NEVER
    end = beat(T0 + 90000, "success", run_id="r1", exit_code=0, duration_ns=90000 * SECOND)
    rec, out = commit(rec, end, T0 + 90000)
    assert out.reason is Reason.JOB_RESOLVED and events(rec) == ["running_long", "resolved"]


def test_running_long_that_fails_becomes_failed_under_the_same_alert() -> None:
    rec, _ = commit(None, beat(T0, "start", max_runtime_ns=MIN), T0)
    rec, out = commit(rec, None, T0 + 100)
    assert out.reason is Reason.RUNNING_LONG
    fail = beat(T0 + 200, "fail", exit_code=137, duration_ns=200 * SECOND, max_runtime_ns=MIN)
    rec, out = commit(rec, fail, T0 + 200)
    assert out.reason is Reason.FAILED
    ids = {p.notification.alert_id for p in rec.pending}
    assert len(ids) == 1 and events(rec) == ["running_long", "failed"]


def test_a_run_that_took_too_long_is_reported_once_with_nothing_to_resolve() -> None:
    ok = beat(T0, "success", exit_code=0, duration_ns=2 * MIN, max_runtime_ns=MIN)
    rec, out = commit(None, ok, T0)  # start and end seen as one: the end's duration tells
    assert out.reason is Reason.RAN_LONG and events(rec) == ["ran_long"]
    assert rec.job is not None and rec.job.alert == ""
    n = out.notification
    assert n is not None and not words.urgent(n)
    assert words.headline(n).endswith("RAN LONG: took 2m, max runtime 1m (host db-1)")
    quick = beat(T0 + 600, "success", exit_code=0, duration_ns=SECOND, max_runtime_ns=MIN)
    rec, out = commit(rec, quick, T0 + 600)
    assert out.reason is Reason.CHECKPOINT and len(rec.pending) == 1


def test_a_failed_run_that_took_too_long_is_failed_only() -> None:
    fail = beat(T0, "fail", exit_code=1, duration_ns=2 * MIN, max_runtime_ns=MIN)
    rec, out = commit(None, fail, T0)
    assert out.reason is Reason.FAILED and events(rec) == ["failed"]


def test_an_interval_job_that_stops_is_missing_like_a_heartbeat() -> None:
    rec, _ = commit(None, beat(T0, "success", exit_code=0, duration_ns=SECOND), T0)
    window = rec.window_ns / SECOND
    rec, out = commit(rec, None, T0 + window + 1)
    assert out.reason is Reason.NONE
    rec, out = commit(rec, None, T0 + window + 1.5)
    assert out.reason is Reason.ALERT and rec.alert_active


def test_a_start_without_max_runtime_counts_as_a_beat() -> None:
    rec, _ = commit(None, beat(T0, "start"), T0)
    assert next_due(rec, CFG) == T0 + rec.window_ns / SECOND + CFG.tolerance_s


def ts(zone: ZoneInfo, *parts: int) -> float:
    return datetime(*parts, tzinfo=zone).timestamp()  # type: ignore[misc]


def scheduled(at: float, kind: str, schedule: str, zone: str, **job: object) -> Beat:
    return beat(at, kind, schedule=schedule, timezone=zone, **job)


def test_a_missed_scheduled_run_alerts_at_the_scheduled_time_plus_grace() -> None:
    # Daily at 03:00 Berlin (CET in November): last success 03:05 on the 10th.
    done = ts(BERLIN, 2026, 11, 10, 3, 5)
    ok = scheduled(done, "success", "0 3 * * *", "Europe/Berlin", exit_code=0, duration_ns=MIN)
    ok = msgspec.structs.replace(ok, interval_ns=1440 * MIN, grace_ns=1450 * MIN)  # grace 10m
    rec, out = commit(None, ok, done)
    due = ts(BERLIN, 2026, 11, 11, 3, 10)
    assert out.due == due + CFG.tolerance_s
    assert not is_late(rec, due) and is_late(rec, due + 0.5)
    rec, out = commit(rec, None, due + 1)
    assert out.reason is Reason.NONE
    rec, out = commit(rec, None, due + 1.5)
    assert out.reason is Reason.ALERT and events(rec) == ["alert"]
    # The next run's start resolves it; its max_runtime bounds it from then on.
    start = scheduled(due + 100, "start", "0 3 * * *", "Europe/Berlin", max_runtime_ns=30 * MIN)
    rec, out = commit(rec, start, due + 100)
    assert out.reason is Reason.RESOLVED and next_due(rec, CFG) == due + 100 + 1801


def test_a_start_before_the_deadline_hands_over_to_max_runtime() -> None:
    done = ts(UTC_ZONE, 2026, 6, 1, 3, 1)
    kw = {"exit_code": 0, "duration_ns": MIN, "max_runtime_ns": 60 * MIN}
    rec, _ = commit(None, scheduled(done, "success", "0 3 * * *", "", **kw), done)
    start_at = ts(UTC_ZONE, 2026, 6, 2, 3, 0)
    start = scheduled(start_at, "start", "0 3 * * *", "", max_runtime_ns=60 * MIN)
    rec, out = commit(rec, start, start_at)
    # A long but healthy run: not missed at 03:12 (grace), running long only after 1h.
    rec, out = commit(rec, None, start_at + 3000)
    assert out.reason is Reason.NONE and not rec.alert_active
    rec, out = commit(rec, None, start_at + 3601.5)
    assert out.reason is Reason.RUNNING_LONG


UTC_ZONE = ZoneInfo("UTC")


def test_a_success_shortly_before_its_time_counts_as_that_run() -> None:
    # The sender's clock is fast: the 03:00 run reports success at 02:59:59.5.
    done = ts(UTC_ZONE, 2026, 6, 2, 2, 59, 59) + 0.5
    ok = scheduled(done, "success", "0 3 * * *", "", exit_code=0, duration_ns=0)
    ok = msgspec.structs.replace(ok, interval_ns=1440 * MIN, grace_ns=1450 * MIN)
    _, out = commit(None, ok, done)
    assert out.due == ts(UTC_ZONE, 2026, 6, 3, 3, 10) + CFG.tolerance_s


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        # Spring forward (29 March 2026, 02:00 CET -> 03:00 CEST): 02:30 does not exist,
        # cronsim runs it at 03:00 CEST, and the next day at 02:30 CEST again.
        ((2026, 3, 28, 3, 0), (2026, 3, 29, 3, 0)),
        ((2026, 3, 29, 3, 0), (2026, 3, 30, 2, 30)),
        # Fall back (25 October 2026, 03:00 CEST -> 02:00 CET): 02:30 happens twice,
        # the job runs once (at the first, CEST), then 02:30 CET the day after.
        ((2026, 10, 24, 3, 0), (2026, 10, 25, 2, 30)),
        ((2026, 10, 25, 2, 45), (2026, 10, 26, 2, 30)),
    ],
)
def test_schedules_across_dst_changes(after: tuple[int, ...], expected: tuple[int, ...]) -> None:
    got = next_run("30 2 * * *", "Europe/Berlin", ts(BERLIN, *after))
    assert got == ts(BERLIN, *expected)


def test_the_missing_deadline_follows_the_dst_change() -> None:
    # 30 2 * * * in Berlin, grace 10m; last success at 02:35 CEST on 24 October: the
    # next run is 02:30 CEST on the 25th (00:30 UTC), the one after 02:30 CET (01:30 UTC).
    def record_after(done: float) -> Record:
        ok = scheduled(done, "success", "30 2 * * *", "Europe/Berlin", exit_code=0)
        ok = msgspec.structs.replace(ok, interval_ns=1500 * MIN, grace_ns=1510 * MIN)
        return commit(None, ok, done)[0]

    rec = record_after(ts(BERLIN, 2026, 10, 24, 2, 35))
    assert next_due(rec, CFG) == ts(UTC_ZONE, 2026, 10, 25, 0, 40) + 1
    rec = record_after(ts(BERLIN, 2026, 10, 25, 2, 35))
    assert next_due(rec, CFG) == ts(UTC_ZONE, 2026, 10, 26, 1, 40) + 1
    # Spring: after 02:35 CET on 28 March the next run is 03:00 CEST (01:00 UTC).
    rec = record_after(ts(BERLIN, 2026, 3, 28, 2, 35))
    assert next_due(rec, CFG) == ts(UTC_ZONE, 2026, 3, 29, 1, 10) + 1


def test_a_seconds_schedule() -> None:
    ok = scheduled(T0, "success", "*/5 * * * * *", "", exit_code=0, interval_ns=5 * SECOND)
    ok = msgspec.structs.replace(ok, grace_ns=7 * SECOND)
    rec, out = commit(None, ok, T0)  # T0 is 22:13:20 UTC: the next run is at :25
    assert rec.job is not None and out.due == T0 + 5 + 2 + 1
    rec, out = commit(rec, None, T0 + 8.5)
    assert out.reason is Reason.ALERT


def test_restart_from_the_record_alone_decides_the_same() -> None:
    rec, _ = commit(None, beat(T0, "start", max_runtime_ns=MIN), T0)
    raw = msgspec.json.encode(rec)
    back = msgspec.json.decode(raw, type=Record)
    assert back == rec
    out = decide(back, None, T0 + 100)  # no beat: what a new leader holds
    assert out.reason is Reason.RUNNING_LONG


def test_an_uncommitted_fail_is_decided_again_from_the_stream_beat() -> None:
    rec, _ = commit(None, beat(T0, "start"), T0)
    fail = beat(T0 + 5, "fail", exit_code=1, duration_ns=5 * SECOND)
    first = decide(rec, fail, T0 + 5)
    again = decide(rec, fail, T0 + 9)  # the write was lost; the stream still has the beat
    assert first.reason is again.reason is Reason.FAILED


def test_plain_records_stay_byte_identical() -> None:
    plain = Beat(
        last_seen=T0, interval_ns=MIN, grace_ns=None, host="h", description="d", generated_at=""
    )
    out = decide(None, plain, T0)
    assert out.record is not None and b'"job"' not in msgspec.json.encode(out.record)
    assert msgspec.json.encode(JobState()) == b"{}"


def test_a_record_with_a_broken_schedule_falls_back_to_the_window() -> None:
    rec = Record(
        subject=SUBJECT,
        interval_ns=MIN,
        last_seen=T0,
        job=JobState(schedule="not cron", timezone="Nowhere/Else"),
    )
    assert next_due(rec, CFG) == T0 + 60 + 1


def test_job_beats_are_always_evaluated_and_plain_ones_stay_on_the_fast_path() -> None:
    subjects = Subjects(CFG)
    plain = msgspec.structs.replace(beat(T0), job=None)
    subjects.on_beat(SUBJECT, plain)
    subjects.take_due(T0)
    rec = decide(None, plain, T0).record
    assert rec is not None
    subjects.set_record(SUBJECT, rec, 1)
    subjects.on_beat(SUBJECT, msgspec.structs.replace(plain, last_seen=T0 + 1))
    assert not subjects.dirty
    subjects.on_beat(SUBJECT, beat(T0 + 2, "start"))
    assert subjects.dirty == {SUBJECT}


def test_failed_words_neutralise_and_cut_the_output_tail() -> None:
    noisy = "\x1b[31m" + "x" * 1000 + "\nTHE END\u202e"
    fail = beat(T0, "fail", exit_code=3, duration_ns=SECOND, output=noisy)
    out = decide(None, fail, T0)
    assert out.notification is not None
    text = words.message(out.notification)
    assert "\x1b" not in text and "\u202e" not in text and "\n" not in text
    assert text.endswith("x THE END") and len(text) < 450 and "…" in text
    assert EventKind(out.notification.event) is EventKind.FAILED


def test_a_failed_run_after_a_missed_one_resolves_the_miss_and_alerts_failed() -> None:
    rec, _ = commit(None, beat(T0, "success", exit_code=0, duration_ns=SECOND), T0)
    late = T0 + rec.window_ns / SECOND + 2
    rec, out = commit(rec, None, late)
    assert out.reason is Reason.ALERT
    fail = beat(late + 10, "fail", exit_code=1, duration_ns=SECOND)
    rec, out = commit(rec, fail, late + 10)
    assert out.reason is Reason.FAILED and not rec.alert_active
    assert events(rec) == ["alert", "resolved", "failed"]  # delivered in this order
    missing, resolved, failed = (p.notification for p in rec.pending)
    assert missing.alert_id == resolved.alert_id != failed.alert_id
