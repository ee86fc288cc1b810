"""RateLog: one line per key per period, with the count of the lines left out."""

from __future__ import annotations

import logging

import pytest

from heartbeat.ratelog import OVERFLOW_KEY, RateLog


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "test.ratelog"]


@pytest.fixture
def rl(caplog: pytest.LogCaptureFixture) -> tuple[RateLog, Clock]:
    caplog.set_level(logging.INFO, logger="test.ratelog")
    clock = Clock()
    return RateLog(logging.getLogger("test.ratelog"), every_s=10.0, clock=clock), clock


def test_one_line_per_key_per_period_with_the_suppressed_count(
    rl: tuple[RateLog, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    log, clock = rl
    for i in range(1000):
        log.log("a", logging.WARNING, "bad %d", i)
        log.log("b", logging.WARNING, "other %d", i)
        clock.now += 0.001  # 1 s in all
    assert _lines(caplog) == ["bad 0", "other 0"]
    clock.now += 9.01  # just past 10 s after the first line
    log.log("a", logging.WARNING, "bad %d", 1000)
    assert _lines(caplog)[-1] == "bad 1000 (999 more like it suppressed in the last 10s)"
    log.log("a", logging.WARNING, "bad %d", 1001)
    assert len(_lines(caplog)) == 3
    assert (log.lines, log.suppressed_total) == (3, 999 + 999 + 1)


def test_flush_reports_what_is_still_suppressed(
    rl: tuple[RateLog, Clock], caplog: pytest.LogCaptureFixture
) -> None:
    log, _ = rl
    log.what = "rejects"
    for _i in range(5):
        log.log("a", logging.WARNING, "bad")
    log.flush()
    assert _lines(caplog) == ["bad", "rejects: 4 more a line(s) were suppressed"]
    log.flush()
    assert len(_lines(caplog)) == 2


def test_suppressed_lines_are_not_formatted(rl: tuple[RateLog, Clock]) -> None:
    log, _ = rl
    formatted: list[int] = []

    class Costly:
        def __str__(self) -> str:
            formatted.append(1)
            return "x"

    log.log("a", logging.WARNING, "%s", Costly())
    once = len(formatted)  # each capturing handler formats the one record
    for _i in range(100):
        log.log("a", logging.WARNING, "%s", Costly())
    assert len(formatted) == once


def test_disabled_level_costs_nothing(rl: tuple[RateLog, Clock]) -> None:
    log, _ = rl
    assert not log.log("a", logging.DEBUG, "quiet")
    assert log.admit("a") == 0  # the debug line did not use up the key's period


def test_keys_are_bounded(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="test.ratelog")
    clock = Clock()
    log = RateLog(logging.getLogger("test.ratelog"), every_s=10.0, clock=clock, max_keys=3)
    for i in range(1000):
        log.log(f"k{i}", logging.WARNING, "key %d", i)
    assert _lines(caplog) == ["key 0", "key 1", "key 2", "key 3"]  # the 4th is the overflow
    assert len(log._last) <= 4 and OVERFLOW_KEY in log._last
    clock.now += 10.0
    log.log("fresh", logging.WARNING, "fresh")  # expired keys make room again
    assert _lines(caplog)[-1] == "fresh"


def test_negative_period_is_refused() -> None:
    with pytest.raises(ValueError):
        RateLog(logging.getLogger("x"), every_s=-1)
