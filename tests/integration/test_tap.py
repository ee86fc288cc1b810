"""The tap (heartbeat.ingest): a core subscription that makes new subjects known as
they are published, while the stream's copy stays what is decided on."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta

from nats.aio.client import Client as NATS

import heartbeat
from heartbeat.monitor import Monitor
from tests.harness import NatsServer, eventually, monitor_config, names, running_monitor

HOUR = timedelta(hours=1)


def beat(subject: str) -> bytes:
    msg = heartbeat.Message(subject=subject, interval=HOUR, generated_at=datetime.now(UTC))
    return heartbeat.encode(msg)


async def tapping_without_stream(mon: Monitor) -> None:
    """The tap subscribed and the stream's feed stopped: what is known now came by the tap."""
    ingestor = mon.parts.ingestor
    await eventually(lambda: ingestor.tapping, what="the tap subscribed")
    assert mon.connection is not None
    await mon.connection.flush()  # the server has the subscription
    await ingestor.feed.stop()


async def test_a_new_subject_is_known_from_the_tap_and_its_stream_copy_then_decides(
    nats_server: NatsServer, nc: NATS, unique: str
) -> None:
    prefix = names(unique)["prefix"]
    new = prefix + "svc.new"
    async with running_monitor(nats_server.url, monitor_config(unique), []) as mon:
        await tapping_without_stream(mon)
        await nc.publish(new, beat(new))
        await nc.flush()
        await eventually(lambda: mon.subjects.get(new) is not None, what="known from the tap")
        assert new in mon.subjects.tapped and mon.parts.ingestor.tapped == 1
        assert mon.snapshot().tapped == 1  # nats_heartbeat_tapped_subjects_total
        assert mon.parts.ingestor.accepted == 0  # counted once, when the stream's copy comes
        assert [s.subject for s in mon.report().subjects] == [new]
        tapped = mon.subjects.get(new)
        assert tapped is not None and tapped.beat is not None
        was = tapped.beat
        await mon.parts.ingestor.feed.start()
        await eventually(lambda: not mon.subjects.tapped, what="the stream's copy")
        track = mon.subjects.get(new)
        assert track is not None and track.beat is not None and track.beat is not was
        assert mon.parts.ingestor.accepted == 1


async def test_the_tap_leaves_known_subjects_and_bad_beats_to_the_stream(
    nats_server: NatsServer, nc: NATS, unique: str
) -> None:
    prefix = names(unique)["prefix"]
    known, bad, marker = prefix + "svc.known", prefix + "svc.bad", prefix + "svc.marker"
    job = prefix + "svc.job"
    start = heartbeat.Message(
        subject=job, interval=HOUR, kind="start", run_id="r1", generated_at=datetime.now(UTC)
    )
    async with running_monitor(nats_server.url, monitor_config(unique), []) as mon:
        await nc.publish(known, beat(known))
        await nc.flush()
        await eventually(lambda: mon.parts.ingestor.accepted == 1, what="the first beat")
        first = mon.subjects.get(known)
        assert first is not None and first.beat is not None
        before, tapped = first.beat, mon.parts.ingestor.tapped
        await tapping_without_stream(mon)
        await nc.publish(known, beat(known))
        await nc.publish(bad, b'{"subject": "elsewhere", "interval": "1h"}')
        await nc.publish(bad + ".big", b"x" * 9000)  # past --max-payload
        await nc.publish(job, heartbeat.encode(start))  # a job's runs fold from the stream
        await nc.publish(marker, beat(marker))  # same connection: it comes last
        await nc.flush()
        await eventually(lambda: mon.subjects.get(marker) is not None, what="the marker")
        assert first.beat is before  # the stream's copy will decide
        assert mon.subjects.get(bad) is None and mon.subjects.get(bad + ".big") is None
        assert mon.subjects.get(job) is None
        assert mon.parts.ingestor.tapped == tapped + 1  # the marker alone came by the tap
        assert not mon.parts.ingestor.rejected  # counted when the stream's copies come
        await mon.parts.ingestor.feed.start()
        await eventually(
            lambda: sum(mon.parts.ingestor.rejected.values()) == 2, what="rejected once each"
        )
        await eventually(lambda: mon.subjects.get(job) is not None, what="the job's start")
        await eventually(lambda: first.beat is not before, what="the known subject's beat")


async def test_without_the_tap_new_subjects_wait_for_the_stream(
    nats_server: NatsServer, nc: NATS, unique: str
) -> None:
    prefix = names(unique)["prefix"]
    new = prefix + "svc.new"
    async with running_monitor(nats_server.url, monitor_config(unique, tap=False), []) as mon:
        assert not mon.parts.ingestor.tapping
        started = time.monotonic()
        await nc.publish(new, beat(new))
        await nc.flush()
        await eventually(lambda: mon.subjects.get(new) is not None, what="known from the stream")
        assert mon.parts.ingestor.tapped == 0 and not mon.subjects.tapped
        assert not mon.parts.ingestor.tapping and time.monotonic() - started < 10


async def test_hostile_messages_on_the_tap_change_nothing_and_stop_nothing(
    nats_server: NatsServer, nc: NATS, unique: str
) -> None:
    prefix = names(unique)["prefix"]
    marker = prefix + "svc.after"
    async with running_monitor(nats_server.url, monitor_config(unique), []) as mon:
        await tapping_without_stream(mon)
        # Raw protocol, for what nats-py's client refuses to send: a subject that is not
        # UTF-8, header names with spaces, non-ASCII values, a status line on a core message.
        reader, writer = await asyncio.open_connection("127.0.0.1", nats_server.port)
        await reader.readline()  # INFO
        writer.write(b'CONNECT {"verbose":false,"headers":true}\r\n')
        p = prefix.encode()
        writer.write(b"PUB " + p + b"\xff\xfe 2\r\n{}\r\n")
        for name, hdr in [
            (
                b"svc.hdr",
                b"NATS/1.0\r\nBad Name: x\r\nNats-Msg-Id: \xc3\xa9\xff\r\nnocolon\r\n\r\n",
            ),
            (b"svc.status", b"NATS/1.0 100 Idle Heartbeat\r\n\r\n"),
        ]:
            body = beat((p + name).decode())
            size = f"{len(hdr)} {len(hdr) + len(body)}".encode()
            writer.write(b"HPUB " + p + name + b" " + size + b"\r\n" + hdr + body + b"\r\n")
        writer.write(b"PING\r\n")
        await writer.drain()
        while not (line := await reader.readline()).startswith(b"PONG"):
            assert not line.startswith(b"-ERR"), line
        writer.close()
        await nc.publish(prefix + "svc.huge", b"x" * (int(nc.max_payload) - 64))
        await nc.publish(prefix + "svc.deep", b"[" * 5000 + b"]" * 5000)
        await nc.publish(marker, beat(marker))
        await nc.flush()
        await eventually(lambda: mon.subjects.get(marker) is not None, what="the marker")
        known = {t.subject for t in mon.subjects}
        # A beat with odd headers is still a beat, by either path.
        assert known == {prefix + "svc.hdr", prefix + "svc.status", marker}
        assert mon.connection is not None and mon.connection.is_connected
