"""[[depends]] on a real nats-server, a running monitor and a real webhook receiver.

A rack stops at once: its uplink (the parent, window 3 s) and 50 hosts behind it
(window 1 s, so each is due to alert before the uplink is even late).  One
notification goes out, the uplink's, naming the count; none for the hosts.  Then
the uplink comes back with 40 of them: the 10 still missing alert a full window
after the uplink's return, and nothing resolves that was never told.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from datetime import timedelta

from nats.aio.client import Client as NATS

import heartbeat
from heartbeat.aio import wait_event
from heartbeat.depends import NAMED, Dependency
from heartbeat.monitor import Monitor
from heartbeat.quiet import QuietKind
from tests.harness import (
    NatsServer,
    eventually,
    monitor_config,
    names,
    recording_receiver,
    run_cli,
    webhook_events,
    webhook_monitor,
)

PARENT_INTERVAL, PARENT_GRACE = timedelta(milliseconds=500), timedelta(seconds=3)
HOST_INTERVAL = timedelta(seconds=1)  # no grace: window 1 s
TOLERANCE_S = 0.2


@contextlib.asynccontextmanager
async def beating(nc: NATS, parent: str, hosts: Iterable[str]) -> AsyncIterator[set[str]]:
    """Beat every subject in the yielded set every 250 ms (parent first, as an agent
    loop would); take subjects out of the set to stop them."""
    pub = heartbeat.Publisher(nc)
    live = {parent, *hosts}

    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            for s in sorted(live, key=lambda s: s != parent):
                if s == parent:
                    msg = heartbeat.Message(
                        subject=s, interval=PARENT_INTERVAL, grace_period=PARENT_GRACE
                    )
                else:
                    msg = heartbeat.Message(subject=s, interval=HOST_INTERVAL)
                await pub.publish(msg)
            await wait_event(stop, 0.25)

    # Stopped by an event, not by cancelling: a cancel can be lost inside a publish's
    # flush (asyncio.wait_for on Python 3.11), and the loop would then run for ever.
    task = asyncio.create_task(loop())
    try:
        yield live
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


def alerting(mon: Monitor, subjects: Iterable[str]) -> list[str]:
    return [s for s in subjects if (r := mon.subjects.record(s)) is not None and r.alert_active]


async def test_a_parent_with_fifty_dependents_down_together_sends_one_notification(
    nats_server: NatsServer, nc: NATS, unique: str
) -> None:
    p = names(unique)["prefix"]
    parent = p + "dc1.uplink"
    hosts = [p + f"dc1.h{i:02d}" for i in range(50)]
    cfg = monitor_config(
        unique,
        poll_s=0.05,
        tolerance_s=TOLERANCE_S,
        depends=(Dependency((p + "dc1.>",), parent),),
    )
    async with (
        recording_receiver() as rx,
        webhook_monitor(nats_server.url, cfg, rx) as (mon, _),
        beating(nc, parent, hosts) as live,
    ):
        await eventually(mon.leading, what="leadership")
        await eventually(
            lambda: all(mon.subjects.record(s) is not None for s in [parent, *hosts]),
            10,
            what="a record for every subject",
        )
        live.clear()  # the whole rack stops at once
        await eventually(lambda: webhook_events(rx), 15, what="the uplink's alert")
        # Every host is past its own deadline and kept quiet by the missing uplink.
        quiet = mon.quieter.hush_for
        await eventually(
            lambda: all(
                (q := quiet(s, mon.clock()).quiet) is not None
                and q.kind is QuietKind.SUPPRESSED
                and q.until is None
                and q.ref == parent
                for s in hosts
            ),
            5,
            what="every host suppressed by the uplink",
        )
        events = webhook_events(rx)
        assert [(e["event"], e["subject"]) for e in events] == [("alert", parent)]
        alert = events[0]
        assert alert["dependents_missing"] == 50
        assert alert["dependents"] == hosts[:NAMED]
        assert alerting(mon, hosts) == []
        rows = {r.subject: r for r in mon.report().subjects}
        assert {(rows[s].quiet, rows[s].quiet_ref, rows[s].quiet_until) for s in hosts} == {
            ("suppressed", parent, None)
        }
        assert rows[parent].quiet is None and rows[parent].alert_active
        assert mon.snapshot().quiet[QuietKind.SUPPRESSED] == 50

        # The uplink is back with 40 hosts; 10 stay missing.
        missing = hosts[:10]
        live.update([parent, *hosts[10:]])
        await eventually(
            lambda: len(alerting(mon, missing)) == 10, 15, what="the 10 missing hosts' alerts"
        )
        back = mon.subjects.record(parent)
        assert back is not None and back.back_at is not None and not back.alert_active
        window_s = HOST_INTERVAL.total_seconds() + TOLERANCE_S
        for s in missing:
            rec = mon.subjects.record(s)
            assert rec is not None and rec.alert_since is not None
            # A full window after the uplink's return, not at once (their own
            # deadlines passed long ago), and not much later either.
            assert window_s <= rec.alert_since - back.back_at < window_s + 2.0, s
        await eventually(
            lambda: len([e for e in webhook_events(rx) if e["event"] == "alert"]) == 11,
            10,
            what="the 10 alerts delivered",
        )
        await eventually(
            lambda: any(e["event"] == "resolved" for e in webhook_events(rx, parent)),
            10,
            what="the uplink's resolve",
        )
        told = {(e["event"], e["subject"]) for e in webhook_events(rx)}
        assert told == {("alert", parent), ("resolved", parent)} | {("alert", s) for s in missing}
        assert len(webhook_events(rx)) == 12  # no resolve for a host that was never told
        assert all("dependents" not in e for e in webhook_events(rx) if e["subject"] != parent)


async def test_a_paused_parent_back_without_an_alert_still_holds_its_dependents_a_window(
    nats_server: NatsServer, nc: NATS, unique: str
) -> None:
    """The uplink is paused (no alert, so no ``back_at`` in its record): its return is
    the one every replica saw in its beats, and the hosts still missing alert a full
    window after it."""
    p = names(unique)["prefix"]
    parent = p + "dc1.uplink"
    hosts = [p + f"dc1.h{i}" for i in range(5)]
    bucket = f"SIL_{unique}"
    cfg = monitor_config(
        unique,
        poll_s=0.05,
        tolerance_s=TOLERANCE_S,
        silence_bucket=bucket,
        depends=(Dependency((p + "dc1.>",), parent),),
    )
    async with (
        recording_receiver() as rx,
        webhook_monitor(nats_server.url, cfg, rx) as (mon, _),
        beating(nc, parent, hosts) as live,
    ):
        await eventually(mon.leading, what="leadership")
        paused = await asyncio.to_thread(
            run_cli,
            "pause", parent, "--reason", "uplink firmware",
            "--nats-url", nats_server.url, "--silence-bucket", bucket,
        )  # fmt: skip
        assert paused.returncode == 0, paused.stderr
        quiet = mon.quieter.hush_for

        def kind(s: str) -> QuietKind | None:
            q = quiet(s, mon.clock()).quiet
            return None if q is None else q.kind

        await eventually(lambda: kind(parent) is QuietKind.PAUSED, 10, what="the pause")
        live.clear()
        await eventually(
            lambda: all(
                (q := quiet(s, mon.clock()).quiet) is not None
                and q.until is None
                and q.ref == parent
                for s in hosts
            ),
            15,
            what="every host suppressed by the late, paused uplink",
        )
        live.update([parent, *hosts[2:]])  # back, still paused; h0 and h1 are not
        await eventually(lambda: len(alerting(mon, hosts[:2])) == 2, 15, what="h0, h1 alerts")
        back = mon.depends.returned[parent]
        rec = mon.subjects.record(parent)
        assert rec is not None and rec.back_at is None and not rec.alert_active  # never told
        window_s = HOST_INTERVAL.total_seconds() + TOLERANCE_S
        for s in hosts[:2]:
            r = mon.subjects.record(s)
            assert r is not None and r.alert_since is not None
            assert window_s <= r.alert_since - back < window_s + 2.0, s
        await eventually(lambda: len(webhook_events(rx)) == 2, 10, what="the two alerts sent")
        assert sorted((e["event"], e["subject"]) for e in webhook_events(rx)) == [
            ("alert", hosts[0]),
            ("alert", hosts[1]),
        ]
