"""Writes that cannot succeed, and more subjects than the monitor will track."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

import heartbeat
from heartbeat.connection import ConnectOptions, close_connection, connect
from tests.harness import (
    NatsServer,
    Receiver,
    eventually,
    free_port,
    monitor_config,
    names,
    webhook_events,
    webhook_monitor,
)

MS = timedelta(milliseconds=1)


async def test_a_record_that_never_fits_backs_off_and_leaves_others_alone(
    nats_factory: Callable[..., NatsServer],
    receiver: Receiver,
    unique: str,
    caplog: pytest.LogCaptureFixture,
    tmp_path: Path,
) -> None:
    # The beat fits the server's max_payload; the alert record (subject, description
    # and the pending notification repeat the 1.2 kB subject) does not.
    port = free_port()
    server = nats_factory(
        port=port,
        config=(
            f"listen: 127.0.0.1:{port}\nmax_payload: 1500\n"
            f'jetstream {{ store_dir: "{tmp_path}/js" }}\n'
        ),
    )
    prefix = names(unique)["prefix"]
    big, small = prefix + "big." + "b" * 1200, prefix + "small"
    cfg = monitor_config(unique, poll_s=0.05, tolerance_s=0.05)
    caplog.set_level(logging.WARNING, logger="heartbeat.judge")
    async with webhook_monitor(server.url, cfg, receiver) as (mon, _):
        await eventually(mon.leading, what="leadership")
        nc = await connect(ConnectOptions(servers=(server.url,)))
        try:
            pub = heartbeat.Publisher(nc)
            await pub.publish(heartbeat.Message(subject=big, interval=100 * MS))
            await pub.publish(heartbeat.Message(subject=small, interval=100 * MS))
        finally:
            await close_connection(nc)
        await eventually(
            lambda: any(e["event"] == "alert" for e in webhook_events(receiver, small)),
            10,
            what="the small subject to alert",
        )
        await eventually(lambda: mon.counters.store_errors >= 3, 10, what="failed writes")
        await asyncio.sleep(2.0)  # a window in which a hot loop would write ~40 times
        failures = mon.counters.store_errors
        assert failures <= 8, failures  # backoff doubling from poll: 0.1, 0.2, 0.4 ... s
        lines = [r for r in caplog.records if "committing" in r.getMessage()]
        assert 1 <= len(lines) <= 2, [r.getMessage() for r in lines]
        assert mon.snapshot().write_errors == failures
        assert mon.healthy()[0]


async def test_subjects_past_max_subjects_are_counted_logged_and_announced_once(
    nats_server: NatsServer, receiver: Receiver, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    prefix = names(unique)["prefix"]
    cfg = monitor_config(unique, poll_s=0.05, max_subjects=5)
    caplog.set_level(logging.WARNING, logger="heartbeat.monitor")
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        await eventually(mon.leading, what="leadership")
        nc = await connect(ConnectOptions(servers=(nats_server.url,)))
        try:
            pub = heartbeat.Publisher(nc)
            for i in range(20):
                await pub.publish(
                    heartbeat.Message(subject=f"{prefix}n{i:02d}", interval=timedelta(hours=1))
                )
        finally:
            await close_connection(nc)
        await eventually(lambda: mon.subjects.refused == 15, 10, what="15 refused")
        assert len(mon.subjects) == 5
        notices = await receiver.wait_for(1, timeout=10)
        await asyncio.sleep(0.3)  # a few more ticks: still one notice
        assert [r.json()["event"] for r in receiver.requests] == ["over_capacity"]
        assert "5 subjects" in notices[0].json()["description"]
        lines = [r for r in caplog.records if "max-subjects" in r.getMessage()]
        assert len(lines) == 1
        assert mon.snapshot().refused_subjects == 15


async def test_a_huge_description_is_cut_and_the_subject_still_alerts(
    nats_server: NatsServer, receiver: Receiver, unique: str
) -> None:
    """Before, a description this long made the alert record too large for every
    write, forever; now the beat is cut at ingest and the alert goes out."""
    prefix = names(unique)["prefix"]
    long, huge = prefix + "long", prefix + "huge"
    cfg = monitor_config(unique, poll_s=0.05, tolerance_s=0.05)
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        await eventually(mon.leading, what="leadership")
        nc = await connect(ConnectOptions(servers=(nats_server.url,)))
        try:
            pub = heartbeat.Publisher(nc)
            await pub.publish(
                heartbeat.Message(subject=long, interval=100 * MS, description="d" * 7000)
            )
            # Past --max-payload (8 KiB): rejected unread, changes nothing.
            await pub.publish(
                heartbeat.Message(subject=huge, interval=100 * MS, description="d" * 500_000)
            )
        finally:
            await close_connection(nc)
        await eventually(
            lambda: any(e["event"] == "alert" for e in webhook_events(receiver, long)),
            10,
            what="the long-description subject to alert",
        )
        [alert] = [e for e in webhook_events(receiver, long) if e["event"] == "alert"]
        assert len(alert["description"]) == 256 and alert["description"].endswith("…")
        assert mon.ingestor.rejected["payload_too_large"] == 1
        assert mon.subjects.get(huge) is None and mon.counters.store_errors == 0
