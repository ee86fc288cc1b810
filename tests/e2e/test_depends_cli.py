"""[[depends]] through the real CLI: config errors, and a restarted monitor that
decides from the records alone (the parent's return is durable in its KV record)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import nats.js.errors
import pytest
from nats.aio.client import Client as NATS

import heartbeat
from heartbeat.aio import wait_event
from heartbeat.durations import parse_duration
from tests.harness import (
    MonitorProcess,
    NatsServer,
    eventually,
    free_port,
    names,
    recording_receiver,
    run_cli,
    webhook_events,
)

HOST_WINDOW_S = 6.0  # the hosts' window: long enough for a new monitor to take over in
BAD = [
    ("subjects = ['a.>']\non = 'a.*'", "depends[1].on: 'a.*' must be one exact subject"),
    ("on = 'a.b'", "depends[1].subjects: missing"),
    ("subjects = ['a.>']\non = 'b.c'\n[[depends]]\nsubjects = ['b.>']\non = 'a.d'", "cycle"),
]


@pytest.mark.parametrize(("body", "message"), BAD, ids=[b[1] for b in BAD])
def test_a_bad_dependency_exits_2_with_one_line(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "heartbeat.toml"
    path.write_text(f"[[depends]]\n{body}\n")
    p = run_cli("monitor", "--config", str(path), "--notify-log", timeout=20)
    assert p.returncode == 2, p.stderr
    (line,) = p.stderr.splitlines()
    assert line.startswith(f"nats-heartbeat: {path}: ") and message in line


def test_routes_names_the_parents_of_a_subject(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.toml"
    path.write_text(
        "[[depends]]\nsubjects = ['hb.dc1.>']\non = 'hb.dc1.uplink'\n"
        "[[depends]]\nsubjects = ['hb.*.web']\non = 'hb.core'\n"
    )
    p = run_cli("routes", "--config", str(path), "--notify-log", "--subject", "hb.dc1.web")
    assert p.returncode == 0, p.stderr
    assert p.stdout.splitlines()[-1] == (
        "depends on hb.dc1.uplink, hb.core: quiet while one of them is missing"
    )
    p = run_cli("routes", "--config", str(path), "--notify-log", "--subject", "hb.dc1.uplink")
    assert p.returncode == 0 and "depends on" not in p.stdout


@pytest.fixture
def monitors() -> Iterator[list[MonitorProcess]]:
    started: list[MonitorProcess] = []
    yield started
    for m in started:
        if m.running:
            m.stop(signal.SIGKILL)


async def record(nc: NATS, unique: str, subject: str) -> dict[str, Any] | None:
    try:
        kv = await nc.jetstream().key_value(names(unique)["bucket"])
        entry = await kv.get(subject, validate_keys=False)
    except (nats.js.errors.BucketNotFoundError, nats.js.errors.KeyNotFoundError):
        return None  # no monitor has made the bucket yet, or no record yet
    return json.loads(entry.value) if entry.value else None


async def status(port: int) -> dict[str, dict[str, Any]]:
    """The status rows by subject ({} while the listener is not up)."""
    try:
        async with (
            aiohttp.ClientSession() as session,
            session.get(f"http://127.0.0.1:{port}/", timeout=aiohttp.ClientTimeout(total=2)) as r,
        ):
            body = await r.json()
    except (aiohttp.ClientError, TimeoutError):
        return {}
    return {row["subject"]: row for row in body["subjects"]}


def past(row: dict[str, Any] | None, seconds: float) -> bool:
    """Whether a status row has been missing for longer than ``seconds``."""
    if row is None or not row.get("miss_for"):
        return False
    return parse_duration(row["miss_for"]).total_seconds() > seconds


@contextlib.asynccontextmanager
async def beating(nc: NATS, parent: str, hosts: list[str]) -> AsyncIterator[set[str]]:
    """Beat the subjects in the yielded set every 250 ms (parent: window 2 s; hosts:
    window HOST_WINDOW_S), retrying until a monitor has made the stream."""
    pub = heartbeat.Publisher(nc)
    live = {parent, *hosts}

    stop = asyncio.Event()

    async def loop() -> None:
        while not stop.is_set():
            for s in sorted(live, key=lambda s: s != parent):
                msg = (
                    heartbeat.Message(
                        subject=s,
                        interval=timedelta(milliseconds=500),
                        grace_period=timedelta(seconds=2),
                    )
                    if s == parent
                    else heartbeat.Message(subject=s, interval=timedelta(seconds=HOST_WINDOW_S))
                )
                with contextlib.suppress(heartbeat.PublishError):  # no stream yet
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


async def test_a_restarted_monitor_waits_a_window_after_the_parents_return(
    nats_server: NatsServer, nc: NATS, unique: str, tmp_path: Path, monitors: list[MonitorProcess]
) -> None:
    n = names(unique)
    parent = n["prefix"] + "dc1.uplink"
    hosts = [n["prefix"] + f"dc1.h{i}" for i in range(5)]
    async with recording_receiver() as rx:
        path = tmp_path / "heartbeat.toml"
        path.write_text(
            f'[channels.hook]\ntype = "webhook"\nurl = "{rx.url}"\n\n'
            f'[[depends]]\nsubjects = ["{n["prefix"]}dc1.>"]\non = "{parent}"\n'
        )
        port = free_port()
        args = [
            "--nats-url", nats_server.url, "--subject-prefix", n["prefix"],
            "--stream", n["stream"], "--state-bucket", n["bucket"], "--poll", "100ms",
            "--tolerance", "200ms", "--lease-ttl", "1s", "--config", str(path),
            "--status-addr", f"127.0.0.1:{port}",
        ]  # fmt: skip

        def spawn(name: str) -> MonitorProcess:
            mon = MonitorProcess([*args, "--replica-id", name], tmp_path / f"{name}.log")
            monitors.append(mon.start())
            return mon

        first = spawn("m1")
        async with beating(nc, parent, hosts) as live:

            async def all_recorded() -> bool:
                return all([await record(nc, unique, s) for s in [parent, *hosts]])

            await eventually(all_recorded, 20, what="a record for every subject")
            live.clear()  # the rack stops
            await eventually(lambda: webhook_events(rx, parent), 15, what="the uplink's alert")

            async def hosts_past_their_deadline() -> bool:
                rows = await status(port)
                return all(past(rows.get(s), HOST_WINDOW_S + 0.5) for s in hosts)

            await eventually(hosts_past_their_deadline, 20, what="hosts past their own deadline")
            assert [e["subject"] for e in webhook_events(rx)] == [parent]

            live.update([parent, *hosts[2:]])  # the uplink is back; h0 and h1 are not

            async def resolved() -> bool:
                rec = await record(nc, unique, parent)
                return rec is not None and not rec.get("pending") and "back_at" in rec

            await eventually(resolved, 15, what="the uplink's resolve delivered and recorded")
            first.stop(signal.SIGKILL)
            back = await record(nc, unique, parent)
            assert back is not None
            back_at = back["back_at"]
            second = spawn("m2")
            await eventually(lambda: "leads; caught up" in second.text(), 20, what="m2 leads")
            led = time.time()
            assert led < back_at + HOST_WINDOW_S, f"m2 led {led - back_at:.1f}s after the return"

            async def both_alerted() -> list[dict[str, Any]] | None:
                recs = [await record(nc, unique, s) for s in hosts[:2]]
                got = [r for r in recs if r and r.get("alert_active")]
                return got if len(got) == 2 else None

            alerted = await eventually(both_alerted, 20, what="h0 and h1 alert")
            for rec in alerted:
                # A full window (and the tolerance) after the return, though their own
                # deadlines passed long ago and m2 knew only the records.
                assert rec["alert_since"] - back_at >= HOST_WINDOW_S + 0.2, rec["subject"]
            await eventually(
                lambda: len(webhook_events(rx)) == 4, 10, what="the two hosts' alerts delivered"
            )
            told = [(e["event"], e["subject"]) for e in webhook_events(rx)]
            assert sorted(told[2:]) == [("alert", hosts[0]), ("alert", hosts[1])]
            assert told[:2] == [("alert", parent), ("resolved", parent)]


async def test_a_parent_outside_the_prefix_is_a_start_up_warning(
    nats_server: NatsServer, unique: str, tmp_path: Path, monitors: list[MonitorProcess]
) -> None:
    n = names(unique)
    path = tmp_path / "heartbeat.toml"
    path.write_text("[[depends]]\nsubjects = ['>']\non = 'elsewhere.uplink'\n")
    mon = MonitorProcess(
        [
            "--nats-url", nats_server.url, "--subject-prefix", n["prefix"],
            "--stream", n["stream"], "--state-bucket", n["bucket"], "--status-addr", "",
            "--notify-log", "--config", str(path),
        ],
        tmp_path / "monitor.log",
    )  # fmt: skip
    monitors.append(mon.start())
    await eventually(lambda: "caught up" in mon.text(), 20, what="the monitor started")
    assert mon.stop() == 0, mon.text()
    assert (
        f"depends[1].on 'elsewhere.uplink' is not under --subject-prefix '{n['prefix']}'"
        in mon.text()
    )
