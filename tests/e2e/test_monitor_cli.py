"""The monitor as a process: restarts keep alert state and repeat timing."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

import heartbeat
from tests.harness import (
    MonitorProcess,
    NatsServer,
    Receiver,
    eventually,
    free_port,
    names,
    publish_when_ready,
    run_cli,
    webhook_events,
)

MS = timedelta(milliseconds=1)


@pytest.fixture
def monitor_process(tmp_path: Path) -> Iterator[type[MonitorProcess]]:
    started: list[MonitorProcess] = []

    class Tracked(MonitorProcess):
        def start(self) -> MonitorProcess:
            started.append(self)
            return super().start()

    yield Tracked
    for m in started:
        if m.running:
            m.stop(signal.SIGKILL)


def monitor_args(
    unique: str, url: str, receiver: Receiver, status_port: int, **kw: str
) -> list[str]:
    n = names(unique)
    args = {
        "--nats-url": url,
        "--subject-prefix": n["prefix"],
        "--stream": n["stream"],
        "--state-bucket": n["bucket"],
        "--poll": "100ms",
        "--tolerance": "200ms",
        "--repeat-every": "2s",
        "--webhook-url": receiver.url,
        "--status-addr": f"127.0.0.1:{status_port}",
        "--replica-id": f"m-{unique}",
        **kw,
    }
    return [x for kv in args.items() for x in kv]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "kill-9"])
async def test_restart_between_repeats_keeps_schedule(
    nats_server: NatsServer,
    nc: NATS,
    receiver: Receiver,
    unique: str,
    tmp_path: Path,
    monitor_process: type[MonitorProcess],
    sig: int,
) -> None:
    subject = names(unique)["prefix"] + "restart"
    args = monitor_args(unique, nats_server.url, receiver, free_port())
    first = monitor_process(args, tmp_path / "m1.log").start()
    # One beat (retried until the monitor has created the stream), then silence.
    await publish_when_ready(nc, subject, timeout=15)
    alert = (await receiver.wait_for(1))[0]
    assert alert.json()["event"] == "alert"
    await asyncio.sleep(0.6)  # well between the alert and the first repeat
    first.stop(sig)
    restarted_at = time.time()
    second = monitor_process(args, tmp_path / "m2.log").start()
    got = await receiver.wait_for(2, timeout=10)
    repeat = got[1]
    assert repeat.json()["event"] == "repeat", [r.json()["event"] for r in got]
    # Next repeat at last_notified + repeat_every: ~2 s after the alert, not at restart
    # and not a full period after it.
    since_alert = repeat.at - alert.at
    assert 1.85 < since_alert < 2.0 + 0.1 + 0.4, since_alert
    assert repeat.at - restarted_at < 2.0
    # Resume: exactly one resolved.
    await heartbeat.Publisher(nc).publish(
        heartbeat.Message(subject=subject, interval=timedelta(hours=1))
    )
    await eventually(lambda: any(e["event"] == "resolved" for e in webhook_events(receiver)))
    await asyncio.sleep(0.5)
    assert second.stop() == 0
    events = webhook_events(receiver)
    kinds = [e["event"] for e in events]
    assert kinds.count("alert") == 1, kinds
    assert kinds.count("resolved") == 1, kinds
    ids = [e["notification_id"] for e in events]
    assert len(ids) == len(set(ids)), ids


async def test_status_cli_against_a_running_monitor(
    nats_server: NatsServer,
    nc: NATS,
    receiver: Receiver,
    unique: str,
    tmp_path: Path,
    monitor_process: type[MonitorProcess],
) -> None:
    prefix = names(unique)["prefix"]
    port = free_port()
    mon = monitor_process(
        monitor_args(unique, nats_server.url, receiver, port, **{"--repeat-every": "1h"}),
        tmp_path / "m.log",
    ).start()
    url = f"http://127.0.0.1:{port}/"
    async with heartbeat.beating(nc, prefix + "ok", interval=200 * MS, ack=False):
        await publish_when_ready(nc, prefix + "ok", timeout=15)

        async def status_ok() -> subprocess.CompletedProcess[str] | None:
            got = await _status(url)
            return got if got.returncode != 2 and "OK" in got.stdout else None

        status = await eventually(status_ok, 30, "a status table with OK", every=0.1)
        assert status.returncode == 0, status.stdout + status.stderr
        assert "0 alert(s) firing across 1 subject(s)" in status.stdout
        await heartbeat.Publisher(nc).publish(
            heartbeat.Message(subject=prefix + "gone", interval=200 * MS)
        )
        await receiver.wait_for(1)
        status = await _status(url)
        assert status.returncode == 1, status.stdout + status.stderr
        assert "ALERT!" in status.stdout
        assert "1 alert(s) firing across 2 subject(s)" in status.stdout
        raw = await _status(url, "--json")
        report = json.loads(raw.stdout)
        assert {s["subject"] for s in report["subjects"]} == {prefix + "ok", prefix + "gone"}
    assert mon.stop() == 0


async def _status(url: str, *extra: str) -> subprocess.CompletedProcess[str]:
    done: subprocess.CompletedProcess[str] = await asyncio.to_thread(
        run_cli, "status", "--url", url, *extra, timeout=20
    )
    return done
