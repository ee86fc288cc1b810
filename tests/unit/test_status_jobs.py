"""The status JSON and table for jobs: last run, job alert, next run due."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import msgspec

from cli.status import render_table, summarize
from heartbeat.durations import SECOND
from heartbeat.engine import Record
from heartbeat.jobrules import JobState
from heartbeat.status import subject_status
from heartbeat.status_schema import StatusReport, decode_status, encode_status

BERLIN = ZoneInfo("Europe/Berlin")
DONE = datetime(2026, 12, 1, 3, 4, tzinfo=BERLIN).timestamp()
DAY = 86400 * SECOND


def record(**job: object) -> Record:
    return Record(
        subject="heartbeat.backup",
        description="Nightly backup",
        host="db-1",
        interval_ns=DAY,
        grace_ns=DAY + 600 * SECOND,
        last_seen=DONE,
        job=JobState(schedule="0 3 * * *", timezone="Europe/Berlin", **job),  # type: ignore[arg-type]
    )


def test_a_scheduled_job_shows_its_next_run_in_its_zone() -> None:
    rec = record(last_result="success", exit_code=0, duration_ns=5 * SECOND, finished_at=DONE)
    row = subject_status(rec, DONE + 60)
    assert row.next_run_due == datetime(2026, 12, 2, 3, 0, tzinfo=BERLIN)
    assert row.last_run == "success" and row.run_duration == "5s" and row.job_alert is None
    observed = datetime.fromtimestamp(DONE + 60, UTC)
    assert summarize(row, observed) == ("OK", "next run due 03:00 CET, last run ok in 5s")
    back = decode_status(encode_status(StatusReport(observed_at=observed, subjects=[row])))
    assert back.subjects == [row]


def test_a_failed_job_shows_its_exit_code_and_a_neutral_output_tail() -> None:
    rec = record(
        last_result="fail",
        exit_code=1,
        duration_ns=192 * SECOND,
        output="\x1b[31m" + "y" * 500 + "\nno space left\u202e",
        alert="failed",
        alert_id="a.job",
    )
    row = subject_status(rec, DONE + 60)
    assert row.output is not None and len(row.output) == 200
    assert row.output.endswith("y no space left") and "\x1b" not in row.output
    report = StatusReport(observed_at=datetime.fromtimestamp(DONE + 60, UTC), subjects=[row])
    assert report.alerts_firing == 1
    word, details = summarize(row, report.observed_at)
    assert word == "FAILED"
    assert details.startswith("next run due 03:00 CET, last run failed: exit 1 after 3m12s: …")
    assert "FAILED" in render_table(report, color=False)


def test_a_running_job_and_a_plain_heartbeat() -> None:
    rec = record(running_since=DONE, max_runtime_ns=3600 * SECOND, alert="running_long")
    row = subject_status(rec, DONE + 4000)
    word, details = summarize(row, datetime.fromtimestamp(DONE, UTC))
    assert word == "RUNNING LONG" and "running since 03:04 CET" in details
    plain = subject_status(msgspec.structs.replace(rec, job=None), DONE + 1)
    raw = msgspec.json.encode(plain)
    for key in (b"job_alert", b"last_run", b"next_run_due", b"output"):
        assert key not in raw


def test_a_job_alert_counts_as_alert_for_health_and_the_state_filter() -> None:
    from heartbeat.engine import Health, health
    from heartbeat.status import Filter
    from heartbeat.subjects import Track

    rec = record(last_result="fail", exit_code=1, alert="failed", alert_id="a.job")
    assert health(rec, DONE + 1) is Health.ALERT
    track = Track(subject=rec.subject, record=rec)
    assert Filter(state=Health.ALERT).keeps(track, DONE + 1)
    assert not Filter(state=Health.OK).keeps(track, DONE + 1)
