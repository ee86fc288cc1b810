"""The status JSON schema: what the Go monitor sends decodes, nonsense raises InvalidStatus."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest

from heartbeat.errors import HeartbeatError
from heartbeat.status_schema import (
    InvalidStatus,
    StatusReport,
    SubjectStatus,
    decode_status,
    encode_status,
)

# Captured from the Go monitor (DESIGN.md section 7), healthy then missing.
GO_HEALTHY = (
    b'{"observed_at":"2026-11-29T01:59:09.640824111Z","subjects":[{"subject":"heartbeat.smoke",'
    b'"description":"heartbeat.smoke","host":"vm","last_seen":"2026-11-29T01:59:09.13597927Z",'
    b'"interval":"1s","allowed_window":"1s","missing":false,"alert_active":false}]}'
)
GO_MISSING = GO_HEALTHY.replace(
    b'"missing":false,"alert_active":false',
    b'"missing":true,"miss_for":"3.522032062s","miss_count":3,"alert_active":true',
)


def test_go_monitor_answers_decode() -> None:
    healthy = decode_status(GO_HEALTHY)
    assert healthy.observed_at == datetime(2026, 11, 29, 1, 59, 9, 640824, tzinfo=UTC)
    (s,) = healthy.subjects
    assert s == SubjectStatus(
        subject="heartbeat.smoke",
        description="heartbeat.smoke",
        host="vm",
        last_seen=datetime(2026, 11, 29, 1, 59, 9, 135979, tzinfo=UTC),
        interval="1s",
        allowed_window="1s",
        missing=False,
        alert_active=False,
    )
    assert healthy.alerts_firing == 0
    missing = decode_status(GO_MISSING)
    (m,) = missing.subjects
    assert (m.missing, m.miss_for, m.miss_count, m.alert_active) == (True, "3.522032062s", 3, True)
    assert missing.alerts_firing == 1


# Captured 2026-12-01 from the Go tool's monitor (venkytv/nats-heartbeat e78b5ac, `-prime-stream`
# on our stream) fed by a Go agent and `nats-heartbeat run` job beats: three of its nine rows,
# as it sends them (indented). A job with a grace has `grace`; the failed job
# (`run -- false`) is only a plain beat gone quiet to it: no job fields, missing after its
# window like a service.
GO_WATCHING_JOBS = b"""{
  "observed_at": "2026-12-01T23:40:54.985270253Z",
  "subjects": [
    {
      "subject": "heartbeat.go.agent",
      "description": "Go agent",
      "host": "vm",
      "last_seen": "2026-12-01T23:40:54.49887717Z",
      "interval": "1s",
      "allowed_window": "1s",
      "missing": false,
      "alert_active": false
    },
    {
      "subject": "heartbeat.job.cron",
      "description": "heartbeat.job.cron",
      "host": "vm",
      "last_seen": "2026-12-01T23:39:32.293178Z",
      "interval": "1m0s",
      "grace": "1m5s",
      "allowed_window": "1m5s",
      "missing": true,
      "miss_for": "1m22.692092253s",
      "miss_count": 1,
      "alert_active": true
    },
    {
      "subject": "heartbeat.job.fail",
      "description": "heartbeat.job.fail",
      "host": "vm",
      "last_seen": "2026-12-01T23:39:58.260527Z",
      "interval": "10s",
      "allowed_window": "10s",
      "missing": true,
      "miss_for": "56.724743253s",
      "miss_count": 5,
      "alert_active": true
    }
  ]
}
"""


def test_go_monitor_watching_our_job_beats_decodes() -> None:
    report = decode_status(GO_WATCHING_JOBS)
    rows = {s.subject: s for s in report.subjects}
    assert list(rows) == ["heartbeat.go.agent", "heartbeat.job.cron", "heartbeat.job.fail"]
    cron, failed = rows["heartbeat.job.cron"], rows["heartbeat.job.fail"]
    assert (cron.interval, cron.grace, cron.allowed_window) == ("1m0s", "1m5s", "1m5s")
    assert (failed.grace, failed.allowed_window, failed.miss_count) == (None, "10s", 5)
    assert report.alerts_firing == 2
    job_fields = ("job_alert", "last_run", "exit_code", "schedule", "next_run_due")
    assert all(getattr(s, f) is None for s in report.subjects for f in job_fields)
    assert decode_status(encode_status(report)) == report


def test_fractions_are_truncated_not_rounded() -> None:
    data = GO_HEALTHY.replace(b"09.640824111Z", b"09.9999999Z")
    assert decode_status(data).observed_at == datetime(2026, 11, 29, 1, 59, 9, 999999, tzinfo=UTC)


def test_unknown_fields_are_ignored_and_optional_fields_may_be_null() -> None:
    doc = json.loads(GO_HEALTHY)
    doc.update(monitor="m-1", leader=True, leader_id="m-1", future={"x": [1]})
    doc["subjects"][0].update(
        host=None, last_seen=None, grace=None, miss_for=None, miss_count=None, extra=1
    )
    (s,) = decode_status(json.dumps(doc)).subjects
    assert (s.host, s.last_seen, s.grace, s.miss_for, s.miss_count) == (None,) * 5


def test_go_zero_last_seen_means_never_and_offsets_are_kept() -> None:
    doc = json.loads(GO_HEALTHY)
    doc["observed_at"] = "2026-11-29T03:59:09+02:00"
    doc["subjects"][0]["last_seen"] = "0001-01-01T00:00:00Z"
    r = decode_status(json.dumps(doc))
    assert r.observed_at.utcoffset() == timedelta(hours=2)
    assert r.subjects[0].last_seen is None


def test_empty_or_null_subjects() -> None:
    choices: list[list[object] | None] = [[], None]
    for subjects in choices:
        doc: dict[str, object] = {"observed_at": "2026-11-29T01:59:09Z", "subjects": subjects}
        assert decode_status(json.dumps(doc)).subjects == []


def _mutated(path: tuple[Any, ...], value: Any) -> bytes:
    doc = json.loads(GO_MISSING)
    target = doc
    for key in path[:-1]:
        target = target[key]
    if value is _DELETE:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return json.dumps(doc).encode()


_DELETE = object()


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"<html>hello</html>",
        b"[]",
        b"{}",
        b'"status"',
        b'{"observed_at":"2026-11-29T01:59:09Z"}',
        b'{"subjects":[]}',
        b"\xff\xfe{}",
        _mutated(("observed_at",), "yesterday"),
        _mutated(("observed_at",), "2026-11-29T01:59:09"),  # no zone
        _mutated(("observed_at",), "0001-01-01T00:00:00Z"),
        _mutated(("observed_at",), None),
        _mutated(("subjects",), {"heartbeat.smoke": {}}),
        _mutated(("subjects", 0), "heartbeat.smoke"),
        _mutated(("subjects", 0, "subject"), ""),
        _mutated(("subjects", 0, "subject"), _DELETE),
        _mutated(("subjects", 0, "description"), _DELETE),
        _mutated(("subjects", 0, "interval"), 1000000000),
        _mutated(("subjects", 0, "interval"), "1 second"),
        _mutated(("subjects", 0, "allowed_window"), _DELETE),
        _mutated(("subjects", 0, "grace"), "soon"),
        _mutated(("subjects", 0, "miss_for"), ""),
        _mutated(("subjects", 0, "miss_count"), -1),
        _mutated(("subjects", 0, "miss_count"), "3"),
        _mutated(("subjects", 0, "missing"), "yes"),
        _mutated(("subjects", 0, "alert_active"), _DELETE),
        _mutated(("subjects", 0, "last_seen"), "2026-13-01T00:00:00Z"),
    ],
)
def test_nonsense_raises_invalid_status(data: bytes) -> None:
    with pytest.raises(InvalidStatus) as info:
        decode_status(data)
    assert isinstance(info.value, HeartbeatError)
    assert "\n" not in str(info.value)


def test_encode_leaves_out_unset_optional_fields_in_go_field_order() -> None:
    report = StatusReport(
        observed_at=datetime(2026, 11, 29, 1, 59, 9, 640824, tzinfo=UTC),
        subjects=[
            SubjectStatus(
                subject="heartbeat.smoke",
                description="heartbeat.smoke",
                host="vm",
                last_seen=datetime(2026, 11, 29, 1, 59, 9, 135979, tzinfo=UTC),
                interval="1s",
                allowed_window="1s",
                missing=False,
                alert_active=False,
            ),
            SubjectStatus(
                subject="heartbeat.never",
                description="",
                interval="1m30s",
                grace="2m",
                allowed_window="2m0s",
                missing=True,
                miss_for="5m0s",
                miss_count=3,
                alert_active=True,
            ),
        ],
    )
    data = encode_status(report)
    assert data.startswith(
        b'{"observed_at":"2026-11-29T01:59:09.640824Z","subjects":[{"subject":"heartbeat.smoke",'
        b'"description":"heartbeat.smoke","host":"vm","last_seen":"2026-11-29T01:59:09.135979Z",'
        b'"interval":"1s","allowed_window":"1s","missing":false,"alert_active":false},'
    )
    assert data.endswith(
        b'{"subject":"heartbeat.never","description":"","interval":"1m30s","grace":"2m",'
        b'"allowed_window":"2m0s","missing":true,"miss_for":"5m0s","miss_count":3,'
        b'"alert_active":true}]}'
    )
    assert decode_status(data) == report


def test_offsets_survive_a_round_trip() -> None:
    tz = timezone(-timedelta(hours=3, minutes=30))
    report = StatusReport(observed_at=datetime(2026, 1, 2, 3, 4, 5, tzinfo=tz), subjects=[])
    data = encode_status(report)
    assert data == b'{"observed_at":"2026-01-02T03:04:05-03:30","subjects":[]}'
    assert decode_status(data) == report


def test_encode_refuses_naive_times() -> None:
    naive = datetime(2026, 1, 2, 3, 4, 5)
    with pytest.raises(InvalidStatus, match="observed_at"):
        encode_status(StatusReport(observed_at=naive, subjects=[]))
    s = SubjectStatus(
        subject="a",
        description="a",
        last_seen=naive,
        interval="1s",
        allowed_window="1s",
        missing=False,
        alert_active=False,
    )
    with pytest.raises(InvalidStatus, match=r"subjects\[0\]\.last_seen"):
        encode_status(StatusReport(observed_at=datetime.now(UTC), subjects=[s]))
    ok = msgspec.structs.replace(s, last_seen=datetime.now(UTC))
    late = msgspec.structs.replace(ok, running_since=naive)
    with pytest.raises(InvalidStatus, match=r"subjects\[1\]\.running_since"):
        encode_status(StatusReport(observed_at=datetime.now(UTC), subjects=[ok, late]))
    offset = msgspec.structs.replace(ok, next_run_due=datetime.now(timezone(timedelta(hours=2))))
    assert encode_status(StatusReport(observed_at=datetime.now(UTC), subjects=[ok, offset]))
