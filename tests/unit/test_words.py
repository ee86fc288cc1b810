"""The wording of notifications and the shape of a group (pure, no I/O)."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from heartbeat.notification import EventKind, Notification, group_notice, monitor_notice
from heartbeat.notify import words

S = 1_000_000_000


def note(event: EventKind = EventKind.ALERT, **overrides: Any) -> Notification:
    fields: dict[str, Any] = {
        "event": event,
        "subject": "heartbeat.db.main",
        "description": "Main DB",
        "host": "db-1",
        "last_seen": 1_700_000_000.0,
        "interval_ns": 15 * S,
        "window_ns": 60 * S,
        "missed_for_ns": 192 * S,
        "miss_count": 4,
        "alert_id": "a1",
        "notification_id": "n1",
        "created_at": 1_700_000_192.0,
        "monitor": "mon-a",
    }
    fields.update(overrides)
    return Notification(**fields)


def test_alert_repeat_resolved_wording() -> None:
    assert words.summary(note()) == (
        "heartbeat.db.main (Main DB) is DOWN",
        "heartbeat.db.main (Main DB) is DOWN: no heartbeat for 3m12s (host db-1, window 1m)",
    )
    assert words.headline(note(EventKind.REPEAT)) == (
        "heartbeat.db.main (Main DB) is still DOWN: no heartbeat for 3m12s (host db-1, window 1m)"
    )
    resolved = note(EventKind.RESOLVED, missed_for_ns=280 * S)
    assert words.summary(resolved) == (
        "heartbeat.db.main (Main DB) is UP again",
        "heartbeat.db.main (Main DB) is UP again after 4m40s down",
    )


def test_label_without_description_or_host() -> None:
    n = note(description="", host="")
    assert words.headline(n) == "heartbeat.db.main is DOWN: no heartbeat for 3m12s (window 1m)"
    assert words.label(note(description="heartbeat.db.main")) == "heartbeat.db.main"


def test_heartbeat_text_is_neutralised() -> None:
    n = note(description="Main\nDB \x1b[31mred\x1b[0m\u202e", host="db-1\r\nFAKE: line")
    text = words.message(n)
    assert "\n" not in text and "\x1b" not in text and "\u202e" not in text and "\r" not in text
    assert text == (
        "heartbeat.db.main (Main DB red) is DOWN: no heartbeat for 3m12s "
        "(host db-1 FAKE: line, window 1m)"
    )


def test_monitor_notices() -> None:
    blind = monitor_notice(EventKind.BLIND, "mon-a", 1000.0, 1090.0)
    back = monitor_notice(EventKind.SIGHT_RESTORED, "mon-a", 1000.0, 1125.0)
    assert words.summary(blind) == (
        "monitor mon-a is BLIND",
        "monitor mon-a is BLIND: it has not seen NATS for 1m30s, "
        "missing heartbeats are not being detected",
    )
    assert words.summary(back) == (
        "monitor mon-a sees heartbeats again",
        "monitor mon-a sees heartbeats again after 2m5s blind",
    )
    assert words.urgent(blind) and not words.urgent(back)


@pytest.mark.parametrize(
    ("ns", "text"),
    [(0, "0s"), (250_000_000, "250ms"), (S, "1s"), (60 * S, "1m"), (3605 * S, "1h5s"),
     (90061 * S, "1d1h1m1s"), (int(59.6 * S), "1m")],
)  # fmt: skip
def test_human_duration(ns: int, text: str) -> None:
    assert words.human_duration(ns) == text


def members(count: int) -> list[Notification]:
    out = []
    for i in range(count):
        event = EventKind.RESOLVED if i % 3 == 2 else EventKind.ALERT
        out.append(note(event, subject=f"heartbeat.s{i}", description="", notification_id=f"n{i}"))
    return out


def test_group_message_lists_five_and_counts_the_rest() -> None:
    g = group_notice(members(7), notification_id="g1", created_at=2000.0, monitor="mon-a")
    assert g.event is EventKind.GROUP and len(g.members) == 7
    assert words.title(g) == "7 heartbeat notifications: 5 DOWN, 2 UP"
    assert words.lines(g) == [
        "7 heartbeat notifications: 5 DOWN, 2 UP",
        "- heartbeat.s0 is DOWN: no heartbeat for 3m12s (host db-1, window 1m)",
        "- heartbeat.s1 is DOWN: no heartbeat for 3m12s (host db-1, window 1m)",
        "- heartbeat.s2 is UP again after 3m12s down",
        "- heartbeat.s3 is DOWN: no heartbeat for 3m12s (host db-1, window 1m)",
        "- heartbeat.s4 is DOWN: no heartbeat for 3m12s (host db-1, window 1m)",
        "and 2 more",
    ]
    assert words.urgent(g)
    small = group_notice(members(3)[2:], notification_id="g2", created_at=1.0, monitor="m")
    assert words.lines(small)[-1].startswith("- heartbeat.s2 is UP")
    assert not words.urgent(small)


def test_group_body_holds_each_member_body() -> None:
    ms = members(2)
    g = group_notice(ms, notification_id="g1", created_at=2000.0, monitor="mon-a")
    body = g.body(sent_at=2001.5)
    assert body == {
        "event": "group",
        "count": 2,
        "notification_id": "g1",
        "notifications": [m.body(sent_at=2001.5) for m in ms],
        "sent_at": "1970-01-01T00:33:21.5Z",
        "monitor": "mon-a",
    }
    assert [b["notification_id"] for b in body["notifications"]] == ["n0", "n1"]  # type: ignore[attr-defined]


def test_group_round_trips_through_msgspec_json() -> None:
    g = group_notice(members(3), notification_id="g1", created_at=2000.0, monitor="mon-a")
    raw = msgspec.json.encode(g)
    assert msgspec.json.decode(raw, type=Notification) == g


def test_records_stored_before_groups_still_decode() -> None:
    stored = msgspec.json.encode(note())
    assert (
        b"members" not in stored and b"exit_code" not in stored
    )  # a plain notification is stored as before groups
    decoded = msgspec.json.decode(stored, type=Notification)
    assert decoded == note() and decoded.members == ()


def test_group_rejects_empty_and_nested() -> None:
    with pytest.raises(ValueError, match="at least one"):
        group_notice([], notification_id="g", created_at=1.0, monitor="m")
    g = group_notice(members(1), notification_id="g", created_at=1.0, monitor="m")
    with pytest.raises(ValueError, match="nest"):
        group_notice([g], notification_id="g2", created_at=1.0, monitor="m")


def test_a_test_notice_reads_as_a_test_on_every_channel() -> None:
    from heartbeat.notification import channel_test_notice

    n = channel_test_notice("oncall", "notify-test on h1", 1_700_000_000.0)
    assert n.event is EventKind.TEST and not words.urgent(n)
    assert words.summary(n) == (
        "Test notification from nats-heartbeat (notify-test on h1)",
        "Test notification from nats-heartbeat (notify-test on h1): "
        "channel oncall works; nothing is wrong",
    )
    assert n.notification_id.endswith("-oncall") and n.body()["event"] == "test"


@pytest.mark.parametrize("kind", [k for k in EventKind if k is not EventKind.GROUP])
def test_every_channel_renders_every_event_kind(kind: EventKind) -> None:
    """No channel fails on a kind it has no special case for (ntfy's tags did)."""
    from heartbeat.notify import (
        DiscordNotifier,
        EmailNotifier,
        NtfyNotifier,
        OpsgenieNotifier,
        PagerDutyNotifier,
        PushoverNotifier,
        SlackNotifier,
        TeamsNotifier,
        TelegramNotifier,
        WebhookNotifier,
    )

    n = note(kind)
    session: Any = None  # building a request needs no session
    url = "https://x.example/hook"
    rendered: list[object] = [
        SlackNotifier(session, name="s", url=url).payload(n),
        TeamsNotifier(session, name="t", url=url).payload(n),
        DiscordNotifier(session, name="d", url=url).payload(n),
        TelegramNotifier(session, name="g", token="1:a", chat_id="1").payload(n),
        NtfyNotifier(session, name="n", url=url).request(n),
        PagerDutyNotifier(session, name="p", routing_key="k").event(n),
        OpsgenieNotifier(session, name="o", api_key="k").request(n),
        PushoverNotifier(session, user="u", token="t").form(n),
        WebhookNotifier(session, url).request(n, 0.0),
        EmailNotifier(name="e", host="h", sender="s@x", recipients=["r@x"]).message(n),
    ]
    assert all(rendered)
    assert words.title(n) and words.headline(n).startswith(words.title(n))
    if kind is EventKind.TEST:
        assert PagerDutyNotifier(session, name="p", routing_key="k").event(n)["event_action"] == (
            "resolve"
        )
        assert (
            OpsgenieNotifier(session, name="o", api_key="k")
            .request(n)[0]
            .endswith("/close?identifierType=alias")
        )
