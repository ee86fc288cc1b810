"""Connection health that tells the truth: a connection nats-py gives up on is
replaced, and a monitor cut off for long fails /healthz."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta

from nats.aio.client import Client as NATS

import heartbeat
from tests.harness import (
    NatsServer,
    Receiver,
    eventually,
    monitor_config,
    names,
    webhook_events,
    webhook_monitor,
)

MS = timedelta(milliseconds=1)


async def test_a_connection_closed_by_a_protocol_error_is_replaced_and_alerting_goes_on(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    cfg = monitor_config(unique, poll_s=0.05, tolerance_s=0.05, blind_after_s=60.0)
    subject = names(unique)["prefix"] + "after-close"
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        await eventually(mon.leading, what="leadership")
        first = mon.connection
        assert first is not None
        # A control line past the server's 4096 bytes: the server answers -ERR and drops
        # the client, and nats-py closes it for good instead of reconnecting.
        await first.publish("x" * 5000, b"")
        await eventually(lambda: first.is_closed, what="the connection to be closed")
        await eventually(
            lambda: mon.connection is not first and mon.ready()[0], 10, what="a new connection"
        )
        assert mon.healthy()[0]
        await eventually(mon.leading, 10, what="leading again")
        await heartbeat.Publisher(nc).publish(heartbeat.Message(subject=subject, interval=100 * MS))
        await eventually(
            lambda: any(e["event"] == "alert" for e in webhook_events(receiver, subject)),
            10,
            what="an alert on the new connection",
        )


async def test_healthz_fails_once_blind_longer_than_unhealthy_after(
    nats_factory: Callable[..., NatsServer], receiver: Receiver, unique: str
) -> None:
    server = nats_factory()
    cfg = monitor_config(unique, poll_s=0.05, unhealthy_after_s=0.5)
    async with webhook_monitor(server.url, cfg, receiver) as (mon, _):
        assert mon.healthy() == (True, "ok")
        server.stop()
        await eventually(lambda: mon.sight.blind, 10, what="blind")
        await eventually(lambda: not mon.healthy()[0], 5, what="unhealthy")
        assert "blind for" in mon.healthy()[1]


async def test_no_alert_on_silence_seen_through_a_stalled_feed(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    """The consumer stops delivering (as when a NATS node dies under it) while the
    subject goes on beating: no alert, only held ones; once it delivers again, none."""
    cfg = monitor_config(unique, poll_s=0.05, tolerance_s=0.05)
    subject = names(unique)["prefix"] + "beating"
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        await eventually(mon.leading, what="leadership")
        async with heartbeat.beating(nc, subject, interval=100 * MS):
            await eventually(lambda: mon.subjects.record(subject) is not None, 10, what="record")
            feed = mon.ingestor.feed
            await feed.stop()  # no more beats reach the monitor; the stream still gets them
            await eventually(
                lambda: mon.judge.held_alerts >= 3 or webhook_events(receiver, subject),
                10,
                what="an alert decided",
            )
            assert webhook_events(receiver, subject) == []  # held, not sent
            await feed.start()
            seen = mon.subjects.beat(subject)
            await eventually(lambda: mon.subjects.beat(subject) is not seen, 10, what="beats again")
            await asyncio.sleep(0.5)  # ticks with the feed delivering: nothing to tell
        assert webhook_events(receiver, subject) == []
