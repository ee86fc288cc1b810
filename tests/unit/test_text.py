"""Heartbeat text made safe for people: escapes, invisible characters and length."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from heartbeat.text import ELLIPSIS, clip, for_log, neutral


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("API service", "API service"),
        ("Zürich DB 🚀", "Zürich DB 🚀"),
        ("red\x1b[31mALERT\x1b[0m", "redALERT"),
        ("title\x1b]0;owned\x07 after", "title after"),
        ("line one\nFAKE LOG LINE", "line one FAKE LOG LINE"),
        ("tabs\t\tand\r\nbreaks", "tabs and breaks"),
        ("bell\x07 nul\x00 del\x7f c1\x9b", "bell nul del c1"),
        ("admin\u202egnp.exe", "admingnp.exe"),
        ("iso\u2066late\u2069", "isolate"),
        ("zero\u200bwidth\u200d\ufeff", "zerowidth"),
        ("para\u2028sep", "para sep"),
    ],
)
def test_neutral_removes_what_a_person_should_not_be_shown(raw: str, shown: str) -> None:
    assert neutral(raw) == shown


@pytest.mark.parametrize(
    ("text", "limit", "out"),
    [
        ("short", 10, "short"),
        ("exactly10!", 10, "exactly10!"),
        ("eleven char", 10, "eleven ch" + ELLIPSIS),
        ("abc", 1, ELLIPSIS),
        ("abc", 0, ""),
    ],
)
def test_clip_bounds_length_and_marks_the_cut(text: str, limit: int, out: str) -> None:
    assert clip(text, limit) == out
    assert len(clip(text, limit)) <= limit


def test_for_log_cuts_and_escapes_any_value() -> None:
    assert for_log("x" * 10_000, 20) == "x" * 19 + ELLIPSIS
    assert for_log(b"\x1b[2J") == "b'\\x1b[2J'"
    assert "\n" not in for_log("a\nb")


@given(st.text(), st.integers(min_value=0, max_value=300))
def test_neutral_output_is_printable_and_bounded(text: str, limit: int) -> None:
    out = neutral(text, limit)
    assert len(out) <= limit
    assert not any(ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F for c in out)
    assert not any(c in out for c in "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
    assert not any(c in out for c in "\u200b\u200c\u200d\u2060\ufeff")


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("coder 👩\u200d💻 here", "coder 👩\u200d💻 here"),  # an emoji sequence keeps its joiner
        ("a\u200db", "ab"),
        ("👩\u200db", "👩b"),
        ("a\u200d💻", "a💻"),
        ("lone \ud800 surrogate", "lone  surrogate"),
    ],
)
def test_joiner_only_inside_emoji_sequences(raw: str, shown: str) -> None:
    assert neutral(raw) == shown
    neutral(raw).encode()  # always encodable: a log handler never fails on it
