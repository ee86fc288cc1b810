"""The status report's fast rows (a loud plain heartbeat, read without building its view)
give the same JSON as the general row of the view, for every kind of track."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from heartbeat import status
from heartbeat.durations import SECOND
from heartbeat.engine import Beat, Job, Record, merged
from heartbeat.jobrules import JobState
from heartbeat.quiet import LOUD, Hush, Quiet, QuietKind
from heartbeat.routing import Route, Router
from heartbeat.status import Filter, build_report, subject_status
from heartbeat.status_schema import AwareRows, InvalidStatus, SubjectStatus, encode_status
from heartbeat.subjects import Track

NOW = 1_800_000_000.25


def beat(silent_s: float, interval_s: float = 10, grace_s: float | None = None, **kw: Any) -> Beat:
    fields: dict[str, Any] = {"host": "beat-host", "description": "from the beat"}
    fields.update(kw)
    return Beat(
        last_seen=NOW - silent_s,
        interval_ns=round(interval_s * SECOND),
        grace_ns=None if grace_s is None else round(grace_s * SECOND),
        generated_at="g",
        **fields,
    )


def record(name: str, silent_s: float, interval_s: float = 60, **kw: Any) -> Record:
    fields: dict[str, Any] = {"subject": name, "host": "rec-host", "description": "from rec"}
    fields.update(kw)
    return Record(last_seen=NOW - silent_s, interval_ns=round(interval_s * SECOND), **fields)


def row(name: str, rec: dict[str, Any] | None, b: Beat | None) -> Track:
    subject = f"hb.{name}"
    return Track(
        subject=subject,
        record=None if rec is None else record(subject, **rec),
        beat=b,
    )


FAILED = JobState(last_result="fail", exit_code=1, output="disk full", alert="failed")
# Where the record and the beat both hold facts they differ in every field a row shows,
# so a row read from the wrong one (or with the wrong one's time) changes the JSON.
TABLE = [
    row("beat-only", None, beat(1)),
    row("beat-only-bare", None, beat(1, host="", description="")),
    row("beat-only-grace", None, beat(1, grace_s=30)),
    row("beat-only-zero-grace", None, beat(1, grace_s=0)),
    row("beat-only-late", None, beat(25)),
    row("beat-only-late-grace", None, beat(25, grace_s=30)),
    row("beat-only-at-window", None, beat(10)),  # silent exactly its window: not missing
    row("beat-only-never", None, beat(NOW)),  # last_seen 0: merged() makes an empty record
    row("beat-newer", {"silent_s": 100}, beat(2)),
    row("beat-newer-late", {"silent_s": 100}, beat(50, interval_s=20, grace_s=45)),
    row("beat-newer-alerting", {"silent_s": 100, "alert_active": True}, beat(2)),
    row("beat-older", {"silent_s": 2, "grace_ns": 0}, beat(100, grace_s=20)),
    row("beat-same-time", {"silent_s": 5}, beat(5)),
    row("record-only", {"silent_s": 3, "grace_ns": 90 * SECOND}, None),
    row("record-only-late", {"silent_s": 600, "grace_ns": 90 * SECOND}, None),
    row("record-only-at-window", {"silent_s": 90, "grace_ns": 90 * SECOND}, None),
    row("record-alerting", {"silent_s": 600, "alert_active": True, "alert_id": "a1"}, None),
    row("record-bare", {"silent_s": 3, "host": "", "description": ""}, None),
    row("record-never", {"silent_s": NOW}, None),  # never seen: no last_seen, not missing
    row("record-no-interval", {"silent_s": 600, "interval_s": 0}, None),
    row("record-other-name", {"silent_s": 3, "subject": "hb.renamed"}, beat(1)),
    row("record-ns-interval", {"silent_s": 1e-6, "interval_s": 1.5e-6}, None),
    row("record-job", {"silent_s": 3, "job": FAILED}, beat(1)),
    row("beat-job", {"silent_s": 100}, beat(1, job=Job(kind="start", run_id="r1"))),
    row("beat-job-older", {"silent_s": 1}, beat(100, job=Job(kind="success", exit_code=0))),
    row("beat-job-only", None, beat(1, job=Job(kind="fail", exit_code=2, output="x"))),
    row("quiet-maint", {"silent_s": 600}, beat(500)),
    row("quiet-silenced", None, beat(1)),
    row("quiet-ended", {"silent_s": 3}, beat(1)),
    row("unrouted", {"silent_s": 3}, beat(1)),
    row("unrouted-late", None, beat(100)),
]
TABLE.append(Track(subject="hb.empty"))  # neither: what merged() makes of nothing
HUSHES = {
    "hb.quiet-maint": Hush(Quiet(QuietKind.MAINT, NOW + 3600.5, "nightly")),
    "hb.quiet-silenced": Hush(Quiet(QuietKind.SILENCED, None, "s-1")),
    "hb.quiet-ended": Hush(None, NOW - 10),  # loud again: nothing shown
}
ROUTED = {t.subject for t in TABLE if not t.subject.startswith("hb.unrouted")}
ROUTER = Router(channels=["ops"], routes=[Route(subjects=tuple(ROUTED), channels=("ops",))])


def hush_for(subject: str, now: float) -> Hush:
    return HUSHES.get(subject, LOUD)


def general(t: Track, now: float) -> SubjectStatus:
    """The row as it was made before the fast path: the general row of the view."""
    return subject_status(
        t.view(), now, unrouted=ROUTER.route(t.subject).unrouted, hush=hush_for(t.subject, now)
    )


def fast(t: Track, now: float) -> SubjectStatus:
    return build_report([t], now, router=ROUTER, hush_for=hush_for).subjects[0]


def encode(row: SubjectStatus) -> bytes:
    return msgspec.json.encode(row)


@pytest.mark.parametrize("now", [NOW, NOW + 30, NOW + 1e6])
@pytest.mark.parametrize("t", TABLE, ids=lambda t: t.subject[3:])
def test_a_row_is_the_row_of_its_view(t: Track, now: float) -> None:
    assert encode(fast(t, now)) == encode(general(t, now))


SLOW = {"hb.beat-only-never", "hb.empty", "hb.quiet-maint", "hb.quiet-silenced"}
SLOW |= {"hb.record-job", "hb.beat-job", "hb.beat-job-older", "hb.beat-job-only"}


def test_the_table_takes_the_fast_path_and_tells_its_sources_apart(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not a comparison of the general path with itself: plain rows never reach
    subject_status, and each plain row with both a record and a beat would come out
    different read from the other one (the record where the beat is newer, the beat
    where it is not)."""
    asked: list[str] = []

    def spy(cur: Record, now: float, **kw: Any) -> SubjectStatus:
        asked.append(cur.subject)
        return subject_status(cur, now, **kw)

    monkeypatch.setattr(status, "subject_status", spy)
    build_report(TABLE, NOW, router=ROUTER, hush_for=hush_for)
    assert sorted(asked) == sorted(SLOW)
    monkeypatch.undo()
    both = [t for t in TABLE if t.subject not in SLOW and t.record and t.beat]
    assert len(both) >= 6
    for t in both:
        rec, b = t.record, t.beat
        assert rec is not None and b is not None
        right = t.view()
        if b.last_seen > rec.last_seen:
            wrongs = [rec, msgspec.structs.replace(right, last_seen=rec.last_seen)]
        else:
            wrongs = [merged(None, b, rec.subject), msgspec.structs.replace(right, host=b.host)]
        for wrong in wrongs:
            assert encode(subject_status(wrong, NOW)) != encode(subject_status(right, NOW))


