"""New subjects cost little: listed at once, recorded at a bounded rate, and nothing
they promise waits for their first record (docs/architecture.md, "New subjects")."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime, timedelta

from nats.aio.client import Client as NATS

import heartbeat
from heartbeat.monitor import Monitor
from tests.harness import (
    NatsServer,
    Receiver,
    eventually,
    monitor_config,
    names,
    running_monitor,
    webhook_events,
    webhook_monitor,
)

HOUR = timedelta(hours=1)


def recorded(mon: Monitor) -> int:
    return mon.subjects.stats()[1]


async def publish_many(nc: NATS, subjects: list[str], interval: timedelta) -> None:
    js = nc.jetstream()
    now = datetime.now(UTC)
    acks = [
        await js.publish_async(
            s,
            heartbeat.encode(heartbeat.Message(subject=s, interval=interval, generated_at=now)),
        )
        for s in subjects
    ]
    await asyncio.gather(*acks)


async def test_a_burst_is_listed_at_once_and_recorded_at_the_create_rate(
    nats_server: NatsServer, nc: NATS, unique: str
) -> None:
    rate, n = 200.0, 700
    subjects = [f"{names(unique)['prefix']}burst.{i:04d}" for i in range(n)]
    async with running_monitor(nats_server.url, monitor_config(unique), []) as mon:
        mon.judge.creates_per_s = rate
        await eventually(mon.judging, what="leading")
        started = time.monotonic()
        await publish_many(nc, subjects, HOUR)
        await eventually(lambda: len(mon.report().subjects) == n, what="all listed")
        # Never more first records than one second's allowance plus the rate since then.
        while recorded(mon) < n:
            assert recorded(mon) <= rate + rate * (time.monotonic() - started) + 1
            assert time.monotonic() - started < 30, f"{recorded(mon)} of {n} recorded"
            await asyncio.sleep(0.05)
        assert recorded(mon) == n
        assert mon.counters.kv_writes == n


async def test_a_new_subject_alerts_on_time_without_waiting_for_its_record(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    """Its deadline is set from its first beat; the alert commits its record first."""
    prefix = names(unique)["prefix"]
    quiet = prefix + "quiet"
    cfg = monitor_config(unique, poll_s=0.05, tolerance_s=0.1)
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        mon.judge.creates_per_s = 1.0  # the queue ahead of it would take a minute
        await eventually(mon.judging, what="leading")
        await publish_many(nc, [f"{prefix}filler.{i:03d}" for i in range(60)], HOUR)
        await eventually(lambda: len(mon.subjects) == 60, what="fillers listed")
        await heartbeat.Publisher(nc).publish(
            heartbeat.Message(subject=quiet, interval=timedelta(milliseconds=300))
        )
        await eventually(lambda: mon.subjects.beat(quiet) is not None, what="its beat")
        sent = time.monotonic()
        got = await receiver.wait_for(1, timeout=5)
        assert time.monotonic() - sent < 2.0  # window 300 ms + tolerance 100 ms + polls
        body = got[0].json()
        assert (body["event"], body["subject"]) == ("alert", quiet)
        kv = await nc.jetstream().key_value(names(unique)["bucket"])
        rec = json.loads((await kv.get(quiet)).value or b"{}")
        assert rec["alert_active"] is True and rec["alert_id"] == body["alert_id"]
        assert recorded(mon) < 60  # the fillers are still queued
        assert webhook_events(receiver) == [body]


async def test_a_restart_before_first_records_loses_no_subject_and_no_alert(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    """Subjects never recorded are learned again from the stream's last beats."""
    prefix = names(unique)["prefix"]
    fleet = [f"{prefix}svc.{i:03d}" for i in range(50)]
    quiet = prefix + "quiet"
    cfg = monitor_config(unique, poll_s=0.05, tolerance_s=0.1)
    async with running_monitor(nats_server.url, cfg, []) as first:
        first.judge.creates_per_s = 0.001  # at most one first record before the stop
        await eventually(first.judging, what="leading")
        await publish_many(nc, fleet, HOUR)
        await heartbeat.Publisher(nc).publish(
            heartbeat.Message(subject=quiet, interval=timedelta(seconds=1))
        )
        await eventually(lambda: len(first.subjects) == 51, what="all seen")
        assert recorded(first) <= 1
    async with webhook_monitor(nats_server.url, cfg, receiver) as (second, _):
        assert len(second.subjects) == 51  # ready means both feeds caught up
        got = await receiver.wait_for(1, timeout=10)
        assert [(e["event"], e["subject"]) for e in webhook_events(receiver)] == [("alert", quiet)]
        assert got[0].json()["alert_id"]
        await eventually(lambda: recorded(second) == 51, what="every subject recorded")
    assert len(webhook_events(receiver)) == 1
