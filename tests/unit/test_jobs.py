"""The pure parts of jobs: schedule periods, the job template, output tails, outcomes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heartbeat.errors import InvalidHeartbeat, InvalidSubject
from heartbeat.jobs import OutputTail, finished, job_message, outcome, schedule_period, tail_text
from heartbeat.schema import OUTPUT_MAX, decode, encode

H = timedelta(hours=1)


@pytest.mark.parametrize(
    ("schedule", "zone", "now", "period"),
    [
        ("0 3 * * *", "", datetime(2026, 12, 1, tzinfo=UTC), 24 * H),
        ("*/15 * * * *", "", datetime(2026, 12, 1, tzinfo=UTC), timedelta(minutes=15)),
        ("*/10 * * * * *", "", datetime(2026, 12, 1, tzinfo=UTC), timedelta(seconds=10)),
        ("0 9 * * MON-FRI", "America/New_York", datetime(2026, 12, 1, tzinfo=UTC), 72 * H),
        # 03:00 Berlin on 2027-03-28 (spring forward) is 23 h after the day before, and
        # the autumn change makes a 25 h gap: the longest gap seen is what is sent
        ("0 3 * * *", "Europe/Berlin", datetime(2027, 10, 20, tzinfo=UTC), 25 * H),
        ("0 3 * * *", "Europe/Berlin", datetime(2027, 3, 20, tzinfo=UTC), 24 * H),
        ("0 0 1 * *", "Asia/Kolkata", datetime(2026, 12, 1, tzinfo=UTC), 31 * 24 * H),
    ],
)
def test_schedule_period_is_the_longest_gap(
    schedule: str, zone: str, now: datetime, period: timedelta
) -> None:
    assert schedule_period(schedule, zone, now) == period


def test_job_message_sends_period_plus_grace_as_the_go_window() -> None:
    now = datetime(2026, 12, 1, tzinfo=UTC)
    msg = job_message(
        "backup",
        schedule="30 2 * * *",
        timezone="Europe/Berlin",
        grace=H,
        max_runtime=2 * H,
        host="db-1",
        prefix="heartbeat",
        now=now,
    )
    assert (msg.subject, msg.host, msg.kind) == ("heartbeat.backup", "db-1", "beat")
    assert (msg.interval, msg.grace_period, msg.window) == (24 * H, 25 * H, 25 * H)
    assert (msg.schedule, msg.timezone, msg.max_runtime) == ("30 2 * * *", "Europe/Berlin", 2 * H)


def test_job_message_without_grace_leaves_the_window_to_the_interval() -> None:
    msg = job_message("hb.x", interval=timedelta(minutes=5), host="h")
    assert msg.grace_period is None and msg.window == timedelta(minutes=5)
    assert msg.schedule == "" and msg.generated_at is not None


@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({}, "bad_interval"),
        ({"schedule": "every day"}, "bad_schedule"),
        ({"schedule": "0 3 * * *", "timezone": "Moon/Base"}, "bad_timezone"),
        ({"interval": H, "timezone": "UTC"}, "bad_timezone"),
        ({"interval": H, "grace": -H}, "bad_grace"),
        ({"interval": H, "max_runtime": timedelta(0)}, "bad_max_runtime"),
        ({"interval": timedelta(0)}, "bad_interval"),
    ],
)
def test_job_message_rejects(kwargs: dict[str, object], reason: str) -> None:
    with pytest.raises(InvalidHeartbeat) as e:
        job_message("hb.x", **kwargs)  # type: ignore[arg-type]
    assert e.value.reason == reason


def test_job_message_rejects_a_bad_subject() -> None:
    with pytest.raises(InvalidSubject):
        job_message("hb.*", interval=H)


def test_finished_is_success_only_for_exit_code_zero() -> None:
    template = job_message("hb.x", interval=H, host="h")
    ok = finished(template, "r", 0, timedelta(seconds=2))
    bad = finished(template, "r", 143, timedelta(seconds=-1), "x" * (OUTPUT_MAX + 10))
    assert (ok.kind, ok.exit_code, ok.duration, ok.output) == (
        "success",
        0,
        timedelta(seconds=2),
        "",
    )
    assert (bad.kind, bad.exit_code, bad.duration) == ("fail", 143, timedelta(0))
    assert bad.output == "x" * OUTPUT_MAX
    assert decode(encode(bad)) == bad


@pytest.mark.parametrize(
    ("data", "limit", "tail"),
    [
        (b"hello", 10, "hello"),
        (b"0123456789abc", 4, "9abc"),
        ("xé€😀".encode(), 5, "€😀"[1:]),  # 😀 is 4 bytes: € (3) no longer fits
        ("xé€😀".encode(), 7, "€😀"),
        ("aé".encode()[:-1] + b"bc", 10, "a\ufffdbc"),  # a broken character is replaced
        (b"\xff" * 8, 6, "\ufffd\ufffd"),  # replacement characters count as 3 bytes
        ("a\ud800b", 10, "a?b"),  # a lone surrogate cannot be sent
    ],
)
def test_tail_text(data: bytes | str, limit: int, tail: str) -> None:
    assert tail_text(data, limit) == tail


@given(st.binary(max_size=300), st.integers(1, 64))
def test_tail_text_fits_and_is_the_end(data: bytes, limit: int) -> None:
    tail = tail_text(data, limit)
    assert len(tail.encode()) <= limit
    assert data.decode(errors="replace").endswith(tail)


def test_output_tail_keeps_the_last_bytes_of_many_chunks() -> None:
    tail = OutputTail(limit=8)
    for i in range(1000):
        tail.feed(f"{i}\n".encode())
    assert tail.text() == "998\n999\n"
    assert OutputTail().text() == ""


@pytest.mark.parametrize(
    ("error", "code", "output"),
    [
        (None, 0, ""),
        (ValueError("disk full\nsecond line"), 1, "ValueError: disk full"),
        (RuntimeError(), 1, "RuntimeError"),
        (KeyboardInterrupt(), 130, "KeyboardInterrupt"),
        (SystemExit(0), 0, ""),
        (SystemExit(None), 0, ""),
        (SystemExit(4), 4, "SystemExit: 4"),
        (SystemExit("bye"), 1, "SystemExit: bye"),
    ],
)
def test_outcome(error: BaseException | None, code: int, output: str) -> None:
    assert outcome(error) == (code, output)
