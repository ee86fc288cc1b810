"""The status table, rendered from hand-made reports: the Go tool's layout, words and colours."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from cli.status import format_rfc3339, render_table, summarize, use_color
from heartbeat.status_schema import StatusReport, SubjectStatus
from heartbeat.text import ELLIPSIS, MAX_HOST

ANSI = re.compile(r"\x1b\[[0-9;]*m")
OBSERVED = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def subject(name: str, **kw: Any) -> SubjectStatus:
    fields: dict[str, Any] = {
        "subject": name,
        "description": name,
        "host": "host-a",
        "last_seen": datetime(2024, 6, 1, 11, 59, 55, tzinfo=UTC),
        "interval": "10s",
        "allowed_window": "10s",
        "missing": False,
        "alert_active": False,
    }
    fields.update(kw)
    return SubjectStatus(**fields)


def report(*subjects: SubjectStatus, observed_at: datetime = OBSERVED) -> StatusReport:
    return StatusReport(observed_at=observed_at, subjects=list(subjects))


def two_subjects() -> StatusReport:
    return report(
        subject(
            "heartbeat.worker.queue",
            description="Worker processor",
            host="host-b",
        ),
        subject(
            "heartbeat.api",
            description="API service",
            host="host-a",
            last_seen=datetime(2024, 6, 1, 11, 59, 30, tzinfo=UTC),
            interval="15s",
            grace="20s",
            allowed_window="20s",
            missing=True,
            miss_for="30s",
            miss_count=2,
            alert_active=True,
        ),
    )


def test_two_subjects_exactly_as_go_tabwriter_prints_them() -> None:
    assert render_table(two_subjects(), color=False) == (
        "Observed at: 2024-06-01T12:00:00Z\n"
        "\n"
        "STATUS  SUBJECT                 DESCRIPTION       HOST    LAST SEEN             DETAILS\n"
        "ALERT!  heartbeat.api           API service       host-a  2024-06-01T11:59:30Z  "
        "missed 30s (2 beats)\n"
        "OK      heartbeat.worker.queue  Worker processor  host-b  2024-06-01T11:59:55Z  "
        "interval 10s, window 10s\n"
        "\n"
        "1 alert(s) firing across 2 subject(s)\n"
    )


def test_columns_are_widest_cell_plus_two_and_details_is_not_padded() -> None:
    long = "a much longer description than the header"
    out = render_table(
        report(
            subject("a", description=long, host=None),
            subject("b.c.d.e.f.g", description="", host="h"),
        ),
        color=False,
    )
    seen = "2024-06-01T11:59:55Z  "
    details = "interval 10s, window 10s"
    assert out.splitlines()[2:5] == [
        "STATUS  SUBJECT      DESCRIPTION" + " " * (len(long) + 2 - 11) + "HOST  LAST SEEN"
        "             DETAILS",
        "OK      a            " + long + "  -     " + seen + details,
        "OK      b.c.d.e.f.g  " + " " * (len(long) + 2) + "h     " + seen + details,
    ]
    assert not any(line.endswith(" ") for line in out.splitlines())


@pytest.mark.parametrize(
    ("kw", "word", "details"),
    [
        ({}, "OK", "interval 10s, window 10s"),
        (
            {"missing": True, "miss_for": "12.5s", "miss_count": 1},
            "LATE",
            "late by 12.5s (1 beats)",
        ),
        ({"missing": True}, "LATE", "late by 10s"),
        ({"missing": True, "miss_for": "  ", "miss_count": 0}, "LATE", "late by 10s"),
        (
            {"missing": True, "miss_for": "3.522032062s", "miss_count": 3, "alert_active": True},
            "ALERT!",
            "missed 3.522032062s (3 beats)",
        ),
        ({"missing": True, "alert_active": True}, "ALERT!", "missed past 10s"),
        # alert_active wins even if the monitor no longer counts it missing
        ({"alert_active": True, "miss_count": 4}, "ALERT!", "missed past 10s (4 beats)"),
    ],
)
def test_status_word_and_details(kw: dict[str, Any], word: str, details: str) -> None:
    s = subject("heartbeat.x", **kw)
    assert summarize(s) == (word, details)
    row = render_table(report(s), color=False).splitlines()[3]
    assert row.startswith(word + " " * (8 - len(word)) + "heartbeat.x  ")
    assert row.endswith("  " + details)


def test_rows_are_sorted_by_subject_and_summary_counts_alerts() -> None:
    out = render_table(
        report(
            subject("heartbeat.zeta", alert_active=True, missing=True),
            subject("heartbeat.alpha", missing=True),
            subject("heartbeat.Beta", alert_active=True, missing=True),
            subject("heartbeat.mu"),
        ),
        color=False,
    )
    rows = out.splitlines()[3:7]
    assert [r.split()[1] for r in rows] == [
        "heartbeat.Beta",  # byte order, as Go sorts: upper case first
        "heartbeat.alpha",
        "heartbeat.mu",
        "heartbeat.zeta",
    ]
    assert [r.split()[0] for r in rows] == ["ALERT!", "LATE", "OK", "ALERT!"]
    assert out.endswith("\n\n2 alert(s) firing across 4 subject(s)\n")


def test_no_alerts_summary() -> None:
    out = render_table(report(subject("a"), subject("b", missing=True)), color=False)
    assert out.endswith("\n0 alert(s) firing across 2 subject(s)\n")


def test_empty_report_says_so_without_table_or_summary() -> None:
    assert render_table(report(), color=True) == (
        "Observed at: 2024-06-01T12:00:00Z\nNo heartbeats observed yet.\n"
    )


def test_last_seen_absent_is_a_dash() -> None:
    row = render_table(report(subject("a", last_seen=None, host=None)), color=False)
    assert row.splitlines()[3].split()[1:5] == ["a", "a", "-", "-"]


def test_times_keep_their_offset_and_truncate_to_seconds() -> None:
    plus2 = timezone(timedelta(hours=2))
    minus530 = timezone(-timedelta(hours=5, minutes=30))
    out = render_table(
        report(
            subject("a", last_seen=datetime(2024, 6, 1, 13, 59, 9, 999_999, tzinfo=minus530)),
            observed_at=datetime(2024, 6, 1, 14, 0, 0, 999_999, tzinfo=plus2),
        ),
        color=False,
    )
    assert out.startswith("Observed at: 2024-06-01T14:00:00+02:00\n")
    assert "  2024-06-01T13:59:09-05:30  " in out
    assert format_rfc3339(datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)) == "2024-01-02T03:04:05Z"
    assert format_rfc3339(datetime(999, 1, 2, 3, 4, 5, tzinfo=UTC)) == "0999-01-02T03:04:05Z"


def test_color_wraps_only_the_status_word_and_keeps_alignment() -> None:
    r = report(
        subject("heartbeat.a", alert_active=True, missing=True),
        subject("heartbeat.b", missing=True),
        subject("heartbeat.c"),
    )
    plain = render_table(r, color=False)
    colored = render_table(r, color=True)
    assert "\x1b" not in plain
    assert ANSI.sub("", colored) == plain
    lines = colored.splitlines()
    assert lines[2].startswith("STATUS  ")  # the header is never coloured
    assert lines[3].startswith("\x1b[31mALERT!\x1b[0m  heartbeat.a")
    assert lines[4].startswith("\x1b[33mLATE\x1b[0m    heartbeat.b")
    assert lines[5].startswith("\x1b[32mOK\x1b[0m      heartbeat.c")
    assert colored.count("\x1b[0m") == 3


def test_text_from_the_monitor_is_neutralised() -> None:
    out = render_table(
        report(
            subject("a", description="evil\x1b[2J\ttab\nline", host="h\x07"),
            subject("b\u202egnp", description="zero\u200bwidth\u2066iso\u2069", host="x" * 500),
        ),
        color=False,
    )
    assert "\x1b" not in out and "\x07" not in out and "\t" not in out
    assert not any(c in out for c in "\u202e\u200b\u2066\u2069")
    assert "evil tab line" in out
    assert "zerowidthiso" in out
    assert "bgnp" in out
    assert "x" * (MAX_HOST - 1) + ELLIPSIS in out and "x" * MAX_HOST not in out
    assert len(out.splitlines()) == 7


class FakeTTY(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


def test_use_color_needs_a_tty_and_no_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")
    assert use_color(FakeTTY(True)) is True
    assert use_color(FakeTTY(False)) is False
    monkeypatch.setenv("NO_COLOR", "1")
    assert use_color(FakeTTY(True)) is False
    monkeypatch.setenv("NO_COLOR", "")  # empty means unset (no-color.org)
    assert use_color(FakeTTY(True)) is True
    monkeypatch.setenv("TERM", "dumb")
    assert use_color(FakeTTY(True)) is False


def test_unicode_text_is_left_alone_and_counted_in_code_points() -> None:
    out = render_table(
        report(
            subject("heartbeat.ä", description="Zürich 👩‍💻 api", host="hôte"),
            subject("heartbeat.b", description="x"),
        ),
        color=False,
    )
    rows = out.splitlines()[3:5]
    assert rows[0].startswith("OK      heartbeat.b  ")  # "b" < "ä", as Go compares bytes
    assert "Zürich 👩‍💻 api" in rows[1]
    # Go's tabwriter pads by runes, so does this: same code point offsets in both rows
    assert rows[0].index("2024-") == rows[1].index("2024-")
