"""Reading Retry-After: delta seconds or an HTTP date, capped, never negative."""

from __future__ import annotations

from email.utils import formatdate

import pytest

from heartbeat.notify.http import MAX_RETRY_AFTER_S, parse_retry_after

NOW = 1_795_919_688.25


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("1", 1.0),
        (" 5 ", 5.0),
        ("0", 0.0),
        ("3600", MAX_RETRY_AFTER_S),
        ("9" * 40, MAX_RETRY_AFTER_S),
        (formatdate(NOW + 10.5, usegmt=True), 9.75),  # dates have whole seconds
        (formatdate(NOW - 100, usegmt=True), 0.0),  # in the past: no wait
        ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER_S),
        (formatdate(NOW + 3, localtime=False), 3.0 - 0.25),  # "-0000" zone
        (None, None),
        ("", None),
        ("-1", None),
        ("1.5", None),
        ("soon", None),
        ("Mon, 99 Foo 2026 99:99:99 GMT", None),
        ("١", None),  # a non-ASCII digit
        ("x" * 10_000, None),
    ],
)
def test_parse_retry_after(value: str | None, seconds: float | None) -> None:
    got = parse_retry_after(value, NOW)
    if seconds is None:
        assert got is None
    else:
        assert got == pytest.approx(seconds)


def test_cap_is_a_parameter() -> None:
    assert parse_retry_after("30", NOW, cap_s=5.0) == 5.0
