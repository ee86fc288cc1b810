"""Maintenance windows as tables, with an injected ``now``: UTC, other zones, both DST
changes in Europe/Berlin, overlapping and long occurrences, the lookback, the cache."""

from __future__ import annotations

import random
from datetime import UTC, datetime, tzinfo
from zoneinfo import ZoneInfo

import pytest

from heartbeat.durations import SECOND
from heartbeat.engine import EngineConfig, Reason, Record, evaluate
from heartbeat.maintenance import (
    MAX_WINDOW_S,
    Maintenance,
    Window,
    check_schedule,
    check_zone,
    last_start,
    phase,
)
from heartbeat.quiet import LOUD, QuietKind

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
H = 3600.0


def at(
    y: int,
    mo: int,
    d: int,
    h: int = 0,
    mi: int = 0,
    s: int = 0,
    *,
    zone: tzinfo = UTC,
    fold: int = 0,
) -> float:
    return datetime(y, mo, d, h, mi, s, tzinfo=zone, fold=fold).timestamp()


def win(schedule: str, duration_s: float, zone: str = "UTC", name: str = "w") -> Window:
    return Window(name, ("heartbeat.batch.>",), schedule, duration_s, zone)


NIGHTLY = win("0 2 * * *", 2 * H)
SUNDAY_BERLIN = win("0 2 * * SUN", 2 * H, "Europe/Berlin")
HALF_PAST_BERLIN = win("30 2 * * *", 1 * H, "Europe/Berlin")
HOURLY_BERLIN = win("30 * * * *", 600, "Europe/Berlin")
FRIDAY_NY = win("0 22 * * FRI", 4 * H, "America/New_York")
OVERLAP = win("0,30 1 * * *", 45 * 60)  # 01:00-01:45 and 01:30-02:15: one period
TOUCHING = win("0 1,2 * * *", 1 * H)  # 01:00-02:00 and 02:00-03:00: one period
LONG = win("0 0 * * MON", 72 * H)  # Monday 00:00 to Thursday 00:00
YEARLY = win("0 0 1 1 *", 1 * H)
SECONDS = win("10 * * * * *", 5)  # 6 fields: second 10 of every minute, 5 s

