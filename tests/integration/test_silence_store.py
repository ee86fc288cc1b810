"""The silences bucket on a real nats-server: creation, compare-and-set, ending, purging."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import nats
import pytest
from nats.aio.client import Client as NATS

from heartbeat.silence_store import ConflictError, SilenceStore, UnknownSilence
from heartbeat.silences import KEEP_ENDED_S, Silence, SilenceBook, new_silence
from heartbeat.store import StoreError
from tests.harness import (
    NatsServer,
    Receiver,
    eventually,
    monitor_config,
    run_cli,
    webhook_monitor,
)

DAY = 86_400.0


def entry(id: str, starts: float, ends: float | None, kind: str = "silence") -> Silence:
    return new_silence(
        id, "pause" if kind == "pause" else "silence", ["heartbeat.db.>"],
        starts=starts, ends=ends, reason="r", by="t", created=starts,
    )  # fmt: skip


async def test_write_is_compare_and_set_and_carries_a_ttl_backstop(nc: NATS, unique: str) -> None:
    js = nc.jetstream()
    store = await SilenceStore.open(js, f"SIL_{unique}")
    assert store.ttl  # created by us on a 2.11+ server
    now = time.time()
    s = entry("a1", now, now + 60)
    rev = await store.write(s, 0, now)
    with pytest.raises(ConflictError):
        await store.write(s, 0, now)
    msg = await js.get_msg(f"KV_SIL_{unique}", subject=store.key_subject("a1"))
    assert msg.headers is not None
    assert abs(int(msg.headers["Nats-TTL"]) - (60 + KEEP_ENDED_S)) <= 2
    pause = entry("p1", now, None, "pause")
    await store.write(pause, 0, now)
    msg = await js.get_msg(f"KV_SIL_{unique}", subject=store.key_subject("p1"))
    assert "Nats-TTL" not in (msg.headers or {})  # a pause never expires by itself

    far = entry("far", now, now + 7000 * 365 * DAY)  # year ~9000: past the server's int64 ns
    await store.write(far, 0, now)
    msg = await js.get_msg(f"KV_SIL_{unique}", subject=store.key_subject("far"))
    assert "Nats-TTL" not in (msg.headers or {})  # none rather than one that overflows

    ended, changed = await store.end("a1", now + 5)
    assert changed and ended.ends_s == pytest.approx(now + 5)
    again, changed = await store.end("a1", now + 9)
    assert not changed and again.ends_s == pytest.approx(now + 5)  # keeps when it ended
    with pytest.raises(UnknownSilence):
        await store.end("nope", now)
    (_, got, rev2), *_ = [e for e in await store.entries() if e[0] == "a1"]
    assert got == ended and rev2 > rev
    assert sorted(k for k, _, _ in await store.entries()) == ["a1", "far", "p1"]


async def test_purge_is_seen_by_a_watch_and_leaves_no_entry(nc: NATS, unique: str) -> None:
    store = await SilenceStore.open(nc.jetstream(), f"SIL_{unique}")
    now = time.time()
    rev = await store.write(entry("old", now - 9 * DAY, now - 8 * DAY), 0, now)
    book = SilenceBook()
    feed = store.watch(book.observe)
    await feed.start()
    try:
        await eventually(lambda: len(book) == 1, 5, "the entry in the book")
        assert book.purgeable(now) == [("old", rev)]
        assert not await store.purge("old", rev + 1)  # not what it holds: kept
        assert await store.purge("old", rev)
        await eventually(lambda: len(book) == 0, 5, "the purge in the book")
        assert await store.entries() == []
    finally:
        await feed.stop()


async def test_silence_ls_purges_what_ended_over_a_week_ago(
    nats_server: NatsServer, nc: NATS, unique: str
) -> None:
    bucket = f"SIL_{unique}"
    store = await SilenceStore.open(nc.jetstream(), bucket)
    now = time.time()
    await store.write(entry("old", now - 9 * DAY, now - 8 * DAY), 0, now)
    await store.write(entry("recent", now - 2 * DAY, now - DAY), 0, now)
    await store.write(entry("live", now - 60, now + 600), 0, now)
    kv = await nc.jetstream().key_value(bucket)
    await kv.put("junk", b"not json")
    flags = ["--nats-url", nats_server.url, "--silence-bucket", bucket]
    done = await asyncio.to_thread(run_cli, "silence", "ls", *flags)
    assert done.returncode == 0, done.stderr
    assert "live" in done.stdout and "recent" not in done.stdout and "old" not in done.stdout
    done = await asyncio.to_thread(run_cli, "silence", "ls", "--all", *flags)
    assert "recent" in done.stdout and "(ended)" in done.stdout and "old" not in done.stdout
    keys = sorted(k for k, _, _ in await store.entries())
    assert keys == ["junk", "live", "recent"]  # a hand-written value is left for its writer


async def test_the_monitor_watch_resumes_after_a_server_restart(
    nats_factory: Callable[..., NatsServer], receiver: Receiver, unique: str
) -> None:
    """Silences added and ended while the monitor was cut off from NATS reach it after."""
    server = nats_factory()
    bucket = f"SIL_{unique}"
    cfg = monitor_config(unique, silence_bucket=bucket)
    subject = "heartbeat.db.main"  # entry() silences heartbeat.db.>
    async with webhook_monitor(server.url, cfg, receiver) as (mon, _):
        conn = await nats.connect(server.url)
        try:
            store = await SilenceStore.open(conn.jetstream(), bucket)
            now = time.time()
            await store.write(entry("before", now, now + 3600), 0, now)
            await eventually(lambda: len(mon.silences) == 1, 5, "the first silence")
            server.restart()
            await eventually(lambda: conn.is_connected, 20, "the test's reconnect")

            async def ended() -> bool:  # JetStream may need a moment after the restart
                try:
                    await store.end("before", time.time())
                except StoreError:
                    return False
                return True

            await eventually(ended, 20, "JetStream back", every=0.2)
            now = time.time()
            await store.write(entry("after", now, now + 3600), 0, now)
        finally:
            await conn.close()

        def seen() -> bool:
            got = {s.id: s for s in mon.silences.current(time.time())}
            return set(got) == {"after"}

        await eventually(seen, 20, "the changes made across the restart")
        assert mon.silences.hush(subject, time.time()).quiet is not None
        report = mon.report()
        assert [s.id for s in report.silences or []] == ["after"]


async def test_entries_lists_every_key_just_written_and_no_tombstone(nc: NATS, unique: str) -> None:
    # nats-py's KeyValue.keys could end its listing before messages already sent arrived
    # (a CI run listed nothing); the listing now ends at what the server says it sent.
    store = await SilenceStore.open(nc.jetstream(), f"SIL_{unique}")
    assert await store.entries() == []
    now = time.time()
    for round in range(8):
        for i in range(5):
            await store.write(entry(f"r{round}-{i}", now, now + 60), 0, now)
        listed = [k for k, _, _ in await store.entries()]
        assert len(listed) == 5 * (round + 1) and len(set(listed)) == len(listed)
    await store.kv.delete("r0-0")
    listed = [k for k, _, _ in await store.entries()]
    assert "r0-0" not in listed and len(listed) == 39
