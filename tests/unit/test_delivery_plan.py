"""plan() and without() as tables: which channels of which pending notifications go now.

Pure: no notifier, no store, no event loop; ``now`` and the in-flight / retry
tables are passed in.
"""

from __future__ import annotations

import pytest

from heartbeat.delivery import Plan, plan, without
from heartbeat.engine import Pending
from heartbeat.notification import EventKind, Notification

SUBJECT = "heartbeat.service.api"
T0 = 1_700_000_000.0
HAIR = 1 / 1024
ALL = ("log", "webhook", "pushover")

ALERT = "a1-1"
REPEAT = "a1-2"
RESOLVED = "a1-3"
KINDS = {ALERT: EventKind.ALERT, REPEAT: EventKind.REPEAT, RESOLVED: EventKind.RESOLVED}


def mknotification(nid: str) -> Notification:
    return Notification(
        event=KINDS.get(nid, EventKind.ALERT),
        subject=SUBJECT,
        description="API service",
        host="api-1",
        last_seen=T0,
        interval_ns=1_000_000_000,
        window_ns=1_000_000_000,
        missed_for_ns=3_000_000_000,
        miss_count=3,
        alert_id=nid.split("-")[0],
        notification_id=nid,
        created_at=T0 + 3,
        monitor="m1",
    )


def mkpending(nid: str, *channels: str) -> Pending:
    return Pending(notification=mknotification(nid), channels=list(channels))


def sent(p: Plan) -> list[tuple[str, list[str]]]:
    """The plan's sends as (notification_id, channels)."""
    return [(pending.notification.notification_id, channels) for pending, channels in p.send]


def run(
    pending: list[Pending],
    *,
    now: float = T0,
    configured: tuple[str, ...] = ALL,
    inflight: set[tuple[str, str]] | None = None,
    retry_at: dict[tuple[str, str], float] | None = None,
) -> Plan:
    return plan(
        pending, now, configured=configured, inflight=inflight or set(), retry_at=retry_at or {}
    )


# ----- one notification ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("channels", "configured", "inflight", "retry_at", "send", "drop"),
    [
        pytest.param(["log", "webhook"], ALL, set(), {}, ["log", "webhook"], [], id="all-sent"),
        pytest.param(
            ["log", "webhook"], ALL, {(ALERT, "log")}, {}, ["webhook"], [], id="inflight-skipped"
        ),
        pytest.param(
            ["log", "webhook"],
            ALL,
            {(ALERT, "log"), (ALERT, "webhook")},
            {},
            None,
            [],
            id="all-inflight-nothing",
        ),
        pytest.param(
            ["log", "webhook"],
            ALL,
            {("other-1", "log")},
            {},
            ["log", "webhook"],
            [],
            id="another-notification-inflight-no-matter",
        ),
        pytest.param(
            ["log", "webhook"],
            ALL,
            set(),
            {(ALERT, "webhook"): T0 + HAIR},
            ["log"],
            [],
            id="before-retry-time",
        ),
        pytest.param(
            ["log", "webhook"],
            ALL,
            set(),
            {(ALERT, "webhook"): T0},
            ["log", "webhook"],
            [],
            id="at-retry-time",
        ),
        pytest.param(
            ["log", "webhook"],
            ALL,
            set(),
            {(ALERT, "webhook"): T0 - 5},
            ["log", "webhook"],
            [],
            id="after-retry-time",
        ),
        pytest.param(
            ["log", "gone"], ALL, set(), {}, ["log"], [(ALERT, "gone")], id="unconfigured-dropped"
        ),
        pytest.param(
            ["gone", "old"],
            ALL,
            set(),
            {},
            None,
            [(ALERT, "gone"), (ALERT, "old")],
            id="all-unconfigured-dropped",
        ),
        pytest.param(
            ["log", "webhook"], (), set(), {}, None, [(ALERT, "log"), (ALERT, "webhook")], id="none"
        ),
        pytest.param([], ALL, set(), {}, None, [], id="no-channels"),
    ],
)
def test_one_notification(
    channels: list[str],
    configured: tuple[str, ...],
    inflight: set[tuple[str, str]],
    retry_at: dict[tuple[str, str], float],
    send: list[str] | None,
    drop: list[tuple[str, str]],
) -> None:
    p = run(
        [mkpending(ALERT, *channels)], configured=configured, inflight=inflight, retry_at=retry_at
    )
    assert sent(p) == ([] if send is None else [(ALERT, send)])
    assert p.drop == drop


def test_sends_the_pending_entry_itself() -> None:
    entry = mkpending(ALERT, "log")
    p = run([entry])
    assert len(p.send) == 1
    assert p.send[0][0] is entry


def test_nothing_pending_nothing_to_do() -> None:
    p = run([])
    assert p.send == []
    assert p.drop == []


# ----- ordering: a later notification never overtakes an earlier one -----------------------


