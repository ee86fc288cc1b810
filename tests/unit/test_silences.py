"""The silence book (heartbeat.silences) as tables: matching, ends, the ended floor,
future starts, hostile entries; and the engine fed by it."""

from __future__ import annotations

import logging

import msgspec
import pytest

from heartbeat.durations import SECOND
from heartbeat.engine import EngineConfig, Reason, Record, evaluate, next_due
from heartbeat.quiet import LOUD, Hush, Quiet, QuietKind
from heartbeat.silences import (
    InvalidSilence,
    Silence,
    SilenceBook,
    decode_silence,
    encode_silence,
    ended_at,
    new_silence,
)

T0 = 1_700_000_000.0
SUBJECT = "heartbeat.db.main"


def silence(
    id: str = "a1b2c3d4e5f6",
    subjects: tuple[str, ...] = ("heartbeat.db.>",),
    starts: float = T0,
    ends: float | None = T0 + 100,
    kind: str = "silence",
) -> Silence:
    return new_silence(
        id,
        "pause" if kind == "pause" else "silence",
        subjects,
        starts=starts,
        ends=ends,
        reason="r",
        by="me",
        created=starts,
    )


def book(*silences: Silence) -> SilenceBook:
    b = SilenceBook()
    for i, s in enumerate(silences, 1):
        b.put(s.id, s, i)
    return b


S = silence
P = silence("p1", ("heartbeat.db.main",), ends=None, kind="pause")

# (name, entries, subject, now, hush expected)
CASES: list[tuple[str, tuple[Silence, ...], str, float, Hush]] = [
    ("no silences: loud", (), SUBJECT, T0 + 1, LOUD),
    (
        "matching and active",
        (S(),),
        SUBJECT,
        T0 + 1,
        Hush(Quiet(QuietKind.SILENCED, T0 + 100, S().id)),
    ),
    ("another subject: loud", (S(),), "heartbeat.web.main", T0 + 1, LOUD),
    ("'*' is one token", (S(subjects=("heartbeat.*",)),), SUBJECT, T0 + 1, LOUD),
    (
        "'>' matches the rest",
        (S(subjects=("heartbeat.>",)),),
        SUBJECT,
        T0 + 1,
        Hush(Quiet(QuietKind.SILENCED, T0 + 100, S().id)),
    ),
    ("before its start: loud", (S(starts=T0 + 10),), SUBJECT, T0 + 5, LOUD),
    (
        "from its start: quiet",
        (S(starts=T0 + 10),),
        SUBJECT,
        T0 + 10,
        Hush(Quiet(QuietKind.SILENCED, T0 + 100, S().id)),
    ),
    ("at its end: loud, ended then", (S(),), SUBJECT, T0 + 100, Hush(None, T0 + 100)),
    ("long after: the floor stays", (S(),), SUBJECT, T0 + 5000, Hush(None, T0 + 100)),
    ("ended before it began: no floor", (S(starts=T0 + 50, ends=T0 + 20),), SUBJECT, T0 + 60, LOUD),
    ("pause: until resumed", (P,), SUBJECT, T0 + 1e6, Hush(Quiet(QuietKind.PAUSED, None, "p1"))),
    (
        "pause outranks a silence",
        (S(), P),
        SUBJECT,
        T0 + 1,
        Hush(Quiet(QuietKind.PAUSED, None, "p1")),
    ),
    (
        "two silences: the one ending last",
        (S(), S("b2", ends=T0 + 200)),
        SUBJECT,
        T0 + 1,
        Hush(Quiet(QuietKind.SILENCED, T0 + 200, "b2")),
    ),
    (
        "active, and an earlier one ended",
        (S("old", starts=T0 - 50, ends=T0 - 10), S()),
        SUBJECT,
        T0 + 1,
        Hush(Quiet(QuietKind.SILENCED, T0 + 100, S().id), T0 - 10),
    ),
    (
        "latest end of several",
        (S("x", ends=T0 + 5), S("y", ends=T0 + 9)),
        SUBJECT,
        T0 + 20,
        Hush(None, T0 + 9),
    ),
]


@pytest.mark.parametrize(
    ("name", "entries", "subject", "now", "want"), CASES, ids=[c[0] for c in CASES]
)
def test_book_hush(
    name: str, entries: tuple[Silence, ...], subject: str, now: float, want: Hush
) -> None:
    assert book(*entries).hush(subject, now) == want


def test_cache_is_forgotten_on_change() -> None:
    b = book()
    assert b.hush(SUBJECT, T0 + 1) == LOUD
    b.put("s1", S("s1"), 1)
    assert b.hush(SUBJECT, T0 + 1).quiet is not None
    b.put("s1", ended_at(S("s1"), T0 + 2), 2)
    assert b.hush(SUBJECT, T0 + 3) == Hush(None, T0 + 2)
    b.put("s1", None, 3)
    assert b.hush(SUBJECT, T0 + 3) == LOUD


def test_an_older_revision_does_not_replace_a_newer() -> None:
    b = book()
    b.put("s1", ended_at(S("s1"), T0 + 2), 5)
    b.put("s1", S("s1"), 4)
    assert b.hush(SUBJECT, T0 + 3) == Hush(None, T0 + 2)


