"""Requests the server never answers (after a node loss, a stream without a leader and a
consumer that lived on the node say nothing) cost a short, bounded wait, not nats-py's
5 s request timeout, and a new leader's catch-up check takes whichever answer proves it.

A real nats-server stands in for the lost node: its user may not publish some JetStream
API requests, which the server then drops unanswered (a permissions violation).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS
from nats.js.api import StreamConfig

from heartbeat.connection import ConnectOptions, close_connection, connect
from heartbeat.election import Election
from heartbeat.feed import Feed
from heartbeat.store import LEASE_KEY, StateStore, StoreConfig, StoreError
from tests.harness import NatsServer, free_port, names

NATS_PY_TIMEOUT_S = 5.0  # nats-py's JetStream request timeout: what the old code waited
STREAM_INFO = "$JS.API.STREAM.INFO.>"
CONSUMER_INFO = "$JS.API.CONSUMER.INFO.>"
MSG_GET = "$JS.API.STREAM.MSG.GET.>"


class Gagged:
    """A private server whose one user may not send the ``denied`` requests (changed
    with a configuration reload, so a feed can start before its probes are gagged)."""

    def __init__(self, base: Path) -> None:
        self.base = base
        self.port = free_port()
        self.server = NatsServer(base / "js", port=self.port, config=self._conf("_nothing"))
        self.conn: NATS | None = None

    def _conf(self, denied: str) -> str:
        perms = f'publish: {{ allow: [">"], deny: ["{denied}"] }}'
        return f"""
