"""Sight as tables: blind periods, their notices, restoring and stall sampling.

Pure: no NATS, no clock.  ``now`` is epoch seconds from T0, ``mono`` a monotonic
reading; both are passed in.
"""

from __future__ import annotations

from typing import Any

import pytest

from heartbeat.sight import Sight

T0 = 1_700_000_000.0
HAIR = 1 / 1024
BLIND_AFTER = 30.0
STALL_CHECK = 5.0


def mksight(*, blind_after: float = BLIND_AFTER, stall_check: float = STALL_CHECK) -> Sight:
    return Sight(blind_after_s=blind_after, stall_check_s=stall_check)


def blinded(at: float = T0, *, leading: bool = True, reconnected: bool = False) -> Sight:
    s = mksight()
    assert s.blinded(at, leading=leading) is True
    if reconnected:
        s.reconnected()
    return s


# ----- the initial state -----------------------------------------------------------------


def test_fresh_sight_sees() -> None:
    s = mksight()
    assert s.blind is False
    assert s.blind_since is None
    assert s.sight_since == 0.0
    assert s.awaiting is False
    assert s.notice_sent is False
    assert s.blind_notice_due(T0 + 1000) is False
    assert s.may_restore(connected=True) is False


# ----- blinded ---------------------------------------------------------------------------


@pytest.mark.parametrize("leading", [True, False])
def test_blinded_starts_a_period_once(leading: bool) -> None:
    s = mksight()
    assert s.blinded(T0, leading=leading) is True
    assert s.blind is True
    assert s.blind_since == T0
    assert s.led_when_blinded is leading
    # A second loss of sight within the same period changes nothing.
    assert s.blinded(T0 + 7, leading=not leading) is False
    assert s.blind_since == T0
    assert s.led_when_blinded is leading


# ----- the blind notice ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leading", "after", "due"),
    [
        pytest.param(True, 0.0, False, id="led-at-once"),
        pytest.param(True, BLIND_AFTER - HAIR, False, id="led-just-before"),
        pytest.param(True, BLIND_AFTER, True, id="led-at-blind-after"),
        pytest.param(True, BLIND_AFTER + HAIR, True, id="led-just-after"),
        pytest.param(True, 3600.0, True, id="led-long-after"),
        pytest.param(False, BLIND_AFTER, False, id="follower-at-blind-after"),
        pytest.param(False, 3600.0, False, id="follower-long-after"),
    ],
)
def test_blind_notice_due(leading: bool, after: float, due: bool) -> None:
    s = blinded(leading=leading)
    assert s.blind_notice_due(T0 + after) is due
    assert s.notice_sent is due


def test_blind_notice_only_once() -> None:
    s = blinded(leading=True)
    assert s.blind_notice_due(T0 + BLIND_AFTER - 1) is False
    assert s.blind_notice_due(T0 + BLIND_AFTER) is True
    assert s.blind_notice_due(T0 + BLIND_AFTER + 1) is False
    assert s.blind_notice_due(T0 + 10 * BLIND_AFTER) is False
    assert s.notice_sent is True


def test_no_blind_notice_when_not_blind() -> None:
    s = mksight()
    assert s.blind_notice_due(T0 + 10 * BLIND_AFTER) is False
    assert s.notice_sent is False


def test_leading_later_does_not_make_a_follower_send() -> None:
    """What counts is whether it led when it was blinded."""
    s = blinded(leading=False)
    assert s.blinded(T0 + 1, leading=True) is False
    assert s.blind_notice_due(T0 + BLIND_AFTER) is False


# ----- may_restore -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("blind", "reconnected", "connected", "may"),
    [
        pytest.param(True, True, True, True, id="blind-reconnected-connected"),
        pytest.param(True, True, False, False, id="blind-reconnected-disconnected-again"),
        pytest.param(True, False, True, False, id="blind-connected-not-reconnected"),
        pytest.param(True, False, False, False, id="blind-only"),
        pytest.param(False, True, True, False, id="not-blind"),
        pytest.param(False, False, True, False, id="not-blind-nothing"),
    ],
)
def test_may_restore(blind: bool, reconnected: bool, connected: bool, may: bool) -> None:
    s = mksight()
    if blind:
        s.blinded(T0, leading=True)
    if reconnected:
        s.reconnected()
    assert s.may_restore(connected=connected) is may


