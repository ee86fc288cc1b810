"""Job fields on the wire: optional, after Go's fields, omitted when unset, checked.

A Go monitor decodes only the six Go fields and ignores the rest, so every job beat must
also be a valid plain beat (test_go_sees_a_plain_beat); our decoder rejects job fields
that make no sense, each with its own reason.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heartbeat.errors import InvalidHeartbeat
from heartbeat.schema import OUTPUT_MAX, Message, decode, encode, format_time, validate
from tests.unit.test_schema import (
    _check_decoded,
    _same,
    aware_datetimes,
    heartbeat_like,
    subjects,
    texts,
)

GO_KEYS = ["subject", "generated_at", "interval", "grace_period", "host", "description"]
JOB_KEYS = [
    "kind",
    "run_id",
    "exit_code",
    "duration",
    "output",
    "schedule",
    "timezone",
    "max_runtime",
]

PLAIN = Message(
    subject="heartbeat.backup",
    generated_at=datetime(2026, 12, 1, 3, 0, 5, 250000, tzinfo=UTC),
    interval=timedelta(hours=24),
    grace_period=timedelta(hours=25),
    host="db-1",
)
PLAIN_BYTES = (
    b'{"subject":"heartbeat.backup","generated_at":"2026-12-01T03:00:05.25Z",'
    b'"interval":86400000000000,"grace_period":90000000000000,"host":"db-1"}'
)


def job(**changes: Any) -> Message:
    return msgspec.structs.replace(PLAIN, **changes)


FAIL = job(
    kind="fail",
    run_id="0f3c",
    exit_code=3,
    duration=timedelta(seconds=1, microseconds=500),
    output="disk <full> & more\n",
    schedule="0 3 * * *",
    timezone="Europe/Berlin",
    max_runtime=timedelta(minutes=30),
)
FAIL_BYTES = PLAIN_BYTES[:-1] + (
    b',"kind":"fail","run_id":"0f3c","exit_code":3,"duration":1000500000,'
    b'"output":"disk \\u003cfull\\u003e \\u0026 more\\n","schedule":"0 3 * * *",'
    b'"timezone":"Europe/Berlin","max_runtime":1800000000000}'
)


def test_plain_beat_bytes_are_unchanged() -> None:
    assert encode(PLAIN) == PLAIN_BYTES
    assert encode(job(kind="beat")) == PLAIN_BYTES  # the default kind is not sent


def test_job_fields_follow_go_fields_in_a_fixed_order() -> None:
    assert encode(FAIL) == FAIL_BYTES
    assert list(json.loads(FAIL_BYTES)) == GO_KEYS[:3] + GO_KEYS[3:5] + JOB_KEYS
    _same(decode(FAIL_BYTES), FAIL)


@pytest.mark.parametrize(
    "msg",
    [
        pytest.param(job(kind="start", run_id="r1", max_runtime=timedelta(seconds=5)), id="start"),
        pytest.param(job(kind="success", exit_code=0, duration=timedelta(0)), id="success"),
        pytest.param(job(kind="success"), id="success_bare"),
        pytest.param(job(kind="fail", exit_code=-1, output="x"), id="fail_negative_code"),
        pytest.param(job(kind="fail", exit_code=(1 << 32) - 1), id="fail_windows_code"),
        pytest.param(job(kind="fail", output="é" * (OUTPUT_MAX // 2)), id="output_at_limit"),
        pytest.param(job(schedule="*/5 * * * *"), id="beat_with_schedule"),
        pytest.param(job(schedule="*/10 * * * * *"), id="six_fields_with_seconds"),
        pytest.param(job(schedule="0 9 * * MON-FRI", timezone="America/New_York"), id="tz"),
        pytest.param(job(schedule="0 0 L * *", timezone="UTC"), id="last_day"),
        pytest.param(job(run_id="r" * 128), id="longest_run_id"),
    ],
)
def test_valid_job_beats_round_trip(msg: Message) -> None:
    assert validate(msg) is msg
    _same(decode(encode(msg)), msg)


@pytest.mark.parametrize("kind", ["beat", "start", "success", "fail"])
def test_go_sees_a_plain_beat(kind: str) -> None:
    """What Go's decoder keeps of a job beat (the Go fields) is the plain beat."""
    finished = kind in ("success", "fail")
    msg = job(
        kind=kind,
        run_id="r1",
        exit_code=(0 if kind == "success" else 2) if finished else None,
        duration=timedelta(seconds=3) if finished else None,
        output="tail" if finished else "",
        schedule="0 3 * * *",
        timezone="Europe/Berlin",
        max_runtime=timedelta(hours=1),
    )
    obj = json.loads(encode(msg))
    # Go's decoder matches keys case-insensitively: no job key may fold onto a Go field
    extra = [k for k in obj if k not in GO_KEYS]
    assert extra and {k.casefold() for k in extra}.isdisjoint(GO_KEYS)
    go_view = {k: v for k, v in obj.items() if k in GO_KEYS}
    assert json.dumps(go_view, separators=(",", ":")).encode() == PLAIN_BYTES
    _same(decode(json.dumps(go_view)), PLAIN)


