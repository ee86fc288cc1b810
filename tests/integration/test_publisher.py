"""The publisher library against a real nats-server: Publisher, beating(), beat_once()."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta

import pytest
from nats.aio.client import Client as NATS

import heartbeat
from heartbeat import Message, Publisher
from tests.harness import BeatRecorder, NatsServer, eventually, free_port

MS = timedelta(milliseconds=1)


@pytest.fixture
async def stream(nc: NATS, unique: str) -> AsyncIterator[tuple[str, str]]:
    """A JetStream stream of this test only: ``(name, subject_base)``, capturing ``base.>``."""
    name, base = f"HB_{unique}", f"hb{unique}"
    js = nc.jetstream()
    await js.add_stream(name=name, subjects=[f"{base}.>"])
    yield name, base
    await js.delete_stream(name)


async def last_beat(nc: NATS, stream: str, subject: str) -> tuple[str, bytes]:
    """The NATS subject and payload of the last message the stream holds on ``subject``."""
    raw = await nc.jetstream().get_last_msg(stream, subject)
    assert raw.subject is not None and raw.data is not None
    return raw.subject, raw.data


# --- Publisher ---------------------------------------------------------------------------------


async def test_acked_publish_lands_in_stream(nc: NATS, stream: tuple[str, str]) -> None:
    name, base = stream
    subject = f"{base}.api"
    before = datetime.now(UTC)

    sent = await Publisher(nc).publish(Message(subject=subject, interval=100 * MS))

    nats_subject, data = await last_beat(nc, name, subject)
    got = heartbeat.decode(data)
    assert nats_subject == subject
    assert got == sent
    assert got.subject == subject
    assert got.host == socket.gethostname()
    assert got.generated_at is not None
    assert got.generated_at.utcoffset() == timedelta(0)
    assert before - timedelta(seconds=1) <= got.generated_at <= datetime.now(UTC)
    assert got.interval == 100 * MS
    assert got.grace_period is None
    wire = json.loads(data)
    assert wire["interval"] == 100_000_000
    assert wire["generated_at"].endswith("Z")
    assert "grace_period" not in wire


async def test_acked_publish_keeps_given_fields(nc: NATS, stream: tuple[str, str]) -> None:
    name, base = stream
    at = datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=UTC)
    msg = Message(
        subject=f"{base}.db",
        interval=timedelta(seconds=15),
        grace_period=timedelta(seconds=45),
        generated_at=at,
        host="db-1",
        description="Database",
    )

    await Publisher(nc).publish(msg)

    _, data = await last_beat(nc, name, f"{base}.db")
    assert heartbeat.decode(data) == msg
    wire = json.loads(data)
    assert wire["interval"] == 15_000_000_000
    assert wire["grace_period"] == 45_000_000_000
    assert wire["generated_at"] == "2024-06-01T12:00:00.123456Z"


@pytest.mark.parametrize("dot", ["", "."])
async def test_prefix_is_prepended_to_subject(nc: NATS, unique: str, dot: str) -> None:
    name, prefix = f"HBP_{unique}", f"hb{unique}"
    js = nc.jetstream()
    await js.add_stream(name=name, subjects=[f"{prefix}.>"])
    try:
        publisher = Publisher(nc, prefix + dot)
        assert publisher.full_subject("api") == f"{prefix}.api"

        sent = await publisher.publish(Message(subject="api", interval=100 * MS))

        nats_subject, data = await last_beat(nc, name, f"{prefix}.api")
        assert nats_subject == sent.subject == f"{prefix}.api"
        assert heartbeat.decode(data).subject == f"{prefix}.api"
    finally:
        await js.delete_stream(name)


async def test_acked_publish_without_stream_raises_no_stream(nc: NATS, unique: str) -> None:
    with pytest.raises(heartbeat.NoStreamError, match=f"nostream{unique}.api"):
        await Publisher(nc).publish(Message(subject=f"nostream{unique}.api", interval=100 * MS))


async def test_unacked_publish_uses_core_nats_without_stream(nc: NATS, unique: str) -> None:
    subject = f"core{unique}.api"
    recorder = BeatRecorder()
    await recorder.subscribe(nc, subject)

    sent = await Publisher(nc, ack=False).publish(Message(subject=subject, interval=100 * MS))

    [beat] = await recorder.wait_for(1)
    assert beat.subject == subject
    assert heartbeat.decode(beat.data) == sent


async def test_ack_can_be_chosen_per_publish(nc: NATS, unique: str) -> None:
    subject = f"core{unique}.api"
    recorder = BeatRecorder()
    sub = await recorder.subscribe(nc, subject)
    publisher = Publisher(nc, ack=True)

    await publisher.publish(Message(subject=subject, interval=100 * MS), ack=False)

    await recorder.wait_for(1)
    # (A core subscriber would count as a responder: the request would time out instead.)
    await sub.unsubscribe()
    with pytest.raises(heartbeat.NoStreamError):
        await publisher.publish(Message(subject=subject, interval=100 * MS))


@pytest.mark.parametrize(
    ("subject", "interval", "grace", "error"),
    [
        ("{base}.a..b", 100 * MS, None, heartbeat.InvalidSubject),
        ("{base}.*", 100 * MS, None, heartbeat.InvalidSubject),
        ("{base}.>", 100 * MS, None, heartbeat.InvalidSubject),
        ("{base}.a b", 100 * MS, None, heartbeat.InvalidSubject),
        ("{base}.", 100 * MS, None, heartbeat.InvalidSubject),
        ("{base}.ok", timedelta(0), None, heartbeat.InvalidHeartbeat),
        ("{base}.ok", -100 * MS, None, heartbeat.InvalidHeartbeat),
        ("{base}.ok", 100 * MS, -100 * MS, heartbeat.InvalidHeartbeat),
    ],
)
@pytest.mark.parametrize("ack", [True, False])
async def test_invalid_input_raises_before_sending(
    nc: NATS,
    stream: tuple[str, str],
    subject: str,
    interval: timedelta,
    grace: timedelta | None,
    error: type[Exception],
    ack: bool,
) -> None:
    name, base = stream
    recorder = BeatRecorder()
    await recorder.subscribe(nc, f"{base}.>")
    publisher = Publisher(nc, ack=ack)
    bad = Message(subject=subject.format(base=base), interval=interval, grace_period=grace)

    with pytest.raises(error):
        await publisher.publish(bad)

    # A valid beat sent afterwards on the same connection is the first (and only) one seen.
    await publisher.publish(Message(subject=f"{base}.sentinel", interval=100 * MS))
    beats = await recorder.wait_for(1)
    assert [b.subject for b in beats] == [f"{base}.sentinel"]
    await last_beat(nc, name, f"{base}.sentinel")
    info = await nc.jetstream().stream_info(name)
    assert info.state.messages == 1  # the stream captures core publishes too: only the sentinel


# --- beating() -----------------------------------------------------------------------------------


async def test_beating_beats_at_cadence_and_stops_on_exit(
    nc: NATS, stream: tuple[str, str]
) -> None:
    _, base = stream
    subject = f"{base}.worker"
    recorder = BeatRecorder()
    await recorder.subscribe(nc, subject)

    async with heartbeat.beating(nc, subject, interval=100 * MS) as beater:
        beats = await recorder.wait_for(5, timeout=5)
    count = len(recorder.beats)

    assert beater.stats.sent == count >= 5
    assert beater.stats.failed == 0
    messages = [heartbeat.decode(b.data) for b in beats]
    assert {m.subject for m in messages} == {subject}
    assert {m.interval for m in messages} == {100 * MS}
    # The first beat goes out at once, then one per interval (by the sender's clock).
    times = [m.generated_at for m in messages if m.generated_at is not None]
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(times)]
    print(f"beating() gaps: {[round(g, 3) for g in gaps]}")
    assert all(0.05 <= g <= 0.25 for g in gaps), gaps
    assert 0.08 <= sum(gaps) / len(gaps) <= 0.13, gaps
    # Nothing after the block: the beater's task is finished and no late beat arrives.
    with pytest.raises(TimeoutError):
        await recorder.wait_for(count + 1, timeout=0.35)


async def test_beating_passes_fields_and_prefix(nc: NATS, stream: tuple[str, str]) -> None:
    name, base = stream
    recorder = BeatRecorder()
    await recorder.subscribe(nc, f"{base}.svc")

    async with heartbeat.beating(
        nc,
        "svc",
        prefix=base,
        interval=100 * MS,
        grace_period=timedelta(seconds=1),
        description="A service",
        host="box-7",
    ):
        [beat] = await recorder.wait_for(1)

    msg = heartbeat.decode(beat.data)
    assert beat.subject == msg.subject == f"{base}.svc"
    assert (msg.grace_period, msg.description, msg.host) == (
        timedelta(seconds=1),
        "A service",
        "box-7",
    )
    _, data = await last_beat(nc, name, f"{base}.svc")
    assert heartbeat.decode(data).subject == f"{base}.svc"


async def test_beating_rejects_bad_input_at_entry(nc: NATS, unique: str) -> None:
    with pytest.raises(heartbeat.InvalidSubject):
        async with heartbeat.beating(nc, f"hb{unique}.*", interval=100 * MS):
            pytest.fail("entered the block")
    with pytest.raises(heartbeat.InvalidHeartbeat):
        async with heartbeat.beating(nc, f"hb{unique}.x", interval=timedelta(0)):
            pytest.fail("entered the block")


async def test_beating_without_stream_counts_failures_and_does_not_raise(
    nc: NATS, unique: str, caplog: pytest.LogCaptureFixture
) -> None:
    subject = f"nostream{unique}.worker"

    async with heartbeat.beating(nc, subject, interval=100 * MS) as beater:
        await eventually(lambda: beater.stats.failed >= 3, 5, "three failed beats")

    assert beater.stats.sent == 0
    assert beater.stats.failed >= 3
    assert "no JetStream stream" in beater.stats.last_error
    warnings = [r for r in caplog.records if r.name == "heartbeat.publisher"]
    assert len(warnings) == 1, [r.getMessage() for r in warnings]


# --- beat_once() ---------------------------------------------------------------------------------


async def test_beat_once_returns_stored_message(
    nats_server: NatsServer, nc: NATS, stream: tuple[str, str]
) -> None:
    name, base = stream
    subject = f"{base}.cron"

    sent = await asyncio.to_thread(
        heartbeat.beat_once,
        subject,
        timedelta(hours=24),
        servers=nats_server.url,
        grace_period=timedelta(hours=2),
        description="nightly backup",
    )

    assert sent.subject == subject
    assert sent.host == socket.gethostname()
    assert sent.generated_at is not None and sent.generated_at.utcoffset() == timedelta(0)
    nats_subject, data = await last_beat(nc, name, subject)
    assert nats_subject == subject
    assert heartbeat.decode(data) == sent
    assert json.loads(data)["grace_period"] == 2 * 3600 * 10**9


def test_beat_once_from_sync_code_without_stream_raises(
    nats_server: NatsServer, unique: str
) -> None:
    with pytest.raises(heartbeat.NoStreamError):
        heartbeat.beat_once(f"nostream{unique}.cron", timedelta(hours=1), servers=nats_server.url)


def test_beat_once_closed_port_raises_connect_error() -> None:
    url = f"nats://127.0.0.1:{free_port()}"
    with pytest.raises(heartbeat.ConnectError, match="connection refused"):
        heartbeat.beat_once("hb.cron", timedelta(hours=1), servers=url, timeout_s=1)


@pytest.mark.parametrize(
    "call",
    [
        lambda url: heartbeat.beat_once("a..b", timedelta(hours=1), servers=url),
        lambda url: heartbeat.beat_once("a.b", timedelta(0), servers=url),
    ],
)
def test_beat_once_bad_input_fails_before_connecting(call: Callable[[str], object]) -> None:
    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens: connecting would be a ConnectError
    with pytest.raises((heartbeat.InvalidSubject, heartbeat.InvalidHeartbeat)):
        call(url)
