"""Status paging for the status page: offset, after, total and counts, as a table."""

from __future__ import annotations

from collections import Counter

import msgspec
import pytest

from heartbeat.durations import SECOND
from heartbeat.engine import Beat, EngineConfig, Health, Job, Record, health
from heartbeat.jobrules import JobState
from heartbeat.quiet import LOUD, Hush, Quiet, QuietKind
from heartbeat.status import Filter, build_report, health_counts, select, track_health
from heartbeat.status_schema import decode_status, encode_status
from heartbeat.subjects import Subjects, Track

NOW = 1_800_000_000.0


def track(subject: str, silent_s: float, *, alert: bool = False) -> Track:
    rec = Record(
        subject=subject,
        interval_ns=10 * SECOND,
        last_seen=NOW - silent_s,
        alert_active=alert,
        alert_id="a1" if alert else None,
    )
    return Track(subject=subject, record=rec)


# 26 subjects a..z in shuffled order: every 5th alerting, every 7th late, the rest ok.
LETTERS = "qwertyuiopasdfghjklzxcvbnm"
TRACKS = [
    track(f"hb.{c}", 60 if i % 5 == 0 else (15 if i % 7 == 0 else 1), alert=i % 5 == 0)
    for i, c in enumerate(LETTERS)
]


def fleet() -> Subjects:
    """TRACKS as a replica holds them: Subjects keeps them in order instead of sorting."""
    subjects = Subjects(EngineConfig())
    for t in TRACKS:
        assert t.record is not None
        subjects.set_record(t.subject, t.record, 1)
    return subjects


FLEET = fleet()


def listed(query: dict[str, str]) -> list[str]:
    page, total, counts = select(TRACKS, NOW, Filter.parse(query))
    kept = select(FLEET, NOW, Filter.parse(query))
    assert ([t.subject for t in kept[0]], kept[1], kept[2]) == (
        [t.subject for t in page],
        total,
        counts,
    )
    return [t.subject[3:] for t in page]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({}, sorted(LETTERS)),
        ({"limit": "3"}, ["a", "b", "c"]),
        ({"limit": "3", "offset": "3"}, ["d", "e", "f"]),
        ({"limit": "3", "offset": "24"}, ["y", "z"]),
        ({"limit": "3", "offset": "26"}, []),
        ({"offset": "23"}, ["x", "y", "z"]),
        ({"after": "hb.w", "limit": "2"}, ["x", "y"]),
        ({"after": "hb.z"}, []),
        ({"state": "alert", "limit": "2", "offset": "1"}, ["h", "m"]),  # of a h m q x y
        ({"state": "alert"}, ["a", "h", "m", "q", "x", "y"]),  # Subjects: its alerting index
        ({"state": "alert", "subject": "hb.*", "after": "hb.m"}, ["q", "x", "y"]),
        ({"state": "alert", "subject": "hb.b"}, []),
        ({"subject": "hb.*", "after": "hb.b", "limit": "1"}, ["c"]),
        ({"limit": "20"}, sorted(LETTERS)[:20]),  # past a quarter: the sort path
        ({"limit": "20", "offset": "21", "counts": "1"}, ["v", "w", "x", "y", "z"]),
        ({"subject": "hb.k"}, ["k"]),
        ({"subject": "hb.nothing"}, []),
    ],
)
def test_pages_are_slices_of_the_sorted_filtered_list(
    query: dict[str, str], expected: list[str]
) -> None:
    assert listed(query) == expected


def test_total_counts_every_match_and_counts_go_by_state_before_the_state_filter() -> None:
    only = Filter.parse({"state": "alert", "limit": "2", "counts": "1"})
    page, total, counts = select(TRACKS, NOW, only)
    alerting = [t for t in TRACKS if t.record is not None and t.record.alert_active]
    late = [i for i in range(26) if i % 7 == 0 and i % 5 != 0]
    assert len(page) == 2 and total == len(alerting) == 6
    assert counts == {"ok": 26 - 6 - len(late), "late": len(late), "alert": 6}


