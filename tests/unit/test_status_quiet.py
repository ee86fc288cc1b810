"""Quiet subjects in the status: the JSON's quiet fields, ?state= by kind, the table's
STATUS word (MAINT (nightly), SILENCED (id), ...) and DETAILS."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from cli.status import render_table, summarize
from heartbeat.depends import Dependencies, Dependency
from heartbeat.durations import SECOND
from heartbeat.engine import EngineConfig, Health, Record
from heartbeat.maintenance import Maintenance, Window
from heartbeat.quiet import LOUD, Hush, Quiet, Quieter, QuietKind, never_quiet
from heartbeat.silences import SilenceBook, new_silence
from heartbeat.status import Filter, build_report
from heartbeat.status_schema import StatusReport, SubjectStatus, decode_status, encode_status
from heartbeat.subjects import Subjects, Track

NOW = datetime(2026, 6, 1, 2, 30, tzinfo=UTC).timestamp()
UNTIL = datetime(2026, 6, 1, 4, 0, tzinfo=UTC).timestamp()
HUSHES = {
    "heartbeat.batch.a": Hush(Quiet(QuietKind.MAINT, UNTIL, "nightly")),
    "heartbeat.batch.b": Hush(Quiet(QuietKind.SILENCED, UNTIL, "s-1f2e")),
    "heartbeat.dc1.web": Hush(Quiet(QuietKind.SUPPRESSED, None, "heartbeat.dc1.uplink")),
    "heartbeat.web": Hush(None, NOW - 10),  # loud again; an earlier end is not shown
}


def hush_for(subject: str, now: float) -> Hush:
    return HUSHES.get(subject, LOUD)


def track(subject: str, last_seen: float = NOW - 1, **kw: Any) -> Track:
    rec = Record(subject=subject, interval_ns=10 * SECOND, last_seen=last_seen, **kw)
    return Track(subject=subject, record=rec, rev=1)


TRACKS = [
    track("heartbeat.batch.a", last_seen=NOW - 600),  # missing inside the window
    track("heartbeat.batch.b"),
    track("heartbeat.dc1.web", last_seen=NOW - 600, alert_active=True, alert_last_seen=NOW - 600),
    track("heartbeat.web"),
]


def test_the_json_names_the_quiet_its_end_and_its_source() -> None:
    rep = build_report(TRACKS, NOW, hush_for=hush_for)
    rows = {r.subject: r for r in rep.subjects}
    a = rows["heartbeat.batch.a"]
    assert (a.quiet, a.quiet_until, a.quiet_ref) == (
        "maint",
        datetime(2026, 6, 1, 4, tzinfo=UTC),
        "nightly",
    )
    assert a.missing and not a.alert_active  # tracked and shown, not told
    assert rows["heartbeat.dc1.web"].quiet == "suppressed"
    assert rows["heartbeat.dc1.web"].quiet_until is None
    assert rows["heartbeat.web"].quiet is None
    back = decode_status(encode_status(rep))
    assert back.subjects == rep.subjects
    assert b'"quiet":"maint","quiet_until":"2026-06-01T04:00:00Z","quiet_ref":"nightly"' in (
        encode_status(rep)
    )


def test_without_sources_nothing_is_quiet() -> None:
    rep = build_report(TRACKS, NOW)
    assert all(r.quiet is None for r in rep.subjects)


@pytest.mark.parametrize(
    ("state", "subjects"),
    [
        ("maint", ["heartbeat.batch.a"]),
        ("silenced", ["heartbeat.batch.b"]),
        ("suppressed", ["heartbeat.dc1.web"]),
        ("paused", []),
        ("alert", ["heartbeat.dc1.web"]),  # a quiet subject keeps its health
        ("late", ["heartbeat.batch.a"]),
        ("ok", ["heartbeat.batch.b", "heartbeat.web"]),
    ],
)
def test_state_filter_takes_health_and_quiet_kinds(state: str, subjects: list[str]) -> None:
    only = Filter.parse({"state": state})
    rep = build_report(TRACKS, NOW, only=only, hush_for=hush_for)
    assert [r.subject for r in rep.subjects] == subjects


def test_state_filter_rejects_other_words() -> None:
    with pytest.raises(
        ValueError, match="one of ok, late, alert, paused, silenced, maint, suppressed"
    ):
        Filter.parse({"state": "muted"})
    assert Filter.parse({"state": "maint"}).state is QuietKind.MAINT
    assert Filter.parse({"state": "ok"}).state is Health.OK


def row(**kw: Any) -> SubjectStatus:
    fields: dict[str, Any] = {
        "subject": "heartbeat.batch.a",
        "description": "batch",
        "last_seen": datetime(2026, 6, 1, 2, 20, tzinfo=UTC),
        "interval": "10s",
        "allowed_window": "10s",
        "missing": False,
        "alert_active": False,
    }
    return SubjectStatus(**{**fields, **kw})


OBSERVED = datetime(2026, 6, 1, 2, 30, tzinfo=UTC)
UNTIL_DT = datetime(2026, 6, 1, 4, tzinfo=UTC)


@pytest.mark.parametrize(
    ("fields", "word", "details"),
    [
        (
            {"quiet": "maint", "quiet_until": UNTIL_DT, "quiet_ref": "nightly"},
            "MAINT (nightly)",
            "interval 10s, window 10s; quiet until 04:00 UTC",
        ),
        (
            {
                "quiet": "maint",
                "quiet_until": UNTIL_DT,
                "quiet_ref": "nightly",
                "missing": True,
                "miss_for": "10m0s",
                "miss_count": 60,
            },
            "MAINT (nightly)",
            "late by 10m0s (60 beats); quiet until 04:00 UTC",
        ),
        (
            {
                "quiet": "silenced",
                "quiet_until": UNTIL_DT,
                "quiet_ref": "s-1f2e",
                "missing": True,
                "miss_for": "10m0s",
                "alert_active": True,
            },
            "SILENCED (s-1f2e)",
            "alert sent before, missed 10m0s; quiet until 04:00 UTC",
        ),
        (
            {"quiet": "paused", "quiet_ref": "p1"},
            "PAUSED (p1)",
            "interval 10s, window 10s; quiet until resumed",
        ),
        (
            {"quiet": "suppressed", "quiet_ref": "heartbeat.dc1.uplink"},
            "SUPPRESSED (heartbeat.dc1.uplink)",
            "interval 10s, window 10s; quiet while its parent is missing",
        ),
        (
            {"quiet": "maint", "quiet_ref": "x\x1b[31m"},
            "MAINT (x)",
            "interval 10s, window 10s; quiet until lifted",
        ),
    ],
)
def test_the_table_says_why_it_is_quiet(fields: dict[str, Any], word: str, details: str) -> None:
    assert summarize(row(**fields), OBSERVED) == (word, details)


def test_quiet_words_are_coloured_and_do_not_count_as_firing_unless_an_alert_was_sent() -> None:
    rep = StatusReport(
        observed_at=OBSERVED,
        subjects=[row(quiet="maint", quiet_until=UNTIL_DT, quiet_ref="nightly", missing=True)],
    )
    text = render_table(rep, color=True)
    assert "\x1b[36mMAINT (nightly)\x1b[0m" in text
    assert "0 alert(s) firing across 1 subject(s)" in text
    plain = render_table(rep, color=False)
    assert "MAINT (nightly)  heartbeat.batch.a" in plain


def test_idle_sources_are_not_asked_for_each_subject_and_answer_the_same() -> None:
    silences = SilenceBook()
    quieter = Quieter([silences])
    assert Quieter().asking() is never_quiet
    assert quieter.asking() is never_quiet  # a monitor's silence book, empty
    for query in ({}, {"counts": "1"}, {"state": "maint", "counts": "1"}):
        only = Filter.parse(query)
        asked = build_report(TRACKS, NOW, only=only, hush_for=quieter.hush_for)
        skipped = build_report(TRACKS, NOW, only=only, hush_for=never_quiet)
        assert encode_status(skipped) == encode_status(asked)
    pause = new_silence(
        "p1", "pause", ["heartbeat.web"], starts=NOW - 60, ends=None, reason="", by="me", created=0
    )
    silences.put("p1", pause, 1)
    assert quieter.asking() == quieter.hush_for
    rows = {r.subject: r for r in build_report(TRACKS, NOW, hush_for=quieter.asking()).subjects}
    assert rows["heartbeat.web"].quiet == "paused"
    window = Window("nightly", ("heartbeat.batch.>",), "0 2 * * *", 3600.0)
    assert Quieter([SilenceBook(), Maintenance([window])]).asking() != never_quiet
    rules = (Dependency(("heartbeat.dc1.>",), "heartbeat.dc1.uplink"),)
    assert not Dependencies(Subjects(EngineConfig()), rules).idle
    assert Dependencies(Subjects(EngineConfig()), ()).idle and Maintenance([]).idle
