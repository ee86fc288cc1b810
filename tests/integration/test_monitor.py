"""The monitor against a real nats-server, with real HTTP receivers as channels."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
from datetime import UTC, datetime, timedelta

import aiohttp
import pytest
from nats.aio.client import Client as NATS

import heartbeat
from heartbeat.durations import SECOND
from heartbeat.engine import Record
from heartbeat.monitor import Monitor
from heartbeat.notify import WebhookNotifier
from tests.harness import (
    NatsServer,
    Receiver,
    eventually,
    monitor_config,
    names,
    recording_receiver,
    running_monitor,
    webhook_events,
    webhook_monitor,
)

MS = timedelta(milliseconds=1)


def seen(mon: Monitor, subject: str) -> float:
    """When the monitor's newest beat for ``subject`` was stored (server time)."""
    beat = mon.subjects.beat(subject)
    assert beat is not None, f"no beat for {subject}"
    return beat.last_seen


def committed(mon: Monitor, subject: str) -> Record:
    rec = mon.subjects.record(subject)
    assert rec is not None, f"no record for {subject}"
    return rec


async def test_healthy_agent_every_second_never_alerts(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    """1 s beats, no grace, 200 ms poll, default 1 s tolerance: no alert."""
    cfg = monitor_config(unique, poll_s=0.2, tolerance_s=1.0)
    subject = names(unique)["prefix"] + "healthy"
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        async with heartbeat.beating(nc, subject, interval=timedelta(seconds=1)):
            await eventually(lambda: mon.subjects.beat(subject) is not None, what="first beat")
            await asyncio.sleep(3.5)  # three and a half intervals of healthy beats
        assert receiver.requests == []
        assert mon.report().subjects[0].alert_active is False


async def test_missing_subject_alerts_once_repeats_and_resolves_once(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    cfg = monitor_config(unique, poll_s=0.1, tolerance_s=0.2, repeat_every_s=0.6)
    prefix = names(unique)["prefix"]
    stopping, steady = prefix + "stops", prefix + "steady"
    interval = 200 * MS
    async with (
        webhook_monitor(nats_server.url, cfg, receiver) as (mon, _),
        heartbeat.beating(nc, steady, interval=interval),
    ):
        async with heartbeat.beating(nc, stopping, interval=interval):
            await eventually(
                lambda: (
                    mon.subjects.beat(stopping) is not None
                    and mon.subjects.beat(steady) is not None
                )
            )
        last_seen = seen(mon, stopping)
        first = await receiver.wait_for(1)
        alert = first[0].json()
        delay = first[0].at - last_seen
        # window 200 ms + tolerance 200 ms + poll 100 ms + margin
        assert 0.4 < delay < 0.4 + 0.1 + 0.3, delay
        assert alert["event"] == "alert"
        assert alert["subject"] == stopping
        assert alert["window"] == "200ms"
        await receiver.wait_for(3)
        async with heartbeat.beating(nc, stopping, interval=interval):
            await eventually(
                lambda: any(e["event"] == "resolved" for e in webhook_events(receiver))
            )
            await asyncio.sleep(0.5)
    events = webhook_events(receiver)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "alert"
    assert kinds.count("alert") == 1
    assert kinds.count("resolved") == 1
    assert kinds[-1] == "resolved"
    assert set(kinds[1:-1]) == {"repeat"}
    assert {e["subject"] for e in events} == {stopping}, "the steady subject never alerts"
    assert len({e["alert_id"] for e in events}) == 1
    ids = [e["notification_id"] for e in events]
    assert len(ids) == len(set(ids))
    sent = [r.at for r in receiver.requests]
    gaps = [b - a for a, b in itertools.pairwise(sent[:-1])]  # the last one is resolved
    for gap in gaps:  # repeats every 600 ms (+ one poll)
        assert 0.55 < gap < 0.6 + 0.1 + 0.15, gaps


async def test_an_alert_comes_at_its_deadline_not_at_the_next_poll(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    """A 3 s poll: the leader wakes for a deadline that comes sooner, so the alert is sent
    a window and the tolerance after the last beat, not up to a poll later; and repeats
    likewise keep their own time."""
    cfg = monitor_config(unique, poll_s=3.0, tolerance_s=0.2, repeat_every_s=0.5)
    subject = names(unique)["prefix"] + "stops"
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        await eventually(mon.leading, 10, what="leading")
        await heartbeat.Publisher(nc).publish(heartbeat.Message(subject=subject, interval=300 * MS))
        await eventually(lambda: mon.subjects.beat(subject) is not None)
        last_seen = seen(mon, subject)
        got = await receiver.wait_for(3, timeout=10)
        delay = got[0].at - last_seen
        assert 0.5 <= delay < 0.5 + 0.3, delay  # window 300 ms + tolerance 200 ms
        gaps = [b.at - a.at for a, b in itertools.pairwise(got)]
        assert all(0.45 < g < 0.5 + 0.3 for g in gaps), gaps


async def test_grace_overrides_interval(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    cfg = monitor_config(unique, poll_s=0.05, tolerance_s=0.1)
    subject = names(unique)["prefix"] + "graceful"
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        await heartbeat.Publisher(nc).publish(
            heartbeat.Message(subject=subject, interval=100 * MS, grace_period=800 * MS)
        )
        await eventually(lambda: mon.subjects.beat(subject) is not None)
        seen_at = seen(mon, subject)
        got = await receiver.wait_for(1, timeout=5)
        assert got[0].at - seen_at > 0.9  # grace + tolerance, not interval
        assert got[0].json()["window"] == "800ms"


async def test_failing_channel_retries_with_same_id_and_does_not_hold_up_others(
    nats_server: NatsServer, nc: NATS, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = monitor_config(unique, poll_s=0.05, tolerance_s=0.05, delivery_deadline_s=0.3)
    subject = names(unique)["prefix"] + "flaky"
    async with (
        recording_receiver() as good,
        recording_receiver() as flaky,
        recording_receiver() as broken,
        aiohttp.ClientSession() as session,
    ):
        flaky.script = [500] * 6
        broken.default_status = 400
        hooks = [WebhookNotifier(session, r.url) for r in (good, flaky, broken)]
        async with running_monitor(nats_server.url, cfg, hooks) as mon:
            await heartbeat.Publisher(nc).publish(
                heartbeat.Message(subject=subject, interval=100 * MS)
            )
            got_good = await good.wait_for(1)
            got_flaky = await flaky.wait_for(7, timeout=10)
            await eventually(lambda: not committed(mon, subject).pending, what="pending cleared")
            await asyncio.sleep(0.3)
    assert len(good.requests) == 1, "the good channel is sent once, not held up"
    assert got_good[0].at < got_flaky[-1].at
    ids = {r.headers["Idempotency-Key"] for r in flaky.requests}
    assert ids == {got_good[0].headers["Idempotency-Key"]}
    assert len(flaky.requests) == 7, "delivered once it recovered, then never again"
    assert len(broken.requests) == 1, "a 400 is not retried"
    assert any(
        "PERMANENTLY" in r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR
    )


async def test_go_format_payload_is_monitored_and_bad_payloads_change_nothing(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    cfg = monitor_config(unique, poll_s=0.05)
    prefix = names(unique)["prefix"]
    go_subject, victim = prefix + "go", prefix + "victim"
    js = nc.jetstream()
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        go_payload = (
            f'{{"subject":"{go_subject}","generated_at":"2026-11-29T01:59:06.135898385Z",'
            '"interval":60000000000,"host":"vm"}'
        ).encode()
        await js.publish(go_subject, go_payload)
        ours = heartbeat.Message(subject=victim, interval=timedelta(seconds=60))
        await heartbeat.Publisher(nc).publish(ours)
        await eventually(
            lambda: (
                mon.subjects.beat(go_subject) is not None
                and mon.subjects.beat(victim) is not None
                and not mon.subjects.tapped  # the stream's copies, not the tap's
            )
        )
        before = mon.subjects.beat(victim)
        # A payload naming another subject, and garbage, on the victim's subject.
        spoof = heartbeat.encode(
            heartbeat.Message(
                subject=go_subject,
                interval=timedelta(seconds=1),
                generated_at=before_time(),
            )
        )
        await js.publish(victim, spoof)
        await js.publish(victim, b"not json")
        await js.publish(victim, b'{"subject":"%s","interval":-1}' % victim.encode())
        await eventually(lambda: sum(mon.ingestor.rejected.values()) >= 3, what="rejections")
        assert mon.ingestor.rejected["subject_mismatch"] == 1
        assert mon.ingestor.rejected["malformed"] == 1
        assert mon.subjects.beat(victim) == before
        row = {s.subject: s for s in mon.report().subjects}[go_subject]
        assert row.interval == "1m0s"
        assert row.host == "vm"
        assert row.last_seen is not None
    assert receiver.requests == []


def before_time() -> object:
    from datetime import UTC, datetime

    return datetime.now(UTC)


async def test_kv_record_is_plain_json(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    cfg = monitor_config(unique, poll_s=0.05, tolerance_s=0.05)
    subject = names(unique)["prefix"] + "record"
    async with webhook_monitor(nats_server.url, cfg, receiver):
        await heartbeat.Publisher(nc).publish(
            heartbeat.Message(subject=subject, interval=100 * MS, description="rec test")
        )
        await receiver.wait_for(1)
        kv = await nc.jetstream().key_value(names(unique)["bucket"])
        entry = await kv.get(subject)
    assert entry.value is not None
    record = json.loads(entry.value)
    assert record["subject"] == subject
    assert record["description"] == "rec test"
    assert record["alert_active"] is True
    assert record["interval_ns"] == 100_000_000
    assert record["notify_count"] == 1
    assert isinstance(record["last_seen"], float)


async def test_a_restart_schedules_each_subject_once_from_its_record_and_beat(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    """A first start defers deadlines until the stream has caught up: a record whose
    stream has a newer beat gets one heap entry (not its record's, then its beat's
    with the first left behind), and a subject that went silent still alerts."""
    from heartbeat.schema import Message, encode, format_time
    from heartbeat.store import StateStore, encode_record, ensure_stream

    cfg = monitor_config(unique, poll_s=0.1, tolerance_s=0.2)
    js = nc.jetstream()
    await ensure_stream(js, cfg.store)
    await StateStore.open(js, cfg.store)
    prefix = names(unique)["prefix"]
    beating, silent = prefix + "beating", prefix + "silent"
    old = time.time() - 5  # the records' deadlines passed before the beats below
    for subject in (beating, silent):
        rec = Record(
            subject=subject, host="h", interval_ns=SECOND, last_seen=old,
            generated_at=format_time(datetime.fromtimestamp(old, UTC)), updated_by="old",
        )  # fmt: skip
        await js.publish(f"$KV.{cfg.store.bucket}.{subject}", encode_record(rec))
    last = Message(
        subject=silent, interval=timedelta(seconds=1), generated_at=datetime.now(UTC), host="h"
    )
    await js.publish(silent, encode(last))  # its last beat
    async with (
        heartbeat.beating(nc, beating, interval=timedelta(seconds=1), host="h"),
        webhook_monitor(nats_server.url, cfg, receiver) as (mon, _),
    ):
        schedule = mon.subjects.schedule
        assert len(schedule) == 2 and all(t.due is not None for t in mon.subjects)
        assert len(schedule._heap) == 2  # no deadline left behind by a move
        await receiver.wait_for(1)
        assert [e["subject"] for e in webhook_events(receiver)] == [silent]
        assert committed(mon, silent).alert_active and not committed(mon, beating).alert_active