# (name, window, now, quiet until (None: loud), ended)
CASES = [
    ("before the start", NIGHTLY, at(2026, 6, 1, 1, 59), None, at(2026, 5, 31, 4)),
    ("at the start", NIGHTLY, at(2026, 6, 1, 2), at(2026, 6, 1, 4), 0.0),
    ("inside", NIGHTLY, at(2026, 6, 1, 3, 59, 59), at(2026, 6, 1, 4), 0.0),
    ("at the end: over", NIGHTLY, at(2026, 6, 1, 4), None, at(2026, 6, 1, 4)),
    ("after", NIGHTLY, at(2026, 6, 1, 12), None, at(2026, 6, 1, 4)),
    # Spring forward (2026-03-29, 02:00 CET -> 03:00 CEST): 02:30 does not exist; cron
    # runs the window right after the gap, for a real hour.
    (
        "spring: starts after the gap",
        HALF_PAST_BERLIN,
        at(2026, 3, 29, 3, 0, zone=BERLIN),
        at(2026, 3, 29, 4, 0, zone=BERLIN),
        0.0,
    ),
    (
        "spring: the night before ends as usual",
        HALF_PAST_BERLIN,
        at(2026, 3, 29, 1, 59, zone=BERLIN),
        None,
        at(2026, 3, 28, 3, 30, zone=BERLIN),
    ),
    (
        "spring: a 2h Sunday window from 03:00 CEST to 05:00",
        SUNDAY_BERLIN,
        at(2026, 3, 29, 4, 59, zone=BERLIN),
        at(2026, 3, 29, 5, 0, zone=BERLIN),
        0.0,
    ),
    (
        "spring: next Sunday at 02:00 CEST again",
        SUNDAY_BERLIN,
        at(2026, 4, 5, 2, 0, zone=BERLIN),
        at(2026, 4, 5, 4, 0, zone=BERLIN),
        0.0,
    ),
    # Fall back (2026-10-25, 03:00 CEST -> 02:00 CET): 02:00 CEST is 00:00Z; two real
    # hours end at 02:00Z, which is 03:00 CET on the wall clock.
    (
        "autumn: starts once, at the first 02:00",
        SUNDAY_BERLIN,
        at(2026, 10, 25, 0, 0),
        at(2026, 10, 25, 2, 0),
        0.0,
    ),
    (
        "autumn: still on in the repeated 02:30",
        SUNDAY_BERLIN,
        at(2026, 10, 25, 2, 30, zone=BERLIN, fold=1),
        at(2026, 10, 25, 3, 0, zone=BERLIN),
        0.0,
    ),
    (
        "autumn: over after two real hours",
        SUNDAY_BERLIN,
        at(2026, 10, 25, 3, 0, zone=BERLIN),
        None,
        at(2026, 10, 25, 2, 0),
    ),
    (
        "autumn: an hourly window runs in both 02:30s (second)",
        HOURLY_BERLIN,
        at(2026, 10, 25, 2, 35, zone=BERLIN, fold=1),
        at(2026, 10, 25, 2, 40, zone=BERLIN, fold=1),
        0.0,
    ),
    (
        "autumn: between the two 02:30s",
        HOURLY_BERLIN,
        at(2026, 10, 25, 2, 50, zone=BERLIN, fold=0),
        None,
        at(2026, 10, 25, 2, 40, zone=BERLIN, fold=0),
    ),
    (
        "New York: Friday 22:00 for 4h crosses midnight",
        FRIDAY_NY,
        at(2026, 6, 6, 1, 0, zone=NEW_YORK),
        at(2026, 6, 6, 2, 0, zone=NEW_YORK),
        0.0,
    ),
    (
        "New York: over on Saturday 02:00 local (06:00Z)",
        FRIDAY_NY,
        at(2026, 6, 6, 6, 0),
        None,
        at(2026, 6, 6, 2, 0, zone=NEW_YORK),
    ),
    ("overlapping: one period", OVERLAP, at(2026, 6, 1, 1, 10), at(2026, 6, 1, 2, 15), 0.0),
    ("overlapping: in the second", OVERLAP, at(2026, 6, 1, 1, 50), at(2026, 6, 1, 2, 15), 0.0),
    ("overlapping: ends once", OVERLAP, at(2026, 6, 1, 2, 15), None, at(2026, 6, 1, 2, 15)),
    ("touching: no gap", TOUCHING, at(2026, 6, 1, 1, 30), at(2026, 6, 1, 3), 0.0),
    ("touching: at the seam", TOUCHING, at(2026, 6, 1, 2), at(2026, 6, 1, 3), 0.0),
    ("long: Wednesday night", LONG, at(2026, 6, 3, 23, 59), at(2026, 6, 4), 0.0),  # Mon 1 Jun
    ("long: Thursday", LONG, at(2026, 6, 4, 0, 0), None, at(2026, 6, 4)),
    ("lookback: an end within it", YEARLY, at(2026, 1, 20), None, at(2026, 1, 1, 1)),
    ("lookback: an end past it", YEARLY, at(2026, 2, 15), None, 0.0),
    ("seconds field", SECONDS, at(2026, 6, 1, 12, 0, 12), at(2026, 6, 1, 12, 0, 15), 0.0),
    ("seconds: over", SECONDS, at(2026, 6, 1, 12, 0, 15), None, at(2026, 6, 1, 12, 0, 15)),
]


