"""The monitor's job rules end to end: ``nats-heartbeat run`` as a real process, a real
nats-server, a monitor with a webhook to a recording receiver.  Nothing is mocked; every
wait is for an event, with a bound."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from heartbeat.jobrules import next_run
from heartbeat.monitor import Monitor
from tests.harness import (
    NatsServer,
    Receiver,
    eventually,
    monitor_config,
    names,
    run_cli,
    webhook_events,
    webhook_monitor,
)

POLL_S = 0.1
TOLERANCE_S = 0.2


def run(url: str, subject: str, *args: str) -> Any:
    return run_cli("run", "--nats-url", url, "--subject", subject, *args)


def events(receiver: Receiver, subject: str) -> list[str]:
    return [b["event"] for b in webhook_events(receiver, subject)]


def seen_at(mon: Monitor, subject: str) -> float:
    beat = mon.subjects.beat(subject)
    assert beat is not None
    return beat.last_seen


async def test_a_failed_run_alerts_at_once_and_a_later_success_resolves(
    nats_server: NatsServer, receiver: Receiver, unique: str
) -> None:
    cfg = monitor_config(unique, poll_s=POLL_S, tolerance_s=TOLERANCE_S)
    subject = names(unique)["prefix"] + "backup"
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        done = await asyncio.to_thread(
            run, nats_server.url, subject, "--interval", "1h", "--", "false"
        )
        assert done.returncode == 1
        got = await receiver.wait_for(1)
        body = got[0].json()
        assert (body["event"], body["subject"], body["exit_code"]) == ("failed", subject, 1)
        assert "run_id" in body and "duration" in body
        assert got[0].at - seen_at(mon, subject) <= POLL_S + 1.0
        ok = await asyncio.to_thread(
            run, nats_server.url, subject, "--interval", "1h", "--", "true"
        )
        assert ok.returncode == 0
        await receiver.wait_for(2)
        resolved = webhook_events(receiver, subject)[1]
        assert resolved["event"] == "resolved" and resolved["alert_id"] == body["alert_id"]
        assert resolved["exit_code"] == 0
        report = mon.report().subjects[0]
        assert report.last_run == "success" and report.job_alert is None


async def test_a_run_past_max_runtime_alerts_once_and_its_end_resolves(
    nats_server: NatsServer, receiver: Receiver, unique: str
) -> None:
    cfg = monitor_config(unique, poll_s=POLL_S, tolerance_s=TOLERANCE_S)
    subject = names(unique)["prefix"] + "slow"
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        args = ("--interval", "1h", "--max-runtime", "1s", "--", "sleep", "3")
        job = asyncio.create_task(asyncio.to_thread(run, nats_server.url, subject, *args))
        got = await receiver.wait_for(1, timeout=5)
        body = got[0].json()
        assert body["event"] == "running_long" and body["max_runtime"] == "1s"
        assert mon.report().subjects[0].job_alert == "running_long"
        assert (await job).returncode == 0
        await eventually(lambda: len(receiver.requests) >= 2, timeout=5, what="resolved")
        assert events(receiver, subject) == ["running_long", "resolved"]  # once, then resolved
        assert webhook_events(receiver, subject)[1]["alert_id"] == body["alert_id"]


async def test_a_missed_scheduled_run_alerts_at_its_time_plus_grace(
    nats_server: NatsServer, receiver: Receiver, unique: str
) -> None:
    cfg = monitor_config(unique, poll_s=POLL_S, tolerance_s=TOLERANCE_S)
    subject = names(unique)["prefix"] + "cron"
    schedule = "*/5 * * * * *"  # every 5 s (seconds first): the job runs once, then never
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        args = ("--schedule", schedule, "--grace", "1s", "--", "true")
        assert (await asyncio.to_thread(run, nats_server.url, subject, *args)).returncode == 0
        await eventually(lambda: mon.subjects.record(subject) is not None, what="record")
        last = seen_at(mon, subject)
        # The run due next: the first scheduled time past the success (a success up to
        # half a period early counts as that run), then the 1 s grace.
        scheduled = next_run(schedule, "", last + 2.5)
        assert scheduled is not None and scheduled % 5 == 0 and scheduled > last
        due = scheduled + 1.0
        assert mon.report().subjects[0].next_run_due is not None
        got = await receiver.wait_for(1, timeout=15)
        body = got[0].json()
        assert body["event"] == "alert" and body["subject"] == subject
        assert due + TOLERANCE_S <= got[0].at <= due + TOLERANCE_S + POLL_S + 1.0


async def test_a_restarted_monitor_does_not_send_a_job_alert_again(
    nats_server: NatsServer, receiver: Receiver, unique: str
) -> None:
    """The failed alert is committed in the record; a new monitor (a restart, or a
    failover) holds it and the stream's last beat, and decides nothing new."""
    cfg = monitor_config(unique, poll_s=POLL_S, tolerance_s=TOLERANCE_S)
    subject = names(unique)["prefix"] + "once"
    async with webhook_monitor(nats_server.url, cfg, receiver):
        done = await asyncio.to_thread(
            run, nats_server.url, subject, "--interval", "1h", "--", "false"
        )
        assert done.returncode == 1
        await receiver.wait_for(1)
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        await eventually(mon.leading, what="leadership")
        # Its first ticks as leader evaluate the subject (new to its table: dirty).
        await eventually(lambda: mon.counters.evaluations > 0, what="an evaluation")
        rec = mon.subjects.record(subject)
        assert rec is not None and rec.job is not None and rec.job.alert == "failed"
        assert not rec.pending and events(receiver, subject) == ["failed"]
        ok = await asyncio.to_thread(
            run, nats_server.url, subject, "--interval", "1h", "--", "true"
        )
        assert ok.returncode == 0
        await receiver.wait_for(2)
        assert events(receiver, subject) == ["failed", "resolved"]


async def test_status_shows_the_next_run_due_in_the_jobs_zone(
    nats_server: NatsServer, receiver: Receiver, unique: str
) -> None:
    from heartbeat.status import bound_port, make_app, serve

    cfg = monitor_config(unique, poll_s=POLL_S, tolerance_s=TOLERANCE_S)
    subject = names(unique)["prefix"] + "nightly"
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        runner = await serve(make_app(mon), "127.0.0.1:0")
        try:
            args = ("--schedule", "0 3 * * *", "--timezone", "Europe/Berlin", "--", "true")
            assert (await asyncio.to_thread(run, nats_server.url, subject, *args)).returncode == 0
            await eventually(lambda: mon.subjects.record(subject) is not None, what="record")
            url = f"http://127.0.0.1:{bound_port(runner)}/"
            shown = await asyncio.to_thread(run_cli, "status", "--url", url)
        finally:
            await runner.cleanup()
    assert shown.returncode == 0, shown.stderr
    row = next(line for line in shown.stdout.splitlines() if subject in line)
    assert re.search(r"OK .* next run due 03:00 CES?T, last run ok in \S+$", row), row
