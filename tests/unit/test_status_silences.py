"""Silences in the status JSON and under the status table (heartbeat.silences, cli.status)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from cli.silence import parse_when
from cli.status import render_table
from heartbeat.status_schema import SilenceStatus, StatusReport, decode_status, encode_status

OBSERVED = datetime(2024, 6, 1, 12, 0, tzinfo=UTC)


def silences() -> list[SilenceStatus]:
    return [
        SilenceStatus(
            id="a1b2c3d4e5f6",
            kind="silence",
            subjects=["heartbeat.db.>"],
            starts=OBSERVED - timedelta(hours=1),
            ends=OBSERVED + timedelta(hours=1),
            reason="upgrade\x1b[31m",
            by="ops",
        ),
        SilenceStatus(
            id="0f0f0f0f0f0f",
            kind="pause",
            subjects=["heartbeat.legacy"],
            starts=OBSERVED + timedelta(hours=2),
        ),
    ]


def test_silences_are_listed_under_the_table_even_without_subjects() -> None:
    text = render_table(
        StatusReport(observed_at=OBSERVED, subjects=[], silences=silences()), color=False
    )
    lines = text.splitlines()
    assert "2 silence(s) and pause(s):" in lines
    header = lines.index("2 silence(s) and pause(s):") + 1
    assert lines[header].split() == ["ID", "KIND", "SUBJECTS", "STARTS", "ENDS", "BY", "REASON"]
    assert "a1b2c3d4e5f6" in lines[header + 1] and "upgrade" in lines[header + 1]
    assert "\x1b" not in text  # a reason cannot drive the terminal
    assert "(scheduled)" in lines[header + 2] and "until resumed" in lines[header + 2]


def test_no_silences_no_section() -> None:
    text = render_table(StatusReport(observed_at=OBSERVED, subjects=[]), color=False)
    assert "silence" not in text


def test_silences_survive_the_json_round_trip() -> None:
    rep = StatusReport(observed_at=OBSERVED, subjects=[], silences=silences())
    assert decode_status(encode_status(rep)).silences == rep.silences


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("2026-12-02T03:00:00Z", datetime(2026, 12, 2, 3, tzinfo=UTC)),
        ("2026-12-02T03:00:00.123456789+01:00", datetime(2026, 12, 2, 2, 0, 0, 123456, tzinfo=UTC)),
        ("2026-12-02 03:00", datetime(2026, 12, 2, 3).astimezone()),
        ("2026-12-02 03:00:30", datetime(2026, 12, 2, 3, 0, 30).astimezone()),
    ],
)
def test_times_are_rfc3339_or_local(text: str, want: datetime) -> None:
    assert parse_when(text) == want


@pytest.mark.parametrize("text", ["tomorrow", "2026-12-02", "03:00", "2026-13-02 03:00", "1e9"])
def test_other_times_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_when(text)