# ----- restored --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("leading", "restored_after", "notify"),
    [
        pytest.param(True, BLIND_AFTER + 12.5, True, id="led-notice-sent-restored-notice"),
        pytest.param(True, 10.0, False, id="led-short-blind-no-notice"),
        pytest.param(False, BLIND_AFTER + 12.5, False, id="follower-never-notifies"),
    ],
)
def test_restored(leading: bool, restored_after: float, notify: bool) -> None:
    s = blinded(leading=leading, reconnected=True)
    now = T0 + restored_after
    s.blind_notice_due(now)  # what the monitor asks every tick while blind, restore included
    assert s.restored(now) == (restored_after, notify)
    assert s.sight_since == now
    # Everything about the blind period is reset.
    assert s.blind is False
    assert s.blind_since is None
    assert s.led_when_blinded is False
    assert s.notice_sent is False
    assert s.awaiting is False
    assert s.may_restore(connected=True) is False


def test_restored_without_a_blind_period() -> None:
    s = mksight()
    assert s.restored(T0) == (0.0, False)
    assert s.sight_since == T0


def test_a_new_blind_period_after_restore_notifies_again() -> None:
    s = blinded(leading=True, reconnected=True)
    assert s.blind_notice_due(T0 + BLIND_AFTER) is True
    assert s.restored(T0 + 40) == (40.0, True)
    assert s.blinded(T0 + 100, leading=True) is True
    assert s.blind_since == T0 + 100
    assert s.blind_notice_due(T0 + 100 + BLIND_AFTER - HAIR) is False
    assert s.blind_notice_due(T0 + 100 + BLIND_AFTER) is True
    assert s.sight_since == T0 + 40  # until the next restore


# ----- stall sampling --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("samples", "blinds"),
    [
        # (pending, seq) per sample; ``blinds``: what each stall_sample returns
        pytest.param([(3, 10), (3, 10), (3, 10)], [False, False, True], id="stuck-twice-blinds"),
        pytest.param([(3, 10), (3, 10)], [False, False], id="stuck-once-not-yet"),
        pytest.param([(None, 0), (None, 0)], [False, True], id="unknown-twice-blinds"),
        pytest.param([(None, 0)], [False], id="unknown-once"),
        pytest.param([(3, 10), (3, 11), (3, 12), (3, 13)], [False] * 4, id="progress"),
        pytest.param([(0, 10), (0, 10), (0, 10)], [False] * 3, id="nothing-pending"),
        pytest.param(
            [(3, 10), (3, 10), (3, 11), (3, 11), (3, 11)],
            [False, False, False, False, True],
            id="progress-resets-strikes",
        ),
        pytest.param(
            [(3, 10), (3, 10), (0, 10), (3, 10), (3, 10)],
            [False, False, False, False, True],
            id="pending-zero-resets-strikes",
        ),
        pytest.param(
            [(None, 0), (5, 7), (None, 7), (None, 7)],
            [False, False, False, True],
            id="unknown-then-progress-then-unknown-twice",
        ),
        pytest.param([(3, 10), (None, 10), (3, 10)], [False, False, True], id="unknown-and-stuck"),
    ],
)
def test_stall_sample(samples: list[tuple[int | None, int]], blinds: list[bool]) -> None:
    s = mksight()
    got = [
        s.stall_sample(T0 + i, pending, seq, leading=True)
        for i, (pending, seq) in enumerate(samples)
    ]
    assert got == blinds
    assert s.blind is blinds[-1]


@pytest.mark.parametrize("leading", [True, False])
def test_stall_blinds_and_awaits(leading: bool) -> None:
    s = mksight()
    for i in range(3):
        s.stall_sample(T0 + i * STALL_CHECK, 4, 99, leading=leading)
    assert s.blind_since == T0 + 2 * STALL_CHECK  # the sample that blinded
    assert s.led_when_blinded is leading
    assert s.awaiting is True  # connected all along: only the feeds have to catch up
    assert s.may_restore(connected=True) is True
    assert s.blind_notice_due(T0 + 2 * STALL_CHECK + BLIND_AFTER) is leading


def test_stall_while_already_blind_keeps_the_first_period() -> None:
    s = blinded(T0, leading=False)
    for i in range(3):
        s.stall_sample(T0 + 50 + i, 1, 5, leading=True)
    assert s.blind_since == T0
    assert s.led_when_blinded is False


def test_restore_resets_stall_strikes() -> None:
    s = mksight()
    s.stall_sample(T0, 3, 10, leading=True)
    s.stall_sample(T0 + 1, 3, 10, leading=True)
    s.restored(T0 + 2)
    # A single stuck sample after restoring is not two in a row.
    assert s.stall_sample(T0 + 3, 3, 10, leading=True) is False
    assert s.stall_sample(T0 + 4, 3, 10, leading=True) is False
    assert s.stall_sample(T0 + 5, 3, 10, leading=True) is True