@pytest.mark.parametrize(("name", "w", "now", "until", "ended"), CASES, ids=[c[0] for c in CASES])
def test_phase(name: str, w: Window, now: float, until: float | None, ended: float) -> None:
    p = phase(w, now)
    assert p.holds(now)
    q = p.hush.quiet
    if until is None:
        assert q is None, datetime.fromtimestamp(q.until or 0, UTC) if q else None
        assert p.hush.ended == ended
    else:
        assert q is not None and q.kind is QuietKind.MAINT and q.ref == "w"
        assert q.until == until
    assert p.hush.ended == ended


def test_a_phase_holds_until_the_next_start_or_end() -> None:
    now = at(2026, 6, 1, 12)
    loud = phase(NIGHTLY, now)
    assert (loud.start, loud.stop) == (at(2026, 6, 1, 4), at(2026, 6, 2, 2))
    quiet = phase(NIGHTLY, at(2026, 6, 2, 2))
    assert quiet.stop == at(2026, 6, 2, 4)
    # An end that would fall out of the lookback ends the phase then.
    old = phase(YEARLY, at(2026, 1, 20))
    assert old.stop == at(2026, 1, 1, 1) + MAX_WINDOW_S
    assert phase(YEARLY, old.stop).hush.ended == 0.0


def test_a_window_with_no_gap_stays_quiet_from_one_answer_to_the_next() -> None:
    always = win("* * * * *", 150)  # every minute for 2.5 minutes
    now = at(2026, 6, 1, 12, 0, 30)
    p = phase(always, now)
    assert p.hush.quiet is not None and p.hush.quiet.until is not None
    until = p.hush.quiet.until
    assert until > now + 3600  # many occurrences merged, bounded
    again = phase(always, until)
    assert again.hush.quiet is not None and again.hush.quiet.until is not None
    assert again.hush.quiet.until > until


def test_last_start_counts_a_start_at_now() -> None:
    assert last_start(NIGHTLY, at(2026, 6, 1, 2)) == at(2026, 6, 1, 2)
    assert last_start(NIGHTLY, at(2026, 6, 1, 2) - 0.5) == at(2026, 5, 31, 2)
    assert last_start(NIGHTLY, at(2026, 6, 1, 2) + 0.5) == at(2026, 6, 1, 2)


def test_the_source_asks_each_window_once_per_phase_whatever_the_subjects() -> None:
    batch = Window("batch", ("heartbeat.batch.>",), "0 2 * * *", 2 * H)
    db = Window("db", ("heartbeat.db.*", "heartbeat.batch.db"), "0 3 * * *", 2 * H)
    m = Maintenance([batch, db])
    subjects = [f"heartbeat.batch.job{i}" for i in range(20_000)]
    subjects += [f"heartbeat.db.n{i}" for i in range(20_000)]
    subjects += [f"heartbeat.web.n{i}" for i in range(20_000)]
    now = at(2026, 6, 1, 2, 30)
    for t in (now, now + 1, now + 60):
        hushes = [m.hush(s, t) for s in subjects]
    assert m.computed == 2
    assert sum(1 for h in hushes if h.quiet is not None) == 20_000
    assert m.hush("heartbeat.web.n1", now).quiet is None
    # One tuple object per set of windows, not one per subject.
    assert m.matching("heartbeat.batch.job1") is m.matching("heartbeat.batch.job2")
    # Both windows at once (02:00-04:00 and 03:00-05:00): the one ending last is shown.
    both = m.hush("heartbeat.batch.db", at(2026, 6, 1, 3, 30))
    assert (
        both.quiet is not None and both.quiet.ref == "db" and both.quiet.until == at(2026, 6, 1, 5)
    )
    later = m.hush("heartbeat.batch.db", at(2026, 6, 1, 4, 30))
    assert later.quiet is not None and later.quiet.ref == "db"
    after = m.hush("heartbeat.batch.db", at(2026, 6, 1, 6))
    assert after.quiet is None and after.ended == at(2026, 6, 1, 5)


