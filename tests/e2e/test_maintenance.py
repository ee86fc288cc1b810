"""A [[maintenance]] window through a real monitor process and a real nats-server.

The window is a 6-field cron (seconds first) firing once, a few seconds after the
test starts, for 8 s.  Three subjects beating every 1 s stop half a second into it:
one stays away (it alerts a full window after the end, not before and not in a
burst at the end), one comes back inside the window (nothing is ever sent for it),
and one the window does not cover (it alerts as usual, inside the window).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import signal
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
import pytest
from nats.aio.client import Client as NATS

import heartbeat
from tests.harness import (
    MonitorProcess,
    NatsServer,
    eventually,
    free_port,
    names,
    publish_when_ready,
    recording_receiver,
    run_cli,
    webhook_events,
)

INTERVAL = timedelta(seconds=1)  # the subjects' window: 1 s
TOLERANCE_S, POLL_S = 0.2, 0.1
LEAD_S = 8.0  # from now to the window's start: the monitor starts and leads meanwhile
DURATION_S = 8.0
LATE_SLACK_S = 1.0  # a loaded 2-core machine: delivery and scheduling jitter


@pytest.fixture
def monitors() -> Iterator[list[MonitorProcess]]:
    started: list[MonitorProcess] = []
    yield started
    for m in started:
        if m.running:
            m.stop(signal.SIGKILL)


@contextlib.asynccontextmanager
async def beating(nc: NATS, subject: str, silent: tuple[float, float]) -> AsyncIterator[None]:
    """Beat every 200 ms (interval 1 s), except in ``[silent[0], silent[1])`` (epoch s)."""
    pub = heartbeat.Publisher(nc)

    async def run() -> None:
        while True:
            if not silent[0] <= time.time() < silent[1]:
                await pub.publish(heartbeat.Message(subject=subject, interval=INTERVAL))
            await asyncio.sleep(0.2)  # the agent's cadence

    task = asyncio.create_task(run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def get(session: aiohttp.ClientSession, url: str) -> str:
    async with session.get(url) as r:
        assert r.status == 200, await r.text()
        return await r.text()


async def test_a_window_holds_alerts_until_a_full_window_after_its_end(
    nats_server: NatsServer, nc: NATS, unique: str, tmp_path: Path, monitors: list[MonitorProcess]
) -> None:
    n = names(unique)
    p = n["prefix"]
    gone, back, other = p + "batch.gone", p + "batch.back", p + "web.api"
    start = math.ceil(time.time() + LEAD_S)
    end = start + DURATION_S
    first = datetime.fromtimestamp(start, UTC)
    port = free_port()
    status = f"http://127.0.0.1:{port}"
    async with recording_receiver() as hook, aiohttp.ClientSession() as session:
        path = tmp_path / "heartbeat.toml"
        path.write_text(
            f'[channels.hook]\ntype = "webhook"\nurl = "{hook.url}/hook"\n\n'
            f'[[maintenance]]\nname = "deploy"\nsubjects = ["{p}batch.>"]\n'
            f'schedule = "{first.second} {first.minute} {first.hour} * * *"\n'
            f'duration = "{DURATION_S:g}s"\n'
        )
        args = [
            "--nats-url", nats_server.url, "--subject-prefix", p, "--stream", n["stream"],
            "--state-bucket", n["bucket"], "--poll", f"{POLL_S * 1000:g}ms",
            "--tolerance", f"{TOLERANCE_S * 1000:g}ms", "--lease-ttl", "2s",
            "--status-addr", f"127.0.0.1:{port}", "--replica-id", f"m-{unique}",
            "--config", str(path),
        ]  # fmt: skip
        mon = MonitorProcess(args, tmp_path / "monitor.log")
        monitors.append(mon.start())
        await publish_when_ready(nc, gone, INTERVAL)

        async def leading() -> bool:
            with contextlib.suppress(aiohttp.ClientError, AssertionError):
                return bool(json.loads(await get(session, status + "/")).get("leader"))
            return False

        await eventually(leading, 20, what="the monitor to lead")
        if time.time() > start - 1.0:
            pytest.fail(f"the monitor took too long to start; the window began:\n{mon.text()}")
        stop = start + 0.5
        async with (
            beating(nc, gone, (stop, math.inf)),
            beating(nc, back, (stop, start + 3.0)),
            beating(nc, other, (stop, math.inf)),
        ):
            # Outside the window: alerts as usual, while the window is on.
            await hook.wait_for(1, timeout=stop + 10 - time.time())
            (told,) = webhook_events(hook)
            assert told["subject"] == other and told["event"] == "alert"
            assert time.time() < end, "the covered subjects' checks below need the window on"

            # Inside: tracked and shown as MAINT, in the JSON, the table and /metrics.
            body = json.loads(await get(session, status + "/?state=maint"))
            rows = {r["subject"]: r for r in body["subjects"]}
            assert set(rows) == {gone, back}
            assert rows[gone]["quiet"] == "maint" and rows[gone]["quiet_ref"] == "deploy"
            assert rows[gone]["missing"] is True and rows[gone]["alert_active"] is False
            assert rows[gone]["quiet_until"] == datetime.fromtimestamp(end, UTC).strftime(
                "%Y-%m-%dT%H:%M:%SZ"
            )
            metrics = await get(session, status + "/metrics")
            assert 'nats_heartbeat_quiet_subjects{kind="maint"} 2.0' in metrics
            table = await asyncio.to_thread(
                run_cli, "status", "--url", status, "--state", "maint", timeout=20
            )
            assert table.returncode == 0, table.stderr  # nothing firing among them
            words = {line.split()[2]: line.split()[:2] for line in table.stdout.splitlines()[3:5]}
            assert words[gone] == ["MAINT", "(deploy)"], table.stdout
            assert "quiet until" in table.stdout

            # The window ends with `gone` still missing: it alerts a full window (and the
            # tolerance) after the end, exactly once; `back` came back inside: nothing.
            due = end + INTERVAL.total_seconds() + TOLERANCE_S
            await hook.wait_for(2, timeout=due + 10 - time.time())
            alert = next(r for r in hook.requests if r.json()["subject"] == gone)
            assert due <= alert.at <= due + POLL_S + TOLERANCE_S + LATE_SLACK_S, (
                f"alert {alert.at - end:.2f}s after the window's end, due {due - end:.2f}s"
            )
            assert [e["event"] for e in webhook_events(hook, gone)] == ["alert"]
            assert webhook_events(hook, back) == []
            assert [e["event"] for e in webhook_events(hook, other)] == ["alert"]
            after = json.loads(await get(session, status + "/?state=maint"))
            assert after["subjects"] == []
        assert mon.stop() == 0, mon.text()
    assert "maintenance window deploy:" in mon.text()


WINDOW = """[[maintenance]]
name = "nightly"
subjects = ["heartbeat.batch.>"]
schedule = "0 2 * * SUN"
duration = "2h"
timezone = "Europe/Berlin"
"""


def test_routes_names_the_windows_that_cover_a_subject(tmp_path: Path) -> None:
    path = tmp_path / "heartbeat.toml"
    path.write_text(WINDOW)
    p = run_cli("routes", "--config", str(path), "--notify-log", "--subject", "heartbeat.batch.x")
    assert p.returncode == 0, p.stderr
    (line,) = [x for x in p.stdout.splitlines() if x.startswith("quiet in")]
    assert line.startswith(
        "quiet in maintenance window nightly: '0 2 * * SUN' for 2h0m0s (Europe/Berlin): "
    )
    assert line.endswith(("CET", "CEST")) and ("next from" in line or "on now" in line)
    p = run_cli("routes", "--config", str(path), "--notify-log", "--subject", "heartbeat.web")
    assert p.returncode == 0 and "quiet in" not in p.stdout


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (("2h", "2 hours"), "maintenance[1].duration: '2 hours' is not a duration"),
        (("0 2 * * SUN", "0 2 * *"), "maintenance[1].schedule: '0 2 * *' is not a cron expression"),
        (("Europe/Berlin", "Europe/Nowhere"), "maintenance[1].timezone: 'Europe/Nowhere' is not"),
        (('["heartbeat.batch.>"]', '["a..b"]'), "maintenance[1].subjects[1]: 'a..b' has an empty"),
    ],
)
def test_a_bad_window_stops_the_monitor_with_one_line(
    tmp_path: Path, change: tuple[str, str], message: str
) -> None:
    path = tmp_path / "heartbeat.toml"
    path.write_text(WINDOW.replace(*change))
    p = run_cli("monitor", "--config", str(path), "--notify-log", timeout=20)
    assert p.returncode == 2, p.stderr
    (line,) = p.stderr.splitlines()
    assert line.startswith(f"nats-heartbeat: {path}: ") and message in line
