"""Routes decide which channels hear of a subject, and how often it repeats."""

from __future__ import annotations

from datetime import timedelta

import aiohttp
from nats.aio.client import Client as NATS

import heartbeat
from heartbeat.notify import WebhookNotifier
from heartbeat.routing import Route
from tests.harness import (
    NatsServer,
    eventually,
    monitor_config,
    names,
    recording_receiver,
    running_monitor,
    webhook_events,
)

MS = timedelta(milliseconds=1)


async def test_routes_send_each_subject_only_to_its_channels(
    nats_server: NatsServer, nc: NATS, unique: str
) -> None:
    p = names(unique)["prefix"]
    db, web, lost = p + "db.main", p + "web.api", p + "lost.thing"
    async with (
        recording_receiver() as oncall,
        recording_receiver() as batch,
        aiohttp.ClientSession() as session,
    ):
        a, b = WebhookNotifier(session, oncall.url), WebhookNotifier(session, batch.url)
        routes = (
            Route(subjects=(p + "db.>",), channels=(a.name,), repeat_every_s=0.3),
            Route(subjects=(p + "web.*",), channels=(a.name,), continue_=True),
            Route(subjects=(p + "web.>",), channels=(b.name,)),
        )
        cfg = monitor_config(
            unique, poll_s=0.05, tolerance_s=0.05, repeat_every_s=3600.0, routes=routes
        )
        async with running_monitor(nats_server.url, cfg, [a, b]) as mon:
            await eventually(mon.leading, what="leadership")
            pub = heartbeat.Publisher(nc)
            for s in (db, web, lost):
                await pub.publish(heartbeat.Message(subject=s, interval=100 * MS))
            await eventually(
                lambda: (
                    [e["event"] for e in webhook_events(oncall, db)][:3]
                    == ["alert", "repeat", "repeat"]
                ),
                10,
                what="db alert and the route's quick repeats",
            )
            await eventually(lambda: len(webhook_events(batch, web)) >= 1, 10, what="web to batch")
            assert [e["event"] for e in webhook_events(oncall, web)] == ["alert"]
            assert webhook_events(batch, db) == []
            assert webhook_events(oncall, lost) == [] and webhook_events(batch, lost) == []
            rows = {s.subject: s for s in mon.report().subjects}
            assert rows[lost].alert_active and rows[lost].unrouted is True
            assert rows[db].unrouted is None
            assert mon.snapshot().unrouted == 1