def test_changes_wake_old_and_new_patterns() -> None:
    b = book()
    b.put("s1", S("s1", subjects=("heartbeat.db.>",)), 1)
    b.put("s1", S("s1", subjects=("heartbeat.web.*",)), 2)
    match = b.take_changed()
    assert match is not None
    assert match("heartbeat.db.main") and match("heartbeat.web.a") and not match("other.x")
    assert b.take_changed() is None


def test_ended_at_keeps_an_earlier_end() -> None:
    s = S()
    assert ended_at(s, T0 + 500) is s
    assert ended_at(s, T0 + 5).ends_s == T0 + 5
    assert ended_at(P, T0 + 5).ends_s == T0 + 5


def test_current_and_purgeable() -> None:
    b = book(S("a", ends=T0 + 10), S("b", starts=T0 + 50, ends=T0 + 60), P)
    assert [s.id for s in b.current(T0 + 20)] == ["p1", "b"]
    assert b.purgeable(T0 + 20) == []
    assert [k for k, _ in b.purgeable(T0 + 10 + 7 * 86_400)] == ["a"]


GOOD = encode_silence(S("a1"))

HOSTILE = [
    ("not json", b"{nope"),
    ("not an object", b"[1,2]"),
    ("no subjects", GOOD.replace(b'["heartbeat.db.>"]', b"[]")),
    ("bad pattern", GOOD.replace(b"heartbeat.db.>", b"heartbeat..x")),
    ("'>' not last", GOOD.replace(b"heartbeat.db.>", b"heartbeat.>.x")),
    ("unknown kind", GOOD.replace(b'"silence"', b'"mute"')),
    ("silence without end", msgspec.json.encode({**msgspec.json.decode(GOOD), "ends": None})),
    ("naive time", GOOD.replace(b"Z", b"", 1)),
    ("id is not its key", GOOD.replace(b'"a1"', b'"zz"')),
    ("huge reason", msgspec.json.encode({**msgspec.json.decode(GOOD), "reason": "x" * 5000})),
    ("empty", b""),
]


@pytest.mark.parametrize(("name", "data"), HOSTILE, ids=[h[0] for h in HOSTILE])
def test_hostile_entries_are_rejected(name: str, data: bytes) -> None:
    with pytest.raises(InvalidSilence):
        decode_silence("a1", data)


def test_hostile_entries_are_ignored_and_logged_rate_limited(
    caplog: pytest.LogCaptureFixture,
) -> None:
    b = SilenceBook(clock=lambda: 0.0)
    b.observe("a1", GOOD, 1)
    with caplog.at_level(logging.WARNING, "heartbeat.silences"):
        for i, (_, data) in enumerate(HOSTILE * 20, 2):
            b.observe("a1", data or b"x", i)
    assert len(b) == 0  # what it replaced is gone too
    assert b.ignored == len(HOSTILE) * 20
    assert len(caplog.records) == 1
    assert decode_silence("a1", GOOD) == S("a1")


def test_new_silence_validates() -> None:
    with pytest.raises(InvalidSilence):
        silence(subjects=("a b",))
    with pytest.raises(InvalidSilence):
        silence(ends=None)
    with pytest.raises(InvalidSilence):
        new_silence(
            "x", "silence", ["a"], starts=T0, ends=T0 + 1, reason="r" * 1001, by="", created=T0
        )


# ----- the engine fed by the book --------------------------------------------------------

CFG = EngineConfig(repeat_every_s=60.0, tolerance_s=1.0, checkpoint_every_s=60.0)


def ok(at: float) -> Record:
    return Record(subject=SUBJECT, interval_ns=SECOND, last_seen=at, generated_at="x")


def test_a_subject_due_inside_a_silence_scheduled_later_is_not_alerted() -> None:
    """Loud when evaluated (the silence starts later), its deadline falls inside the
    silence: at that deadline it is quiet, and due again at the silence's end."""
    b = book(S(starts=T0 + 1.5, ends=T0 + 30))
    rec = ok(T0)
    due = next_due(rec, CFG, 0.0, b.hush(SUBJECT, T0 + 0.5))
    assert due == T0 + 2.0  # the loud deadline: nobody needs to wake it at the start
    out = evaluate(SUBJECT, rec, None, due + 0.01, CFG, hush=b.hush(SUBJECT, due + 0.01))
    assert out.reason is Reason.NONE and out.due == T0 + 30
    # At the end, still missing: a full window (+ tolerance) from then.
    at_end = evaluate(SUBJECT, rec, None, T0 + 30, CFG, hush=b.hush(SUBJECT, T0 + 30))
    assert at_end.reason is Reason.NONE and at_end.due == T0 + 32
    late = evaluate(SUBJECT, rec, None, T0 + 32.01, CFG, hush=b.hush(SUBJECT, T0 + 32.01))
    assert late.reason is Reason.ALERT


def test_the_pattern_index_agrees_with_matches() -> None:
    import itertools
    import random

    from heartbeat.routing import matches
    from heartbeat.silences import PatternIndex

    rnd = random.Random(14)
    tokens = ["a", "b", "c"]
    patterns = sorted(
        {
            ".".join(rnd.choice([*tokens, "*"]) for _ in range(rnd.randint(1, 3)))
            + rnd.choice(["", ".>"])
            for _ in range(200)
        }
        | {">", "*", "a.>"}
    )
    index = PatternIndex((p, p) for p in patterns)
    for depth in range(1, 5):
        for subject in map(".".join, itertools.product(tokens, repeat=depth)):
            want = sorted(p for p in patterns if matches(p, subject))
            assert sorted(index.match(subject)) == want, subject
