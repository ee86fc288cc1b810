"""Feeds on the project's own connection get messages handed over as they are read
(heartbeat.connection.deliver_directly), in stream order, with nats-py's ordered consumer
bookkeeping intact: a consumer the server lost is recreated and nothing is skipped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js.api import StreamConfig

from heartbeat.connection import ConnectOptions, close_connection, connect
from heartbeat.feed import Feed
from tests.harness import NatsServer, wait_count


@pytest.fixture
async def ours(nats_server: NatsServer) -> AsyncIterator[NATS]:
    conn = await connect(ConnectOptions(servers=(nats_server.url,), name="direct-test"))
    yield conn
    await close_connection(conn)


class Seen:
    def __init__(self) -> None:
        self.seqs: list[int] = []
        self.subjects: list[str] = []
        self.headers: list[dict[str, str] | None] = []
        self.event = asyncio.Event()

    def handle(
        self, subject: str, _data: bytes, headers: dict[str, str] | None, seq: int, _stamp: int
    ) -> None:
        self.seqs.append(seq)
        self.subjects.append(subject)
        self.headers.append(headers)
        self.event.set()


async def stream(js: nats.js.JetStreamContext, unique: str) -> str:
    name = f"D{unique}"
    await js.add_stream(StreamConfig(name=name, subjects=[f"d{unique}.>"]))
    return name


async def test_messages_are_handed_over_in_order_with_headers_and_no_queue(
    ours: NATS, unique: str
) -> None:
    js = ours.jetstream()
    name = await stream(js, unique)
    for i in range(3000):
        await js.publish(
            f"d{unique}.s{i % 7}", b"x", headers={"K": str(i)} if i % 10 == 0 else None
        )
    seen = Seen()
    feed = Feed(js, name, f"d{unique}.>", seen.handle)
    await feed.start()
    assert feed.direct
    await asyncio.wait_for(feed.caught_up.wait(), 20)
    # DeliverPolicy.LAST_PER_SUBJECT: the newest of each of the 7 subjects, in stream order
    assert seen.seqs == sorted(seen.seqs) and len(seen.seqs) == 7
    for i in range(3000, 3500):
        await js.publish(
            f"d{unique}.s{i % 7}", b"y", headers={"K": str(i)} if i % 10 == 0 else None
        )
    await wait_count(seen.seqs, seen.event, 507, 20, "messages")
    assert seen.seqs == sorted(seen.seqs) and len(set(seen.seqs)) == 507
    assert seen.headers[-500:][::10] == [{"K": str(i)} for i in range(3000, 3500, 10)]
    assert feed._sub is not None and feed._sub.pending_msgs == 0  # nothing queued in nats-py
    assert await feed.unhandled() == 0
    await feed.stop()


async def test_a_consumer_the_server_lost_is_recreated_and_nothing_is_skipped(
    ours: NATS, unique: str
) -> None:
    js = ours.jetstream()
    name = await stream(js, unique)
    seen = Seen()
    feed = Feed(js, name, f"d{unique}.>", seen.handle, idle_heartbeat_s=0.5)
    await feed.start()
    assert feed.direct
    for i in range(100):
        await js.publish(f"d{unique}.a{i}", b"x")
    await wait_count(seen.seqs, seen.event, 100, 20, "messages")
    assert feed._sub is not None
    consumer = (await feed._sub.consumer_info()).name
    await js.delete_consumer(name, consumer)  # as after a server restart without its state
    for i in range(100, 200):
        await js.publish(f"d{unique}.a{i}", b"x")
    # nats-py notices the missing idle heartbeats and recreates the consumer from the next
    # stream sequence: every message arrives once, in order.
    await wait_count(seen.seqs, seen.event, 200, 30, "messages")
    assert seen.seqs == list(range(1, 201))
    assert (await feed._sub.consumer_info()).name != consumer
    await feed.stop()


async def test_another_client_class_takes_nats_pys_callback_path(nc: NATS, unique: str) -> None:
    js = nc.jetstream()
    name = await stream(js, unique)
    for i in range(50):
        await js.publish(f"d{unique}.a{i}", b"x")
    seen = Seen()
    feed = Feed(js, name, f"d{unique}.>", seen.handle)
    await feed.start()
    assert not feed.direct
    await asyncio.wait_for(feed.caught_up.wait(), 20)
    await wait_count(seen.seqs, seen.event, 50, 20, "messages")
    assert seen.seqs == list(range(1, 51))
    await feed.stop()