@pytest.mark.parametrize(
    ("alert", "resolved", "inflight", "retry_at", "send"),
    [
        pytest.param(
            ["log"],
            ["log"],
            set(),
            {},
            [(ALERT, ["log"])],
            id="alert-about-to-be-sent-resolved-waits",
        ),
        pytest.param(
            ["log"], ["log"], {(ALERT, "log")}, {}, [], id="alert-inflight-resolved-waits"
        ),
        pytest.param(
            ["log"],
            ["log"],
            set(),
            {(ALERT, "log"): T0 + 30},
            [],
            id="alert-waiting-for-retry-resolved-waits",
        ),
        pytest.param(
            ["log"],
            ["log", "webhook"],
            set(),
            {},
            [(ALERT, ["log"]), (RESOLVED, ["webhook"])],
            id="alert-delivered-to-webhook-resolved-goes-there",
        ),
        pytest.param(
            ["log"],
            ["log", "webhook"],
            {(ALERT, "log")},
            {},
            [(RESOLVED, ["webhook"])],
            id="alert-inflight-on-log-resolved-to-webhook",
        ),
        pytest.param(
            ["webhook"],
            ["log", "webhook"],
            set(),
            {(ALERT, "webhook"): T0 + 30},
            [(RESOLVED, ["log"])],
            id="alert-retrying-webhook-resolved-to-log",
        ),
        pytest.param(
            ["log", "webhook"],
            ["log", "webhook"],
            set(),
            {(ALERT, "webhook"): T0 + 30},
            [(ALERT, ["log"])],
            id="alert-owes-both",
        ),
        pytest.param(
            ["log", "webhook"],
            ["log", "webhook"],
            set(),
            {(RESOLVED, "log"): T0 - 1},
            [(ALERT, ["log", "webhook"])],
            id="resolved-retry-time-no-matter-while-alert-owed",
        ),
    ],
)
def test_resolved_never_overtakes_its_alert(
    alert: list[str],
    resolved: list[str],
    inflight: set[tuple[str, str]],
    retry_at: dict[tuple[str, str], float],
    send: list[tuple[str, list[str]]],
) -> None:
    pending = [mkpending(ALERT, *alert), mkpending(RESOLVED, *resolved)]
    p = run(pending, inflight=inflight, retry_at=retry_at)
    assert sent(p) == send
    assert p.drop == []


def test_three_notifications_each_waits_for_all_older() -> None:
    pending = [
        mkpending(ALERT, "log"),
        mkpending(REPEAT, "webhook"),
        mkpending(RESOLVED, "log", "webhook", "pushover"),
    ]
    p = run(pending, inflight={(ALERT, "log")})
    assert sent(p) == [(REPEAT, ["webhook"]), (RESOLVED, ["pushover"])]


def test_unconfigured_channel_of_an_older_notification_is_dropped_not_overtaken() -> None:
    pending = [mkpending(ALERT, "gone"), mkpending(RESOLVED, "gone", "log")]
    p = run(pending, configured=("log",))
    assert sent(p) == [(RESOLVED, ["log"])]
    assert p.drop == [(ALERT, "gone")]  # the resolved one for "gone" goes next round


# ----- without ---------------------------------------------------------------------------


def ids(pending: list[Pending]) -> list[tuple[str, list[str]]]:
    return [(p.notification.notification_id, p.channels) for p in pending]


@pytest.mark.parametrize(
    ("before", "nid", "channel", "after"),
    [
        pytest.param(
            [(ALERT, ["log", "webhook"])],
            ALERT,
            "log",
            [(ALERT, ["webhook"])],
            id="one-channel-crossed-off",
        ),
        pytest.param([(ALERT, ["log"])], ALERT, "log", [], id="emptied-entry-dropped"),
        pytest.param(
            [(ALERT, ["log"]), (RESOLVED, ["log", "webhook"])],
            ALERT,
            "log",
            [(RESOLVED, ["log", "webhook"])],
            id="other-notification-untouched",
        ),
        pytest.param(
            [(ALERT, ["log", "webhook"]), (RESOLVED, ["log", "webhook"])],
            RESOLVED,
            "webhook",
            [(ALERT, ["log", "webhook"]), (RESOLVED, ["log"])],
            id="only-the-named-notification",
        ),
        pytest.param(
            [(ALERT, ["log"])], ALERT, "webhook", [(ALERT, ["log"])], id="channel-not-owed"
        ),
        pytest.param([(ALERT, ["log"])], "zzz-9", "log", [(ALERT, ["log"])], id="unknown-nid"),
        pytest.param([], ALERT, "log", [], id="empty"),
        pytest.param(
            [(ALERT, ["log"]), (REPEAT, ["log"]), (RESOLVED, ["log"])],
            REPEAT,
            "log",
            [(ALERT, ["log"]), (RESOLVED, ["log"])],
            id="middle-entry-dropped-order-kept",
        ),
    ],
)
def test_without(
    before: list[tuple[str, list[str]]],
    nid: str,
    channel: str,
    after: list[tuple[str, list[str]]],
) -> None:
    pending = [mkpending(n, *chs) for n, chs in before]
    snapshot = ids(pending)
    got = without(pending, nid, channel)
    assert ids(got) == after
    assert ids(pending) == snapshot  # the input is not changed


def test_without_keeps_the_notification() -> None:
    pending = [mkpending(ALERT, "log", "webhook"), mkpending(RESOLVED, "log")]
    got = without(pending, ALERT, "log")
    assert got[0].notification == pending[0].notification
    assert got[1] is pending[1]  # untouched entries are the same objects
