"""An alert raised before a maintenance window, with a monitor in this process and a
real nats-server: the window holds its repeats, a resolve inside it is still told,
a subject still missing repeats again only a full window after the end, and one that
went missing again inside it alerts anew only then."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime, timedelta

from nats.aio.client import Client as NATS

import heartbeat
from heartbeat.maintenance import Window
from tests.harness import (
    NatsServer,
    Receiver,
    eventually,
    monitor_config,
    names,
    recording_receiver,
    webhook_events,
    webhook_monitor,
)

INTERVAL = timedelta(milliseconds=200)
TOLERANCE_S, REPEAT_S, POLL_S = 0.2, 0.5, 0.05
DURATION_S = 3.0


def events(receiver: Receiver, subject: str) -> list[tuple[str, float]]:
    """(event, arrival time) of every notification about ``subject``."""
    return [
        (r.json()["event"], r.at) for r in receiver.requests if r.json().get("subject") == subject
    ]


async def test_an_alert_from_before_a_window_stays_quiet_and_still_resolves(
    nats_server: NatsServer, nc: NATS, unique: str
) -> None:
    p = names(unique)["prefix"]
    fixed, lost = p + "batch.fixed", p + "batch.lost"
    start = math.ceil(time.time() + 3.0)
    end = start + DURATION_S
    first = datetime.fromtimestamp(start, UTC)
    window = Window(
        "deploy", (p + "batch.>",), f"{first.second} {first.minute} {first.hour} * * *", DURATION_S
    )
    cfg = monitor_config(
        unique,
        poll_s=POLL_S,
        tolerance_s=TOLERANCE_S,
        repeat_every_s=REPEAT_S,
        maintenance=(window,),
    )
    async with (
        recording_receiver() as hook,
        webhook_monitor(nats_server.url, cfg, hook) as (mon, _),
    ):
        await eventually(mon.leading, what="leadership")
        pub = heartbeat.Publisher(nc)
        for s in (fixed, lost):
            await pub.publish(heartbeat.Message(subject=s, interval=INTERVAL))
        await eventually(
            lambda: all(len(webhook_events(hook, s)) >= 2 for s in (fixed, lost)),
            10,
            what="alerts and a repeat before the window",
        )
        assert time.time() < start, "the monitor was too slow: the window began"

        def quiet() -> bool:
            rows = {r.subject: r for r in mon.report().subjects}
            return all(rows[s].quiet == "maint" and rows[s].quiet_ref == "deploy" for s in rows)

        await eventually(quiet, start + 2 - time.time(), what="the window to start")
        assert mon.snapshot().quiet == {"maint": 2}
        # Long enough inside the window for three repeats that must not come.
        await eventually(lambda: time.time() >= start + 3 * REPEAT_S, 10, what="time to pass")
        await pub.publish(heartbeat.Message(subject=fixed, interval=INTERVAL))
        await eventually(
            lambda: [e for e, _ in events(hook, fixed)][-1] == "resolved", 5, what="resolved"
        )
        resolved_at = events(hook, fixed)[-1][1]
        assert start <= resolved_at < end, "a resolve inside the window is told"
        for subject in (fixed, lost):
            told = events(hook, subject)
            assert [e for e, _ in told][:1] == ["alert"]
            inside = [e for e, at in told if start + POLL_S < at < end]
            assert inside in ([], ["resolved"]), told
        # Still missing at the end: the next repeat a full window (+ tolerance) after it.
        due = end + INTERVAL.total_seconds() + TOLERANCE_S
        await eventually(
            lambda: any(at > end for _, at in events(hook, lost)),
            due + 10 - time.time(),
            what="repeat",
        )
        kind, at = next((e, at) for e, at in events(hook, lost) if at > end)
        assert kind == "repeat"
        assert due <= at <= due + POLL_S + TOLERANCE_S + 1.0, at - end
        # `fixed` beat once and is missing again: told nothing more inside the window, it
        # alerts anew a full window after the end, not before.
        await eventually(lambda: events(hook, fixed)[-1][0] == "alert", 5, what="a new alert")
        again = [(e, at) for e, at in events(hook, fixed) if at > resolved_at]
        assert [e for e, _ in again] == ["alert"] and again[0][1] >= due, again