listen: 127.0.0.1:{self.port}
jetstream {{ store_dir: "{self.base / "js"}" }}
authorization {{ users = [{{ user: m, password: m, permissions: {{ {perms} }} }}] }}
"""

    async def connect(self) -> NATS:
        await asyncio.to_thread(self.server.start)
        url = f"nats://m:m@127.0.0.1:{self.port}"
        self.conn = await connect(ConnectOptions(servers=(url,), name="gagged-test"))
        return self.conn

    async def deny(self, denied: str) -> None:
        """Reload the configuration with ``denied`` refused; returns once it took effect."""
        (self.base / "nats.conf").write_text(self._conf(denied))
        reloads = sum("Reloaded server configuration" in line for line in self.server.log)
        assert self.server.proc is not None
        self.server.proc.send_signal(signal.SIGHUP)
        async with asyncio.timeout(10):
            while sum("Reloaded server configuration" in x for x in self.server.log) == reloads:
                await asyncio.sleep(0.02)

    async def close(self) -> None:
        if self.conn is not None:
            await close_connection(self.conn)
        self.server.stop()


@pytest.fixture
async def gagged(tmp_path: Path) -> AsyncIterator[Gagged]:
    g = Gagged(tmp_path)
    yield g
    await g.close()


@asynccontextmanager
async def gagged_feed(
    gagged: Gagged, unique: str, denied: str, probe_timeout_s: float
) -> AsyncIterator[Feed]:
    """A feed that has caught up with five messages; then ``denied`` goes unanswered."""
    js = (await gagged.connect()).jetstream()
    name = f"U{unique}"
    await js.add_stream(StreamConfig(name=name, subjects=[f"u{unique}.>"]))
    for i in range(5):
        await js.publish(f"u{unique}.s{i}", b"x")
    feed = Feed(js, name, f"u{unique}.>", lambda *_: None, probe_timeout_s=probe_timeout_s)
    try:
        await feed.start()
        await asyncio.wait_for(feed.caught_up.wait(), 10)
        await gagged.deny(denied)
        yield feed
    finally:
        await feed.stop()


@pytest.mark.parametrize("denied", [STREAM_INFO, CONSUMER_INFO])
async def test_an_unanswered_probe_says_none_after_its_timeout(
    gagged: Gagged, unique: str, denied: str
) -> None:
    async with gagged_feed(gagged, unique, denied, probe_timeout_s=0.3) as feed:
        started = time.monotonic()
        async with asyncio.timeout(NATS_PY_TIMEOUT_S - 1):
            probe = feed.last_stored_seq if denied == STREAM_INFO else feed.pending
            got = await probe(feed.probe_timeout_s)
        assert got is None
        assert time.monotonic() - started >= 0.3
        # The other probe still answers.
        other = await (feed.pending() if denied == STREAM_INFO else feed.last_stored_seq())
        assert other == (0 if denied == STREAM_INFO else 5)


async def test_the_alert_proof_is_not_cut_short_by_the_probe_bound(
    gagged: Gagged, unique: str
) -> None:
    # A None from unhandled() lets held alerts go (max_hold_s): a reply slower than the
    # catch-up bound, from a busy server or loop, must not count as "cannot say".
    async with gagged_feed(gagged, unique, CONSUMER_INFO, probe_timeout_s=0.3) as feed:
        asking = asyncio.ensure_future(feed.unhandled())
        done, _ = await asyncio.wait({asking}, timeout=3 * feed.probe_timeout_s)
        assert not done, "unhandled() gave up at the catch-up probes' bound"
        asking.cancel()


@pytest.mark.parametrize("denied", [STREAM_INFO, CONSUMER_INFO])
async def test_catch_up_is_proved_by_whichever_probe_answers(
    gagged: Gagged, unique: str, denied: str
) -> None:
    # A probe timeout far longer than the wait below: the check must not wait for it.
    async with gagged_feed(gagged, unique, denied, probe_timeout_s=60) as feed:
        async with asyncio.timeout(NATS_PY_TIMEOUT_S - 1):
            done, target = await feed.has_handled(None)
        assert done
        # The stream's last sequence, when the stream said it; asked again otherwise.
        assert target == (None if denied == STREAM_INFO else 5)
        async with asyncio.timeout(NATS_PY_TIMEOUT_S - 1):
            assert await feed.has_handled(5) == (True, 5)


async def test_a_target_not_reached_waits_for_the_count(gagged: Gagged, unique: str) -> None:
    async with gagged_feed(gagged, unique, CONSUMER_INFO, probe_timeout_s=0.3) as feed:
        # The stream says more than the feed has seen and the count says nothing: not
        # proved, and the answer comes after one probe timeout.
        async with asyncio.timeout(NATS_PY_TIMEOUT_S - 1):
            assert await feed.has_handled(feed.last_stream_seq + 1) == (
                False,
                feed.last_stream_seq + 1,
            )


async def test_an_unanswered_lease_read_fails_within_its_bound(gagged: Gagged, unique: str) -> None:
    conn = await gagged.connect()
    store = await StateStore.open(conn.jetstream(), StoreConfig(bucket=names(unique)["bucket"]))
    await gagged.deny(MSG_GET)
    async with asyncio.timeout(NATS_PY_TIMEOUT_S - 1):
        with pytest.raises(StoreError, match=r"cannot read _monitor\.leader: no answer in 0\.3s"):
            await store.read_raw(LEASE_KEY, timeout_s=0.3)


class Failures(logging.Handler):
    """Counts the campaign's failed reads; set when ``enough`` have been logged."""

    def __init__(self, enough: int) -> None:
        super().__init__(logging.WARNING)
        self.count, self.enough, self.reached = 0, enough, asyncio.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "lease campaign: cannot read" in record.getMessage():
            self.count += 1
            if self.count >= self.enough:
                self.reached.set()


async def test_a_campaign_the_bucket_does_not_answer_tries_again_within_a_ttl(
    gagged: Gagged, unique: str
) -> None:
    conn = await gagged.connect()
    store = await StateStore.open(conn.jetstream(), StoreConfig(bucket=names(unique)["bucket"]))
    await gagged.deny(MSG_GET)
    election = Election(store, "a", ttl_s=1.0)
    failures = Failures(enough=2)
    logger = logging.getLogger("heartbeat.election")
    logger.addHandler(failures)
    stop = asyncio.Event()
    task = asyncio.create_task(election.run(stop))
    try:
        # Two attempts, each bounded by half a ttl (1 s at least), within one of nats-py's
        # timeouts.
        async with asyncio.timeout(NATS_PY_TIMEOUT_S - 1):
            await failures.reached.wait()
        assert not election.leading()
    finally:
        logger.removeHandler(failures)
        stop.set()
        await task