# ----- stall_check_due -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("checks", "expected"),
    [
        # (mono, connected) per call
        pytest.param([(100.0, True)], [True], id="first-check-due"),
        pytest.param([(100.0, True), (100.0, True)], [True, False], id="not-twice-at-once"),
        pytest.param(
            [(100.0, True), (105.0 - HAIR, True), (105.0, True)],
            [True, False, True],
            id="every-stall-check-s",
        ),
        pytest.param(
            [(100.0, True), (103.0, True), (105.0, True), (109.0, True), (110.0, True)],
            [True, False, True, False, True],
            id="cadence-from-last-due",
        ),
        pytest.param(
            [(100.0, True), (200.0, True), (204.0, True), (205.0, True)],
            [True, True, False, True],
            id="late-check-moves-cadence",
        ),
        pytest.param([(100.0, False)], [False], id="disconnected"),
        pytest.param(
            [(100.0, False), (100.0, True)], [False, True], id="disconnected-does-not-consume"
        ),
    ],
)
def test_stall_check_due(checks: list[tuple[float, bool]], expected: list[bool]) -> None:
    s = mksight()
    got = [s.stall_check_due(mono, connected=connected) for mono, connected in checks]
    assert got == expected


def test_no_stall_check_while_blind() -> None:
    s = blinded(leading=True, reconnected=True)
    assert s.stall_check_due(100.0, connected=True) is False
    assert s.stall_check_due(10_000.0, connected=True) is False
    s.restored(T0 + 1)
    assert s.stall_check_due(10_000.0, connected=True) is True


# ----- a whole scenario ------------------------------------------------------------------

# (step, call, kwargs, expected result)
SCENARIO: list[tuple[str, str, dict[str, Any], Any]] = [
    ("healthy: first stall check", "stall_check_due", {"mono": 0.0, "connected": True}, True),
    ("healthy sample", "stall_sample", {"now": T0, "pending": 0, "seq": 1}, False),
    ("too soon", "stall_check_due", {"mono": 4.0, "connected": True}, False),
    ("second check", "stall_check_due", {"mono": 5.0, "connected": True}, True),
    ("behind but progressing", "stall_sample", {"now": T0 + 5, "pending": 8, "seq": 2}, False),
    ("disconnected", "blinded", {"now": T0 + 6, "leading": True}, True),
    ("still disconnected", "blinded", {"now": T0 + 7, "leading": True}, False),
    ("no stall check blind", "stall_check_due", {"mono": 10.0, "connected": False}, False),
    ("no restore yet", "may_restore", {"connected": False}, False),
    ("notice not yet", "blind_notice_due", {"now": T0 + 6 + BLIND_AFTER - HAIR}, False),
    ("notice due", "blind_notice_due", {"now": T0 + 6 + BLIND_AFTER}, True),
    ("notice once", "blind_notice_due", {"now": T0 + 60}, False),
    ("connected, not reconnected", "may_restore", {"connected": True}, False),
    ("reconnected", "reconnected", {}, None),
    ("may restore", "may_restore", {"connected": True}, True),
    ("restored", "restored", {"now": T0 + 70}, (64.0, True)),
    ("sight since", "sight_since", {}, T0 + 70),
    ("stall check again", "stall_check_due", {"mono": 80.0, "connected": True}, True),
    ("baseline sample", "stall_sample", {"now": T0 + 80, "pending": 3, "seq": 9}, False),
    ("stuck once", "stall_sample", {"now": T0 + 85, "pending": 3, "seq": 9}, False),
    ("stuck twice: blind", "stall_sample", {"now": T0 + 90, "pending": 3, "seq": 9}, True),
    ("blind since", "blind_since", {}, T0 + 90),
    ("awaiting catch-up", "may_restore", {"connected": True}, True),
    ("short: no notice", "blind_notice_due", {"now": T0 + 95}, False),
    ("restored quietly", "restored", {"now": T0 + 100}, (10.0, False)),
    ("sees", "blind", {}, False),
]


def test_scenario() -> None:
    s = mksight()
    for step, call, kwargs, expected in SCENARIO:
        attr = getattr(s, call)
        if not callable(attr):
            got = attr
        elif call == "stall_sample":
            got = attr(kwargs["now"], kwargs["pending"], kwargs["seq"], leading=True)
        elif call in ("blinded",):
            got = attr(kwargs["now"], leading=kwargs["leading"])
        elif call in ("blind_notice_due", "restored"):
            got = attr(kwargs["now"])
        elif call == "stall_check_due":
            got = attr(kwargs["mono"], connected=kwargs["connected"])
        else:
            got = attr(**kwargs)
        assert got == expected, step