@pytest.mark.parametrize(
    "query",
    [
        {},
        {"counts": "1"},
        {"limit": "4", "offset": "3", "counts": "1"},
        {"after": "hb.quiet"},
        {"subject": "hb.beat-only"},
        {"subject": "hb.*", "state": "late"},
        {"state": "alert"},
        {"state": "ok"},
        {"state": "maint"},
        {"state": "silenced", "counts": "1"},
    ],
)
def test_every_filter_answers_what_the_general_rows_answer(query: dict[str, str]) -> None:
    only = Filter.parse(query)
    report = build_report(TABLE, NOW, router=ROUTER, hush_for=hush_for, only=only)
    chosen, _, _ = status.select(TABLE, NOW, only, hush_for)
    assert report.subjects
    expected = msgspec.structs.replace(report, subjects=[general(t, NOW) for t in chosen])
    assert encode_status(report) == encode_status(expected)


def test_built_rows_are_taken_as_checked_and_every_time_in_them_is_utc() -> None:
    """encode_status skips its scan for naive times on build_report's rows: hold every
    kind of row to UTC, so the skip never lets one through (Go rejects it)."""
    job = JobState(running_since=NOW - 100, schedule="*/5 * * * *", timezone="Europe/Berlin")
    tracks = [*TABLE, row("job-running", {"silent_s": 3, "job": job}, None)]
    report = build_report(tracks, NOW, router=ROUTER, hush_for=hush_for)
    assert type(report.subjects) is AwareRows
    times = [
        (r.subject, name, getattr(r, name))
        for r in report.subjects
        for name in ("last_seen", "running_since", "next_run_due", "quiet_until")
    ]
    assert {name for _, name, value in times if value is not None} == {
        "last_seen",
        "running_since",
        "next_run_due",
        "quiet_until",
    }
    assert [t for t in times if t[2] is not None and t[2].tzinfo is not UTC] == []
    naive = msgspec.structs.replace(report.subjects[0], last_seen=datetime(2026, 1, 2))
    with pytest.raises(InvalidStatus, match=r"subjects\[1\]\.last_seen"):
        encode_status(msgspec.structs.replace(report, subjects=[report.subjects[0], naive]))
