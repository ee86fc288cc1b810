"""Storms: thousands of subjects stop (and come back) at once.

Every alert state is committed, every subject is told exactly once per transition,
the channel gets a handful of POSTs (groups, not one POST per subject), the lease is
kept, and a resolved never reaches the channel before the alert it follows.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any

from nats.aio.client import Client as NATS

from heartbeat.durations import SECOND
from heartbeat.engine import EngineConfig, Record, evaluate
from heartbeat.groups import GROUP_PREFIX, GroupEntry, encode_group
from heartbeat.notification import group_notice
from heartbeat.notify.webhook import webhook_name
from heartbeat.schema import Message, encode
from heartbeat.store import StateStore, ensure_stream
from tests.harness import NatsServer, Receiver, eventually, monitor_config, names, webhook_monitor

N = 10_000
GROUP_OVER = 10


def told(receiver: Receiver, event: str) -> Counter[str]:
    """Subjects told of ``event``, by count: lone notifications and group members."""
    out: Counter[str] = Counter()
    for r in receiver.requests:
        body: dict[str, Any] = r.json()
        bodies = body["notifications"] if body["event"] == "group" else [body]
        out.update(b["subject"] for b in bodies if b["event"] == event)
    return out


def order_per_subject(receiver: Receiver) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for r in receiver.requests:
        body: dict[str, Any] = r.json()
        for b in body["notifications"] if body["event"] == "group" else [body]:
            out.setdefault(b["subject"], []).append(b["event"])
    return out


async def publish_all(nc: NATS, subjects: list[str], interval: timedelta) -> None:
    now = datetime.now(UTC)
    for s in subjects:  # core publishes, pipelined; the stream captures them
        msg = Message(subject=s, interval=interval, host="rack-1", generated_at=now)
        await nc.publish(s, encode(msg))
    await nc.flush()


async def test_ten_thousand_subjects_stop_and_return_at_once(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    prefix = names(unique)["prefix"]
    subjects = [f"{prefix}rack.s{i:05d}" for i in range(N)]
    cfg = monitor_config(
        unique,
        poll_s=0.2,
        tolerance_s=0.2,
        group_over=GROUP_OVER,
        group_wait_s=0.5,
        lease_ttl_s=3.0,
        delivery_deadline_s=5.0,
    )
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        await eventually(mon.leading, what="leadership")
        await publish_all(nc, subjects, timedelta(seconds=2))
        # Seen, not yet recorded: new subjects get first records at a bounded rate.
        await eventually(
            lambda: sum(1 for t in mon.subjects if t.beat is not None) == N,
            60,
            what="every subject seen",
        )
        assert receiver.requests == []
        # Nothing beats any more: all N go missing at once, ~2.2 s after their last beat.
        deadline = max(t.view().last_seen for t in mon.subjects) + 2.2
        await eventually(
            lambda: all(t.record is not None and t.record.alert_active for t in mon.subjects),
            60,
            what="every alert committed",
        )
        committed = time.time() - deadline
        await eventually(lambda: len(told(receiver, "alert")) == N, 60, what="every alert told")
        told_after = time.time() - deadline
        alerts = told(receiver, "alert")
        assert set(alerts) == set(subjects) and set(alerts.values()) == {1}
        posts = len(receiver.requests)
        assert posts <= GROUP_OVER + N // 100, posts  # groups, not a POST per subject
        deliveries = mon.parts.deliveries
        await eventually(
            lambda: not deliveries.groups and not mon.subjects.pending, 30, what="all recorded"
        )
        assert mon.parts.election.changes == 1  # the lease was kept throughout

        await publish_all(nc, subjects, timedelta(minutes=5))  # back, and not missing again
        await eventually(
            lambda: len(told(receiver, "resolved")) == N, 60, what="every resolved told"
        )
        resolved = told(receiver, "resolved")
        assert set(resolved.values()) == {1}
        for subject, events in order_per_subject(receiver).items():
            assert events == ["alert", "resolved"], (subject, events)
        await eventually(
            lambda: not deliveries.groups and not mon.subjects.pending, 30, what="all recorded"
        )
        assert mon.parts.election.changes == 1
        print(
            f"\n[storm] {N} subjects: alerts committed {committed:.1f}s and told "
            f"{told_after:.1f}s past the deadline in {posts} POSTs; "
            f"{len(receiver.requests) - posts} POSTs for the resolved"
        )
        await asyncio.sleep(0)


async def test_a_group_committed_before_a_crash_is_delivered_once_by_the_next_leader(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    """The group entry was written, its members were not crossed off yet (the process
    died): the next leader sends the group once and crosses the members off unsent."""
    n = names(unique)
    cfg = monitor_config(unique, poll_s=0.05, reconcile_every_s=0)  # records without beats
    channel = webhook_name(receiver.url)
    js = nc.jetstream()
    await ensure_stream(js, cfg.store)
    store = await StateStore.open(js, cfg.store)
    members = []
    for i in range(3):
        subject = f"{n['prefix']}crashed{i}"
        rec = Record(subject=subject, interval_ns=3600 * SECOND, last_seen=time.time())
        out = evaluate(
            subject,
            rec,
            None,
            time.time() + 7200,
            EngineConfig(),
            monitor="dead",
            channels=[channel],
            new_alert_id=f"alert{i}",
        )
        assert out.record is not None and out.notification is not None
        await store.put(out.record, None)
        members.append((subject, out.notification))
    group = group_notice(
        [m for _, m in members], notification_id="group-dead", created_at=time.time(), monitor="x"
    )
    entry = GroupEntry(
        notification=group,
        channel=channel,
        members=[(s, m.notification_id) for s, m in members],
    )
    await store.create_entry(GROUP_PREFIX + "group-dead", encode_group(entry))
    await nc.flush()

    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        await eventually(
            lambda: all(
                (r := mon.subjects.record(s)) is not None and not r.pending for s, _ in members
            ),
            10,
            what="members crossed off",
        )
        await eventually(lambda: not mon.parts.deliveries.groups, 10, what="group recorded")
        await asyncio.sleep(0.3)  # more ticks: nothing else goes out
        bodies = [r.json() for r in receiver.requests]
        assert [b["event"] for b in bodies] == ["group"]
        assert bodies[0]["notification_id"] == "group-dead"
        assert receiver.requests[0].headers.get("Idempotency-Key") == "group-dead"
        assert sorted(x["subject"] for x in bodies[0]["notifications"]) == [s for s, _ in members]
        assert await store.read_raw(GROUP_PREFIX + "group-dead") is not None  # a tombstone
        assert (await store.read_raw(GROUP_PREFIX + "group-dead"))[0] == b""  # type: ignore[index]
