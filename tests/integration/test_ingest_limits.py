"""Hostile heartbeats against a real nats-server: nothing published can break ingestion.

A subject at the control-line edge is accepted and its record can be written, read
and deleted; one character more is refused with a reason.  A junk flood is counted
by reason and logs a handful of lines, never a traceback.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import nats.js.errors
import pytest
from nats.aio.client import Client as NATS

from heartbeat.connection import ConnectOptions, close_connection, connect
from heartbeat.engine import Beat, Record
from heartbeat.ingest import IngestLimits, Ingestor
from heartbeat.store import StateStore, StoreConfig
from tests.harness import NatsServer, eventually, names

NOW = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def beat(subject: str, **fields: object) -> bytes:
    obj: dict[str, object] = {"subject": subject, "generated_at": NOW, "interval": 10**9}
    obj.update(fields)
    return json.dumps(obj).encode()


@pytest.fixture
async def stream(nc: NATS, unique: str) -> AsyncIterator[StoreConfig]:
    n = names(unique)
    cfg = StoreConfig(stream=n["stream"], bucket=n["bucket"], subject_prefix=n["prefix"])
    js = nc.jetstream()
    await js.add_stream(name=cfg.stream, subjects=[cfg.filter_subject])
    yield cfg
    await js.delete_stream(cfg.stream)
    with contextlib.suppress(nats.js.errors.NotFoundError):  # only some tests make it
        await js.delete_key_value(cfg.bucket)


@pytest.fixture
async def ingest(nc: NATS, stream: StoreConfig) -> AsyncIterator[tuple[Ingestor, dict[str, Beat]]]:
    seen: dict[str, Beat] = {}
    ingestor = Ingestor(
        nc.jetstream(),
        stream.stream,
        stream.filter_subject,
        seen.__setitem__,
        limits=IngestLimits.for_bucket(stream.bucket),
    )
    await ingestor.start()
    await asyncio.wait_for(ingestor.caught_up.wait(), 10)
    yield ingestor, seen
    await ingestor.stop()


async def test_subject_at_the_control_line_edge_is_accepted_and_storable(
    nc: NATS, stream: StoreConfig, ingest: tuple[Ingestor, dict[str, Beat]]
) -> None:
    ingestor, seen = ingest
    limit = ingestor.limits.max_subject
    edge = stream.subject_prefix + "e" * (limit - len(stream.subject_prefix))
    over = edge + "x"
    far = stream.subject_prefix + "f" * (4050 - len(stream.subject_prefix))  # the stream takes it
    for subject in (over, far, edge):
        await nc.publish(subject, beat(subject))
    await eventually(lambda: edge in seen, 10, "the edge subject's beat")
    assert over not in seen and far not in seen
    assert ingestor.rejected == {"subject_too_long": 2}
    # Every KV operation on the edge subject's key fits the server's control line.
    store = await StateStore.open(nc.jetstream(), stream)
    rev = await store.put(Record(subject=edge, interval_ns=10**9), None)
    rev = await store.put(Record(subject=edge, interval_ns=2 * 10**9), rev)
    got = await store.get(edge)
    assert got is not None and got[0].interval_ns == 2 * 10**9
    await store.delete(edge, rev)
    assert nc.is_connected


async def test_junk_flood_is_counted_and_logs_a_handful_of_lines(
    nc: NATS,
    stream: StoreConfig,
    ingest: tuple[Ingestor, dict[str, Beat]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    ingestor, seen = ingest
    p = stream.subject_prefix
    kinds: dict[str, tuple[str, bytes]] = {
        "malformed": (p + "junk", b"\x1b[2J\nFAKE LOG LINE \xff"),
        "too_deep": (p + "deep", b'{"x":' + b"[" * 5000),
        "payload_too_large": (p + "big", beat(p + "big", description="d" * 9000)),
        "subject_mismatch": (p + "mis", beat(p + "other\x1b[31m\n")),
        "interval_out_of_range": (p + "fast", beat(p + "fast", interval=10**6)),
        "bad_time": (p + "time", beat(p + "time", generated_at="yesterday\n" * 500)),
    }
    n = 20_000
    started = time.monotonic()
    for i in range(n):
        subject, data = list(kinds.values())[i % len(kinds)]
        await nc.publish(subject, data)
        if i % 1000 == 0:
            await nc.publish(p + "ok", beat(p + "ok"))
    await nc.flush()

    def done() -> bool:
        return sum(ingestor.rejected.values()) >= n

    await eventually(done, 60, "every junk message to be rejected", every=0.1)
    elapsed = time.monotonic() - started
    expected = {k: n // len(kinds) + (i < n % len(kinds)) for i, k in enumerate(kinds)}
    assert ingestor.rejected == expected
    assert p + "ok" in seen
    lines = [r for r in caplog.records if r.name == "heartbeat.ingest"]
    periods = int(elapsed // 10) + 1
    assert 1 <= len(lines) <= len(kinds) * periods, [r.getMessage() for r in lines]
    for r in lines:
        text = r.getMessage()
        assert r.exc_info is None and len(text) < 600, text
        assert "\n" not in text and "\x1b" not in text, text
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"


async def test_a_subject_that_is_not_utf8_does_not_stop_the_connection(
    nats_server: NatsServer, stream: StoreConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """nats-server relays any bytes; nats-py's read loop used to die on such a subject."""
    caplog.set_level(logging.INFO)
    nc = await connect(ConnectOptions(servers=(nats_server.url,), name="utf8-test"))
    try:
        seen: dict[str, Beat] = {}
        ingestor = Ingestor(nc.jetstream(), stream.stream, stream.filter_subject, seen.__setitem__)
        await ingestor.start()
        p = stream.subject_prefix.encode()
        reader, writer = await asyncio.open_connection("127.0.0.1", nats_server.port)
        await reader.readline()  # INFO
        junk = beat("x")
        writer.write(
            b'CONNECT {"verbose":false}\r\n'
            + b"PUB " + p + b"\xff\xfe %d\r\n%s\r\n" % (len(junk), junk)
            + b"PUB " + p + b"\xc3 2\r\n{}\r\nPING\r\n"
        )  # fmt: skip
        await writer.drain()
        assert await reader.readline() == b"PONG\r\n"
        writer.close()
        ok = stream.subject_prefix + "ok"
        await nc.publish(ok, beat(ok))
        await eventually(lambda: ok in seen, 10, "the good beat after the bad subjects")
        assert sum(ingestor.rejected.values()) == 2, ingestor.rejected
        assert (await nc.jetstream().stream_info(stream.stream)).state.messages == 3
        lines = [r.getMessage() for r in caplog.records if r.name == "heartbeat.ingest"]
        assert lines and all(line.encode() for line in lines)  # printable: no surrogates
        await ingestor.stop()
    finally:
        await close_connection(nc)