def test_the_plain_answer_is_unchanged_and_a_paged_one_says_how_many() -> None:
    plain = msgspec.json.decode(encode_status(build_report(TRACKS, NOW)))
    assert "total" not in plain and "counts" not in plain and len(plain["subjects"]) == 26
    paged = build_report(TRACKS, NOW, only=Filter.parse({"limit": "5", "counts": "1"}))
    back = decode_status(encode_status(paged))
    assert back.total == 26 and back.counts is not None and sum(back.counts.values()) == 26
    assert [s.subject for s in back.subjects] == [f"hb.{c}" for c in "abcde"]
    assert set(back.counts) == set(Health)


@pytest.mark.parametrize(
    "query",
    [
        {"offset": "-1"},
        {"offset": "x"},
        {"offset": "99999999999"},
        {"counts": "yes"},
        {"after": "a" * 5000},
        {"page": "2"},
    ],
)
def test_bad_paging_is_one_clear_error(query: dict[str, str]) -> None:
    with pytest.raises(ValueError) as e:
        Filter.parse(query)
    assert "\n" not in str(e.value) and len(str(e.value)) < 300


def beat(silent_s: float, interval_s: float = 10, grace_s: float | None = None) -> Beat:
    return Beat(
        last_seen=NOW - silent_s,
        interval_ns=int(interval_s * SECOND),
        grace_ns=None if grace_s is None else int(grace_s * SECOND),
        host="h",
        description="d",
        generated_at="",
    )


VIEWS = [
    Track(subject="hb.a"),
    Track(subject="hb.a", beat=beat(5)),
    Track(subject="hb.a", beat=beat(15)),
    Track(subject="hb.a", beat=beat(15, grace_s=30)),
    track("hb.a", 60),
    track("hb.a", 60, alert=True),
    msgspec.structs.replace(track("hb.a", 60), beat=beat(1)),  # the beat is newer
    msgspec.structs.replace(track("hb.a", 1), beat=beat(60)),  # the record is newer
    msgspec.structs.replace(track("hb.a", 60, alert=True), beat=beat(1)),
    Track(
        subject="hb.a",
        record=Record(
            subject="hb.a",
            interval_ns=10 * SECOND,
            last_seen=NOW - 1,
            job=JobState(alert="failed"),
        ),
    ),
]


@pytest.mark.parametrize("t", VIEWS)
def test_the_quick_health_of_a_track_is_the_health_of_its_view(t: Track) -> None:
    assert track_health(t, NOW) is health(t.view(), NOW)
    assert +health_counts([t], NOW) == Counter([health(t.view(), NOW)])


def test_counting_a_fleet_adds_up_the_health_of_each_view() -> None:
    job_beat = msgspec.structs.replace(beat(60), job=Job(kind="start", run_id="r1"))
    fleet = [*VIEWS * 3, Track(subject="hb.j", beat=job_beat)]
    assert +health_counts(fleet, NOW) == Counter(health(t.view(), NOW) for t in fleet)


def test_counts_add_the_kinds_of_quiet_and_a_quiet_state_pages_like_any() -> None:
    hushes = {
        "hb.a": Hush(Quiet(QuietKind.SILENCED, NOW + 60, "s-1")),
        "hb.b": Hush(Quiet(QuietKind.MAINT, NOW + 60, "nightly")),
        "hb.c": Hush(Quiet(QuietKind.SILENCED, None, "s-2")),
    }

    def hush_for(subject: str, now: float) -> Hush:
        return hushes.get(subject, LOUD)

    only = Filter.parse({"state": "silenced", "limit": "1", "counts": "1"})
    page, total, counts = select(TRACKS, NOW, only, hush_for)
    assert [t.subject for t in page] == ["hb.a"] and total == 2
    assert counts is not None and sum(counts[h] for h in Health) == 26
    assert {k: counts[k] for k in QuietKind} == {
        "paused": 0,
        "silenced": 2,
        "maint": 1,
        "suppressed": 0,
    }
    report = build_report(TRACKS, NOW, only=only, hush_for=hush_for)
    assert [(s.subject, s.quiet) for s in report.subjects] == [("hb.a", "silenced")]