@pytest.mark.parametrize(
    ("schedule", "zone", "problem"),
    [
        ("0 2 * * SUN", "UTC", None),
        ("*/5 * * * * *", "Europe/Berlin", None),
        ("0 2 * *", "UTC", "is not a cron expression"),
        ("0 0 30 2 *", "UTC", "is not a cron expression"),
        ("0 25 * * *", "UTC", "is not a cron expression"),
        ("0 2 * * SUN\x1b[31m", "UTC", "is not a cron expression"),
    ],
)
def test_check_schedule(schedule: str, zone: str, problem: str | None) -> None:
    why = check_schedule(schedule, zone)
    assert (why is None) if problem is None else (why is not None and problem in why)


@pytest.mark.parametrize("zone", ["Mars/Olympus", "../etc/passwd", "", "Europe/Berlin\x00"])
def test_check_zone(zone: str) -> None:
    why = check_zone(zone)
    assert why is not None and "is not a known time zone" in why
    assert check_zone("Europe/Berlin") is None and check_zone("UTC") is None


# The window's answers fed to the engine: a subject with a 60 s window (tolerance 1 s)
# that stops beating inside a 02:00-04:00 window.
CFG = EngineConfig(repeat_every_s=3600.0, tolerance_s=1.0)
END = at(2026, 6, 1, 4)


def missing_since(last_seen: float) -> Record:
    return Record(subject="heartbeat.batch.x", interval_ns=60 * SECOND, last_seen=last_seen)


@pytest.mark.parametrize(
    ("last_seen", "now", "reason"),
    [
        (at(2026, 6, 1, 3), at(2026, 6, 1, 3, 30), Reason.NONE),  # quiet inside
        (at(2026, 6, 1, 3), END + 60.0, Reason.NONE),  # a window after the end, not yet
        (at(2026, 6, 1, 3), END + 61.5, Reason.ALERT),  # window + tolerance after it
        (at(2026, 6, 1, 3, 59, 30), END + 61.5, Reason.ALERT),
        (END + 30.0, END + 61.5, Reason.NONE),  # beat after the end: counts from it
        (at(2026, 6, 1, 1, 50), at(2026, 6, 1, 1, 51, 30), Reason.ALERT),  # before: loud
    ],
)
def test_the_engine_with_a_window(last_seen: float, now: float, reason: Reason) -> None:
    m = Maintenance([NIGHTLY])
    subject = "heartbeat.batch.x"
    out = evaluate(subject, missing_since(last_seen), None, now, CFG, hush=m.hush(subject, now))
    assert out.reason is reason
    if at(2026, 6, 1, 2) <= now < END:
        assert out.due == END  # while quiet: look again at the end, no wake needed
    if reason is Reason.NONE and now >= END and last_seen < END:
        assert out.due == END + 61.0


def test_the_pattern_tree_matches_as_nats_does() -> None:
    patterns = ["a.>", "a.*", "a.b", "*.b.>", ">", "*", "a.*.c", "a.b.c.>", "b"]
    windows = [Window(str(i), (p,), "0 2 * * *", 60) for i, p in enumerate(patterns)]
    m = Maintenance(windows)
    rng = random.Random(14)
    for _ in range(3000):
        subject = ".".join(rng.choice("abcd") for _ in range(rng.randint(1, 5)))
        assert m.matching(subject) == tuple(
            i for i, w in enumerate(windows) if w.covers(subject)
        ), subject


def test_a_window_that_cannot_be_computed_is_loud_and_logged_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    m = Maintenance([Window("broken", (">",), "not a cron", 60.0)])  # not from the config
    now = at(2026, 6, 1)
    for t in range(100):
        assert m.hush("heartbeat.x", now + t * 0.1) is LOUD
    assert m.computed == 1  # retried a minute later, not on every ask
    lines = [r for r in caplog.records if "maintenance window broken" in r.getMessage()]
    assert len(lines) == 1 and "ignoring it for a minute" in lines[0].getMessage()
