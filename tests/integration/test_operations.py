"""Operations: metrics, probes, the status token, and retiring subjects."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

import aiohttp
from nats.aio.client import Client as NATS
from prometheus_client.parser import text_string_to_metric_families

import heartbeat
from heartbeat.engine import Record
from heartbeat.metrics import render
from heartbeat.notify import WebhookNotifier
from heartbeat.status import bound_port, make_app, serve
from heartbeat.store import encode_record
from tests.harness import (
    NatsServer,
    Receiver,
    eventually,
    monitor_config,
    names,
    run_cli,
    running_monitor,
    webhook_events,
    webhook_monitor,
)

MS = timedelta(milliseconds=1)


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_move_with_beats_rejections_and_notifications(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    cfg = monitor_config(unique, poll_s=0.05, tolerance_s=0.05)
    prefix = names(unique)["prefix"]
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, hook):
        before = samples(render(mon.snapshot()))
        assert before[("nats_heartbeat_heartbeats_received_total", ())] == 0
        await eventually(mon.leading, what="leadership")
        await heartbeat.Publisher(nc).publish(
            heartbeat.Message(subject=prefix + "m", interval=100 * MS)
        )
        await nc.jetstream().publish(prefix + "bad", b"{")
        await receiver.wait_for(1)
        await eventually(lambda: not mon.subjects.pending, what="delivery recorded")
        after = samples(render(mon.snapshot()))
    assert after[("nats_heartbeat_heartbeats_received_total", ())] == 1
    assert after[("nats_heartbeat_invalid_heartbeats_total", (("reason", "malformed"),))] == 1
    assert after[("nats_heartbeat_subjects", (("state", "alert"),))] == 1
    key = (
        "nats_heartbeat_notifications_total",
        (("channel", hook.name), ("kind", "alert"), ("result", "ok")),
    )
    assert after[key] == 1
    assert after[("nats_heartbeat_leader", ())] == 1
    assert after[("nats_heartbeat_lease_changes_total", ())] == 1
    assert after[("nats_heartbeat_kv_writes_total", ())] >= 2  # create + alert (+ delivered)
    assert after[("nats_heartbeat_evaluation_seconds_count", ())] > 0


async def test_records_that_do_not_describe_a_subject_cannot_enter_the_table(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    cfg = monitor_config(unique, poll_s=0.05, tolerance_s=0.05)
    prefix, bucket = names(unique)["prefix"], names(unique)["bucket"]
    odd, good, named = prefix + "odd#key", prefix + "good", prefix + "named"
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        js = nc.jetstream()
        stale = Record(subject=odd, interval_ns=100_000_000, last_seen=1.0)
        await js.publish(f"$KV.{bucket}.{odd}", encode_record(stale))
        # A record whose body names another (invalid) subject: the key is the subject.
        mislabelled = Record(subject=odd, interval_ns=3600 * 10**9, last_seen=time.time())
        await js.publish(f"$KV.{bucket}.{named}", encode_record(mislabelled))
        await heartbeat.Publisher(nc).publish(
            heartbeat.Message(subject=good, interval=timedelta(seconds=60))
        )
        # The table never holds the odd key, so a beat on it still gets the subject check.
        beat = heartbeat.Message(subject=odd, interval=MS, generated_at=datetime.now(UTC))
        await js.publish(odd, heartbeat.encode(beat))
        await eventually(lambda: mon.ingestor.rejected["bad_subject"] == 1, what="rejected")
        await eventually(lambda: mon.subjects.record(good) is not None, what="good subject tracked")
        await eventually(lambda: mon.subjects.ignored_records == 1, what="record ignored")
        await eventually(lambda: mon.subjects.record(named) is not None, what="mislabelled record")
        got = samples(render(mon.snapshot()))
        assert odd not in mon.subjects.tracks
        assert mon.subjects.record(named).subject == named  # type: ignore[union-attr]
    assert got[("nats_heartbeat_ignored_records_total", ())] == 1
    assert got[("nats_heartbeat_subjects", (("state", "ok"),))] == 2
    assert receiver.requests == []  # the odd record, long silent, alerts nobody


async def test_probes_token_and_metrics_endpoint(
    nats_server: NatsServer, receiver: Receiver, unique: str
) -> None:
    cfg = monitor_config(unique)
    async with (
        aiohttp.ClientSession() as session,
        running_monitor(nats_server.url, cfg, [WebhookNotifier(session, receiver.url)]) as mon,
    ):
        runner = await serve(make_app(mon, metrics=mon.metrics, token="s3cret"), "127.0.0.1:0")
        base = f"http://127.0.0.1:{bound_port(runner)}"
        try:
            async with session.get(base + "/healthz") as r:
                assert r.status == 200
            async with session.get(base + "/readyz") as r:
                assert r.status == 200
            for path in ("/", "/metrics"):
                async with session.get(base + path) as r:
                    assert r.status == 401
                async with session.get(base + path, headers={"Authorization": "Bearer wrong"}) as r:
                    assert r.status == 401
            auth = {"Authorization": "Bearer s3cret"}
            async with session.get(base + "/metrics", headers=auth) as r:
                assert r.status == 200
                text = await r.read()
            assert b"nats_heartbeat_leader" in text
            async with session.get(base + "/", headers=auth) as r:
                assert r.status == 200
                assert (await r.json())["monitor"] == "test-monitor"
        finally:
            await runner.cleanup()


async def test_readyz_not_ready_before_catch_up_and_while_nats_is_gone(
    nats_factory: object, receiver: Receiver, unique: str
) -> None:
    server = nats_factory()  # type: ignore[operator]
    cfg = monitor_config(unique, poll_s=0.05)
    async with webhook_monitor(server.url, cfg, receiver) as (mon, _):
        assert mon.ready() == (True, "ok")
        server.stop()
        await eventually(lambda: not mon.ready()[0], what="not ready")
        assert mon.ready()[1] == "NATS disconnected"
        server.restart()
        await eventually(lambda: mon.ready()[0], timeout=20, what="ready again")


async def test_readyz_false_before_start() -> None:
    from heartbeat.monitor import Monitor

    mon = Monitor(monitor_config("x"), [])
    assert mon.ready() == (False, "catching up")


async def _start_alerting(nc: NATS, mon: object, receiver: Receiver, subject: str) -> None:
    await eventually(mon.leading, what="leadership")  # type: ignore[attr-defined]
    await heartbeat.Publisher(nc).publish(heartbeat.Message(subject=subject, interval=100 * MS))
    await eventually(lambda: len(webhook_events(receiver, subject)) >= 2, what="alert + repeat")


async def test_retire_cli_stops_a_missing_subject(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    n = names(unique)
    subject = n["prefix"] + "retired"
    cfg = monitor_config(unique, poll_s=0.05, tolerance_s=0.05, repeat_every_s=0.3)
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        await _start_alerting(nc, mon, receiver, subject)
        done = await asyncio.to_thread(
            run_cli, "retire", subject, "--nats-url", nats_server.url,
            "--stream", n["stream"], "--state-bucket", n["bucket"],
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert f"retired {subject}" in done.stdout
        await eventually(lambda: mon.subjects.record(subject) is None, what="record gone")
        count = len(webhook_events(receiver, subject))
        await asyncio.sleep(1.0)  # three repeat periods: nothing more may arrive
        assert len(webhook_events(receiver, subject)) == count
        assert subject not in {s.subject for s in mon.report().subjects}
        again = await asyncio.to_thread(
            run_cli, "retire", subject, "--nats-url", nats_server.url,
            "--stream", n["stream"], "--state-bucket", n["bucket"],
        )  # fmt: skip
        assert again.returncode == 0
        assert "nothing to retire" in again.stdout


async def test_kv_delete_retires_a_subject(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    n = names(unique)
    subject = n["prefix"] + "kvdel"
    cfg = monitor_config(unique, poll_s=0.05, tolerance_s=0.05, repeat_every_s=0.3)
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        await _start_alerting(nc, mon, receiver, subject)
        kv = await nc.jetstream().key_value(n["bucket"])
        await kv.delete(subject)  # what `nats kv del` does
        await eventually(lambda: subject not in mon.subjects.tracks)
        count = len(webhook_events(receiver, subject))
        await asyncio.sleep(1.0)
        assert len(webhook_events(receiver, subject)) == count
        info = await nc.jetstream().stream_info(n["stream"], subjects_filter=subject)
        assert not info.state.subjects, "the leader purged the stream subject too"


async def test_stream_purge_retires_a_subject(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    n = names(unique)
    subject = n["prefix"] + "purged"
    cfg = monitor_config(
        unique, poll_s=0.05, tolerance_s=0.05, repeat_every_s=0.3, reconcile_every_s=0.2
    )
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        await _start_alerting(nc, mon, receiver, subject)
        await nc.jetstream().purge_stream(n["stream"], subject=subject)  # `nats stream purge`
        await eventually(lambda: mon.subjects.record(subject) is None, what="reconciled")
        count = len(webhook_events(receiver, subject))
        await asyncio.sleep(1.0)
        assert len(webhook_events(receiver, subject)) == count
        kv = await nc.jetstream().key_value(n["bucket"])
        assert subject not in await kv.keys()
