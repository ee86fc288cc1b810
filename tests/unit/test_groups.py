"""The storm batcher: who goes alone, who waits for a group, when a group forms."""

from __future__ import annotations

import pytest

from heartbeat.groups import MAX_GROUP, Batcher, GroupEntry, decode_group, encode_group, group_size
from heartbeat.notification import EventKind, Notification, group_notice

T0 = 1_700_000_000.0


def note(i: int) -> Notification:
    return Notification(
        event=EventKind.ALERT,
        subject=f"heartbeat.s{i}",
        description="",
        host="",
        last_seen=T0,
        interval_ns=1,
        window_ns=1,
        missed_for_ns=1,
        miss_count=1,
        alert_id=f"a{i}",
        notification_id=f"a{i}-1",
        created_at=T0,
        monitor="m",
    )


def test_the_first_over_in_a_window_go_alone_then_the_rest_wait() -> None:
    b = Batcher(over=3, wait_s=2.0, max_size=100)
    assert [b.alone("hook", T0 + i * 0.1) for i in range(5)] == [True, True, True, False, False]
    assert b.alone("other", T0) is True  # each channel counts on its own


def test_the_window_slides() -> None:
    b = Batcher(over=2, wait_s=2.0, max_size=100)
    assert b.alone("hook", T0) and b.alone("hook", T0 + 1.0)
    assert not b.alone("hook", T0 + 1.5)
    assert b.alone("hook", T0 + 2.0)  # the first send left the window


def test_while_some_are_held_newcomers_join_them() -> None:
    b = Batcher(over=1, wait_s=2.0, max_size=100)
    assert b.alone("hook", T0)
    b.hold("hook", "heartbeat.s1", note(1), T0)
    assert not b.alone("hook", T0 + 5.0)  # the window is empty, but a group is forming


@pytest.mark.parametrize(
    ("held", "at", "groups"),
    [
        (3, T0 + 1.9, []),
        (3, T0 + 2.0, [3]),
        (250, T0 + 0.1, [100, 100, 50]),  # a full group's worth goes at once
        (0, T0 + 10, []),
    ],
)
def test_ready_groups(held: int, at: float, groups: list[int]) -> None:
    b = Batcher(over=0, wait_s=2.0, max_size=100)
    for i in range(held):
        b.hold("hook", f"heartbeat.s{i}", note(i), T0)
    got = b.ready(at)
    assert [len(members) for _, members in got] == groups
    assert b.held() == (held if not groups else 0)
    if groups:
        flat = [s for _, members in got for s, _ in members]
        assert flat == [f"heartbeat.s{i}" for i in range(held)]  # in the order held


@pytest.mark.parametrize(
    ("max_payload", "size"), [(0, MAX_GROUP), (1 << 20, MAX_GROUP), (64 * 1024, 32), (100, 1)]
)
def test_group_size_fits_the_servers_payload(max_payload: int, size: int) -> None:
    assert group_size(max_payload) == size


def test_a_group_entry_round_trips_with_its_members() -> None:
    members = [note(1), note(2)]
    n = group_notice(members, notification_id="group-x", created_at=T0, monitor="m")
    entry = GroupEntry(notification=n, channel="hook", members=[("heartbeat.s1", "a1-1")])
    back = decode_group(encode_group(entry))
    assert back.notification.members == tuple(members)
    assert back.members == [("heartbeat.s1", "a1-1")]
    assert back.notification.body()["count"] == 2
