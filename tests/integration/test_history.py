"""History events on a real nats-server: what a monitor writes, and reading it back."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from datetime import timedelta
from typing import Any

import aiohttp
from nats.aio.client import Client as NATS

import heartbeat
from heartbeat.engine import Pending, Record
from heartbeat.errors import HeartbeatError
from heartbeat.history import Event, HistoryConfig, HistoryQuery, Kind, Result
from heartbeat.history_read import read_history
from heartbeat.history_writer import ensure_events_stream
from heartbeat.notification import EventKind, Notification
from heartbeat.notify.webhook import webhook_name
from heartbeat.retire import retire
from heartbeat.silence_store import SilenceStore
from heartbeat.silences import new_silence
from heartbeat.status import bound_port, make_app, serve
from heartbeat.store import ConfigConflict, StateStore, ensure_stream
from tests.harness import (
    NatsServer,
    Receiver,
    eventually,
    monitor_config,
    names,
    webhook_monitor,
)

MS = timedelta(milliseconds=1)


def history_config(unique: str) -> HistoryConfig:
    return HistoryConfig(stream=f"EV_{unique}", prefix=f"ev{unique}", duplicate_window_s=120.0)


async def events(nc: NATS, cfg: HistoryConfig, pattern: str = ">") -> list[Event]:
    return await read_history(
        nc.jetstream(), cfg, HistoryQuery(pattern=pattern, limit=1000), time.time()
    )


def outline(evs: list[Event]) -> list[tuple[str, ...]]:
    """Each event as (kind or result, notification count): the shape of an incident."""
    out = []
    for e in evs:
        count = (e.notification_id or "").rpartition("-")[2]
        out.append((e.result or "", count) if e.kind == Kind.DELIVERY else (e.kind, count))
    return out


async def test_an_incident_is_recorded_once_each_in_order(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    """Alert (its first round fails: the channel answers 500), repeat, resolved:
    every transition and every outcome once, in order, readable per subject."""
    hist = history_config(unique)
    cfg = dataclasses.replace(
        monitor_config(unique, repeat_every_s=1.5, delivery_deadline_s=0.3), history=hist
    )
    subject = names(unique)["prefix"] + "db.main"
    other = names(unique)["prefix"] + "other"
    receiver.default_status = 500
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, hook):
        async with heartbeat.beating(nc, subject, interval=200 * MS):
            await eventually(lambda: mon.subjects.beat(subject) is not None, what="a beat")

        async def failed_round() -> bool:
            return any(e.result == Result.FAILED for e in await events(nc, hist))

        await eventually(failed_round, what="a failed delivery round")
        receiver.default_status = 200
        await eventually(
            lambda: any(r.json()["event"] == "repeat" for r in receiver.requests[1:]),
            what="a repeat",
        )
        async with heartbeat.beating(nc, subject, interval=200 * MS):
            await eventually(
                lambda: any(r.json()["event"] == "resolved" for r in receiver.requests),
                what="the resolved notice",
            )

        async def settled() -> list[Event] | None:
            got = await events(nc, hist)
            sent = [e for e in got if e.result == Result.SENT]
            return got if len(sent) == 3 else None

        got = await eventually(settled, what="three sent events")
        channel = hook.name

    shape = outline(got)
    failed = [s for s in shape if s == ("failed", "1")]
    assert failed and shape == [
        ("late", ""),
        ("alert", "1"),
        *failed,
        ("sent", "1"),
        ("repeat", "2"),
        ("sent", "2"),
        ("resolved", "3"),
        ("sent", "3"),
    ], shape
    assert len({e.id for e in got}) == len(got)
    assert {e.subject for e in got} == {subject}
    assert all(e.channel == channel for e in got if e.kind == Kind.DELIVERY)
    alert_id = got[0].alert_id
    assert alert_id and all(e.alert_id == alert_id for e in got)
    assert [e.attempt for e in got if e.result == Result.FAILED] == list(range(1, len(failed) + 1))
    assert "500" in (got[2].detail or "")
    assert got[1].detail and got[1].detail.startswith("missed ")
    assert await events(nc, hist, other) == []
    assert [e.kind for e in await events(nc, hist, names(unique)["prefix"] + "db.*")][:2] == [
        "late",
        "alert",
    ]
    written = mon.snapshot().history_events
    assert written.get("alert") == 1 and written.get("delivery") == len(got) - 4


async def test_history_on_the_status_listener(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    """GET /history?subject=&since=&limit=: newest last, bounded, same token rules."""
    hist = history_config(unique)
    cfg = dataclasses.replace(monitor_config(unique), history=hist)
    subject = names(unique)["prefix"] + "web"
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        async with heartbeat.beating(nc, subject, interval=200 * MS):
            await eventually(lambda: mon.subjects.beat(subject) is not None, what="a beat")
        await eventually(
            lambda: len(mon.history.written) >= 2 if mon.history else False, what="events"
        )
        runner = await serve(make_app(mon, token="sekrit", history=mon.read_history), "127.0.0.1:0")
        url = f"http://127.0.0.1:{bound_port(runner)}/history"
        auth = {"Authorization": "Bearer sekrit"}
        try:
            async with aiohttp.ClientSession() as http:

                async def get(query: str, headers: Any = auth) -> tuple[int, Any]:
                    async with http.get(url + query, headers=headers) as resp:
                        body = await resp.json() if resp.status == 200 else await resp.text()
                        return resp.status, body

                status, body = await get(f"?subject={subject}&since=600&limit=10")
                assert status == 200
                assert [e["kind"] for e in body["events"]] == ["late", "alert", "delivery"]
                assert body["events"][2]["result"] == "sent"
                status, body = await get("?limit=1&since=1h")
                assert status == 200 and [e["kind"] for e in body["events"]] == ["delivery"]
                assert (await get(""))[0] == 200
                assert (await get("?subject=nope.>"))[1] == {"events": []}
                assert (await get("", headers={}))[0] == 401
                for bad in ("?limit=0", "?limit=1001", "?since=-5", "?subject=a..b", "?x=1"):
                    assert (await get(bad))[0] == 400, bad
        finally:
            await runner.cleanup()


async def test_a_commit_whose_event_was_lost_is_recorded_by_the_next_leader_once(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    """A leader killed between its commit and its publish: the alert is pending in
    KV but absent from history.  Each new leader publishes it again; the stream keeps
    one.  The channel keeps failing, so the delivery stays pending across leaders."""
    hist = history_config(unique)
    cfg = dataclasses.replace(monitor_config(unique, delivery_deadline_s=0.2), history=hist)
    subject = names(unique)["prefix"] + "lost"
    receiver.default_status = 503
    js = nc.jetstream()
    await ensure_stream(js, cfg.store)
    await heartbeat.Publisher(nc).publish(
        heartbeat.Message(subject=subject, interval=timedelta(hours=1))
    )
    now = time.time() + 0.5  # past the beat's server time: the alert stands
    n = Notification(
        event=EventKind.ALERT, subject=subject, description=subject, host="h",
        last_seen=now, interval_ns=3600 * 10**9, window_ns=3600 * 10**9,
        missed_for_ns=10**10, miss_count=0, alert_id="dead0000beef0000",
        notification_id="dead0000beef0000-1", created_at=now - 2, monitor="gone",
    )  # fmt: skip
    rec = Record(
        subject=subject, interval_ns=3600 * 10**9, last_seen=now, alert_active=True,
        alert_id=n.alert_id, alert_since=now - 2, alert_last_seen=now, notify_count=1,
        last_notified=now - 2, updated_by="gone",
        pending=[Pending(notification=n, channels=[webhook_name(receiver.url), "removed"])],
    )  # fmt: skip
    store = await StateStore.open(js, cfg.store)
    await store.put(rec, None)
    for replica in ("first", "second"):
        rcfg = dataclasses.replace(cfg, replica_id=replica)
        async with webhook_monitor(nats_server.url, rcfg, receiver) as (mon, _):

            async def failed_here(replica: str = replica) -> bool:
                got = await events(nc, hist)
                return any(e.result == Result.FAILED and e.monitor == replica for e in got)

            await eventually(failed_here, what=f"a failed round by {replica}")
            assert mon.history is not None and mon.history.duplicates >= (replica == "second")
    got = await events(nc, hist)
    assert [e.kind for e in got if e.kind != Kind.DELIVERY] == ["late", "alert"]
    assert got[1].notification_id == n.notification_id and got[1].monitor == "gone"
    assert {e.monitor for e in got if e.result == Result.FAILED} == {"first", "second"}
    (dropped,) = [e for e in got if e.result == Result.DROPPED]
    assert dropped.channel == "removed" and dropped.detail == "channel no longer configured"
    rec_now = (await store.get(subject) or (None, 0))[0]
    assert rec_now is not None and rec_now.pending  # still owed: never crossed off


async def test_retiring_a_subject_is_recorded(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    hist = history_config(unique)
    cfg = dataclasses.replace(monitor_config(unique), history=hist)
    subject = names(unique)["prefix"] + "old"
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        await heartbeat.Publisher(nc).publish(
            heartbeat.Message(subject=subject, interval=timedelta(hours=1))
        )
        await eventually(lambda: mon.subjects.record(subject) is not None, what="a record")
        rev = mon.subjects.get(subject).rev  # type: ignore[union-attr]
        js = nc.jetstream()
        await retire(js, await StateStore.open(js, cfg.store), subject)

        async def retired() -> list[Event]:
            return [e for e in await events(nc, hist) if e.kind == Kind.RETIRED]

        (e,) = await eventually(retired, what="a retired event")
    assert e.subject == subject and e.detail == "record deleted"
    assert e.id == f"retired:{subject}:{rev}"


async def test_reading_a_missing_stream_fails_cleanly(nc: NATS, unique: str) -> None:
    hist = history_config(unique)
    try:
        await events(nc, hist)
    except HeartbeatError as e:
        assert hist.stream in str(e)
    else:
        raise AssertionError("reading a missing stream should fail")
    await asyncio.sleep(0)


async def test_the_events_stream_follows_the_max_age_and_refuses_a_stranger(
    nc: NATS, unique: str
) -> None:
    js = nc.jetstream()
    hist = dataclasses.replace(history_config(unique), max_age_s=3600.0)
    assert await ensure_events_stream(js, hist) == 120.0
    info = await js.stream_info(hist.stream)
    assert info.config.subjects == [hist.filter_subject] and info.config.max_age == 3600.0
    longer = dataclasses.replace(hist, max_age_s=7200.0)
    assert await ensure_events_stream(js, longer) == 120.0
    assert (await js.stream_info(hist.stream)).config.max_age == 7200.0
    await js.add_stream(name=f"OTHER_{unique}", subjects=[f"other{unique}.>"])
    stranger = dataclasses.replace(hist, stream=f"OTHER_{unique}")
    try:
        await ensure_events_stream(js, stranger)
    except ConfigConflict as e:
        assert "not a history stream" in str(e)
    else:
        raise AssertionError("a stream for other subjects must be refused")


async def test_a_group_records_each_members_outcome(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    """Grouped in a storm: one request, and per member its own ``sent`` event."""
    hist = history_config(unique)
    cfg = dataclasses.replace(monitor_config(unique, group_over=0, group_wait_s=0.3), history=hist)
    prefix = names(unique)["prefix"]
    subjects = [prefix + "rack.a", prefix + "rack.b"]
    async with webhook_monitor(nats_server.url, cfg, receiver):
        for s in subjects:
            await heartbeat.Publisher(nc).publish(heartbeat.Message(subject=s, interval=200 * MS))
        await receiver.wait_for(1)

        async def both_sent() -> list[Event] | None:
            got = await events(nc, hist, prefix + "rack.*")
            return got if sum(e.result == Result.SENT for e in got) == 2 else None

        got = await eventually(both_sent, what="a sent event per member")
    assert receiver.requests[0].json()["event"] == "group"
    assert sorted(e.subject for e in got if e.kind == Kind.ALERT) == subjects
    sent = [e for e in got if e.result == Result.SENT]
    assert sorted(e.subject for e in sent) == subjects
    assert all(e.detail and "(in group-" in e.detail for e in sent)
    assert {e.notification_id for e in sent} == {
        e.notification_id for e in got if e.kind == "alert"
    }


async def test_an_alert_kept_back_by_a_silence_is_recorded_late_then_silenced(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    """A silenced subject that stops: nobody is told, and the history says it went
    late and that the silence kept its alert back (once, whoever leads)."""
    hist = history_config(unique)
    bucket = f"SIL_{unique}"
    cfg = dataclasses.replace(monitor_config(unique, silence_bucket=bucket), history=hist)
    subject = names(unique)["prefix"] + "db.main"
    store = await SilenceStore.open(nc.jetstream(), bucket)
    now = time.time()
    silence = new_silence(
        "s0123456789a", "silence", [subject], starts=now, ends=now + 600,
        reason="upgrade", by="ops", created=now,
    )  # fmt: skip
    await store.write(silence, 0, now)
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        async with heartbeat.beating(nc, subject, interval=200 * MS):
            await eventually(lambda: mon.subjects.beat(subject) is not None, what="a beat")

        async def kept_back() -> list[Event] | None:
            got = await events(nc, hist)
            return got if any(e.kind == Kind.SILENCED for e in got) else None

        await eventually(kept_back, what="the silenced event")
        assert mon.history is not None and await mon.history.flush(5.0)
        got = await events(nc, hist)
    assert [e.kind for e in got] == ["late", "silenced"], got
    assert got[1].detail == "alert kept back (silenced by s0123456789a)"
    assert receiver.requests == []