def test_decode_reads_job_fields() -> None:
    data = (
        b'{"subject":"a","generated_at":"2026-12-01T03:00:00Z","interval":1000000000,'
        b'"kind":"success","run_id":"x","exit_code":0,"duration":1999,"max_runtime":1,'
        b'"schedule":"0 3 * * *"}'
    )
    msg = decode(data)
    assert (msg.kind, msg.run_id, msg.exit_code) == ("success", "x", 0)
    assert msg.duration == timedelta(microseconds=1)  # truncated to µs, as interval
    assert msg.max_runtime == timedelta(microseconds=1)  # 1ns stays positive
    assert (msg.schedule, msg.timezone, msg.output) == ("0 3 * * *", "", "")


def test_explicit_beat_kind_and_nulls_are_a_plain_beat() -> None:
    data = PLAIN_BYTES[:-1] + b',"kind":"beat","run_id":null,"exit_code":null,"output":null}'
    _same(decode(data), PLAIN)


_BASE = json.loads(PLAIN_BYTES)


def _payload(**fields: Any) -> bytes:
    return json.dumps({**_BASE, **fields}).encode()


REJECTED: list[tuple[str, dict[str, Any], str]] = [
    ("unknown_kind", {"kind": "finish"}, "bad_kind"),
    ("empty_kind", {"kind": ""}, "bad_kind"),
    ("kind_case", {"kind": "FAIL"}, "bad_kind"),
    ("kind_not_a_string", {"kind": 1}, "malformed"),
    ("run_id_too_long", {"run_id": "r" * 129}, "bad_run_id"),
    ("run_id_control", {"run_id": "a\nb"}, "bad_run_id"),
    ("exit_code_on_beat", {"exit_code": 0}, "bad_exit_code"),
    ("exit_code_on_start", {"kind": "start", "exit_code": 1}, "bad_exit_code"),
    ("success_nonzero", {"kind": "success", "exit_code": 1}, "bad_exit_code"),
    ("exit_code_too_big", {"kind": "fail", "exit_code": 1 << 32}, "bad_exit_code"),
    ("exit_code_too_small", {"kind": "fail", "exit_code": -(1 << 31) - 1}, "bad_exit_code"),
    ("exit_code_float", {"kind": "fail", "exit_code": 1.5}, "malformed"),
    ("duration_on_start", {"kind": "start", "duration": 5}, "bad_duration"),
    ("negative_duration", {"kind": "success", "duration": -1}, "bad_duration"),
    ("duration_overflow", {"kind": "fail", "duration": 1 << 63}, "bad_duration"),
    ("output_on_beat", {"output": "x"}, "bad_output"),
    ("output_too_long", {"kind": "fail", "output": "x" * (OUTPUT_MAX + 1)}, "bad_output"),
    (
        "output_too_many_bytes",
        {"kind": "fail", "output": "é" * (OUTPUT_MAX // 2 + 1)},
        "bad_output",
    ),
    ("cron_four_fields", {"schedule": "0 3 * *"}, "bad_schedule"),
    ("cron_bad_minute", {"schedule": "61 3 * * *"}, "bad_schedule"),
    ("cron_never", {"schedule": "0 0 30 2 *"}, "bad_schedule"),
    ("cron_word", {"schedule": "@daily"}, "bad_schedule"),
    ("cron_non_ascii", {"schedule": "0 3 * * *\u00a0"}, "bad_schedule"),
    ("cron_too_long", {"schedule": "0 3 * * " + ",".join(["1"] * 200)}, "bad_schedule"),
    ("timezone_without_schedule", {"timezone": "UTC"}, "bad_timezone"),
    ("unknown_zone", {"schedule": "0 3 * * *", "timezone": "Mars/Olympus"}, "bad_timezone"),
    ("zone_path", {"schedule": "0 3 * * *", "timezone": "/etc/passwd"}, "bad_timezone"),
    ("zone_traversal", {"schedule": "0 3 * * *", "timezone": "../zoneinfo/UTC"}, "bad_timezone"),
    ("zone_directory", {"schedule": "0 3 * * *", "timezone": "America"}, "bad_timezone"),
    ("zone_nul", {"schedule": "0 3 * * *", "timezone": "UTC\u0000"}, "bad_timezone"),
    ("zero_max_runtime", {"max_runtime": 0}, "bad_max_runtime"),
    ("negative_max_runtime", {"max_runtime": -5}, "bad_max_runtime"),
    ("max_runtime_overflow", {"max_runtime": 1 << 63}, "bad_max_runtime"),
]


@pytest.mark.parametrize(("name", "fields", "reason"), REJECTED, ids=[r[0] for r in REJECTED])
def test_decode_rejects_job_nonsense(name: str, fields: dict[str, Any], reason: str) -> None:
    data = _payload(**fields)
    with pytest.raises(InvalidHeartbeat) as e:
        decode(data)
    assert e.value.reason == reason
    assert str(e.value)  # a reason a person can read


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"kind": "done"}, "bad_kind"),
        ({"kind": "start", "exit_code": 0}, "bad_exit_code"),
        ({"kind": "fail", "duration": timedelta(seconds=-1)}, "bad_duration"),
        ({"kind": "fail", "output": "x" * (OUTPUT_MAX + 1)}, "bad_output"),
        ({"schedule": "not cron"}, "bad_schedule"),
        ({"schedule": "0 3 * * *", "timezone": "Nowhere/City"}, "bad_timezone"),
        ({"max_runtime": timedelta(0)}, "bad_max_runtime"),
    ],
)
def test_encode_refuses_what_decode_rejects(changes: dict[str, Any], reason: str) -> None:
    with pytest.raises(InvalidHeartbeat) as e:
        encode(job(**changes))
    assert e.value.reason == reason


