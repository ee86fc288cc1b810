"""Channel names are stable identities: a config change across a restart neither
loses nor duplicates a pending delivery."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta

import aiohttp
import pytest
from nats.aio.client import Client as NATS

import heartbeat
from heartbeat.config import Config, build_notifiers, load_config
from heartbeat.monitor import Monitor
from tests.harness import (
    NatsServer,
    Receiver,
    eventually,
    monitor_config,
    names,
    recording_receiver,
    running_monitor,
    webhook_events,
)

MS = timedelta(milliseconds=1)


def config(**urls: str) -> Config:
    """Webhook channels named as given, from a config file's text."""
    text = "".join(f'[channels.{n}]\ntype = "webhook"\nurl = "{u}"\n' for n, u in urls.items())
    return load_config(text, path="test.toml", read_file=lambda p: "")


@asynccontextmanager
async def monitor_with(url: str, unique: str, cfg: Config) -> AsyncIterator[Monitor]:
    mcfg = monitor_config(unique, poll_s=0.05, tolerance_s=0.05, routes=cfg.routes)
    async with (
        aiohttp.ClientSession() as session,
        running_monitor(url, mcfg, build_notifiers(cfg.channels, session)) as mon,
    ):
        await eventually(mon.leading, what="leadership")
        yield mon


def ids(receiver: Receiver, subject: str) -> list[str]:
    return [e["notification_id"] for e in webhook_events(receiver, subject)]


async def go_missing(nc: NATS, subject: str) -> None:
    await heartbeat.Publisher(nc).publish(heartbeat.Message(subject=subject, interval=100 * MS))


async def alert_pending_for_b(
    nats_server: NatsServer, nc: NATS, unique: str, a: Receiver, b: Receiver
) -> str:
    """Run 1: A delivers the alert, B answers 500 so it stays pending for B; stop."""
    subject = names(unique)["prefix"] + "db.main"
    b.default_status = 500
    async with monitor_with(nats_server.url, unique, config(a=a.url, b=b.url)) as mon:
        await go_missing(nc, subject)
        await eventually(lambda: ids(a, subject), 10, what="the alert at A")
        await eventually(lambda: mon.snapshot().pending == {"b": 1}, 10, what="pending for B")
        assert len(ids(b, subject)) >= 1
    (nid,) = ids(a, subject)
    assert set(ids(b, subject)) == {nid}
    return nid


async def test_a_removed_channel_drops_its_pending_and_a_new_one_gets_no_old_news(
    nats_server: NatsServer, nc: NATS, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    subject = names(unique)["prefix"] + "db.main"
    later = names(unique)["prefix"] + "db.later"
    async with recording_receiver() as a, recording_receiver() as b, recording_receiver() as c:
        nid = await alert_pending_for_b(nats_server, nc, unique, a, b)
        tried_b = len(b.requests)
        caplog.set_level(logging.WARNING)
        async with monitor_with(nats_server.url, unique, config(a=a.url, c=c.url)) as mon:
            await eventually(
                lambda: any(
                    "channel b is no longer configured; dropping it" in r.getMessage()
                    for r in caplog.records
                ),
                10,
                what="the warning that B's pending delivery is dropped",
            )
            await eventually(lambda: not mon.snapshot().pending, 10, what="nothing pending")
            # A new alert reaches both A and C: the monitor is delivering, and C was
            # sent only the new notification, A the old one only once.
            await go_missing(nc, later)
            await eventually(lambda: ids(c, later) and ids(a, later), 10, what="the new alert")
        assert ids(a, subject) == [nid]
        assert ids(c, subject) == []
        assert len(ids(c, later)) == 1
        assert len(b.requests) == tried_b


async def test_a_channel_that_recovers_across_a_restart_gets_it_exactly_once(
    nats_server: NatsServer, nc: NATS, unique: str
) -> None:
    subject = names(unique)["prefix"] + "db.main"
    later = names(unique)["prefix"] + "db.later"
    async with recording_receiver() as a, recording_receiver() as b:
        nid = await alert_pending_for_b(nats_server, nc, unique, a, b)
        failed = len(b.requests)
        b.default_status = 200
        async with monitor_with(nats_server.url, unique, config(a=a.url, b=b.url)) as mon:
            await eventually(lambda: len(b.requests) > failed, 10, what="B's retry")
            await eventually(lambda: not mon.snapshot().pending, 10, what="nothing pending")
            await go_missing(nc, later)
            await eventually(lambda: ids(b, later) and ids(a, later), 10, what="the new alert")
        answered_ok = [e["notification_id"] for e in webhook_events(b)][failed:]
        assert answered_ok.count(nid) == 1
        assert ids(a, subject) == [nid]
        assert len(ids(b, later)) == 1