_ns = st.one_of(
    st.integers(-(1 << 64), 1 << 64), st.sampled_from([0, 1, 999, 1000, -1, (1 << 63) - 1])
)
_job_values: dict[str, Any] = {
    "kind": st.one_of(st.sampled_from(["beat", "start", "success", "fail", "", "x"]), st.none()),
    "run_id": st.one_of(texts, st.none()),
    "exit_code": st.one_of(st.integers(-(1 << 40), 1 << 40), st.sampled_from([0, 1, 143])),
    "duration": _ns,
    "output": st.one_of(texts, st.just("y" * (OUTPUT_MAX + 1))),
    "schedule": st.one_of(
        st.sampled_from(["0 3 * * *", "*/5 * * * * *", "0 0 30 2 *", "x", "61 * * * *"]),
        st.text(alphabet="0123456789*/,-LW# ", max_size=20),
    ),
    "timezone": st.sampled_from(["UTC", "Europe/Berlin", "Asia/Kolkata", "Mars/Base", "", ".."]),
    "max_runtime": _ns,
}
_wild = st.tuples(heartbeat_like, st.fixed_dictionaries({}, optional=_job_values))
_sane_values: dict[str, Any] = {
    "kind": st.sampled_from(["start", "success", "fail", "fail", "success", "beat", "x"]),
    "run_id": st.one_of(st.text(alphabet="0123456789abcdef", max_size=32), st.text(max_size=4)),
    "exit_code": st.one_of(st.just(0), st.integers(-3, 300)),
    "duration": st.integers(-2, 10**13),
    "output": texts,
    "schedule": st.sampled_from(["0 3 * * *", "*/5 * * * * *", "0 9 * * MON-FRI", "bad"]),
    "timezone": st.sampled_from(["UTC", "Europe/Berlin", "America/St_Johns", "Mars/Base"]),
    "max_runtime": st.integers(-1, 10**13),
}
_sane = st.tuples(
    st.fixed_dictionaries(
        {
            "subject": subjects,
            "generated_at": aware_datetimes.map(format_time),
            "interval": st.integers(1, 10**15),
        }
    ),
    st.fixed_dictionaries({}, optional=_sane_values),
)
# wild values probe the rejections, sane ones the job beats that are accepted
job_like = st.one_of(_wild, _sane).map(lambda pair: {**pair[0], **pair[1]})


@settings(deadline=None, max_examples=300)
@given(job_like, st.booleans())
def test_decode_job_like_objects(obj: dict[str, Any], ascii_only: bool) -> None:
    _check_decoded(json.dumps(obj, ensure_ascii=ascii_only))


@settings(deadline=None, max_examples=200)
@given(st.text(max_size=40))
def test_any_schedule_text_is_accepted_or_rejected_with_a_reason(expr: str) -> None:
    try:
        msg = decode(_payload(schedule=expr))
    except InvalidHeartbeat as e:
        assert e.reason in ("bad_schedule", "malformed")
        return
    assert msg.schedule == expr
