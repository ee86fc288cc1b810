"""StateStore.modify, the one compare-and-set loop, and the lease's raw write."""

from __future__ import annotations

import msgspec
import pytest
from nats.aio.client import Client as NATS

from heartbeat.engine import Record
from heartbeat.store import DELETE, Delete, StateConflict, StateStore, StoreConfig
from tests.harness import names

SUBJECT = "heartbeat.store.a"


@pytest.fixture
async def store(nc: NATS, unique: str) -> StateStore:
    return await StateStore.open(nc.jetstream(), StoreConfig(bucket=names(unique)["bucket"]))


def bump(rec: Record | None) -> Record:
    base = rec if rec is not None else Record(subject=SUBJECT)
    return msgspec.structs.replace(base, notify_count=base.notify_count + 1)


async def test_modify_creates_then_updates_from_what_it_holds(store: StateStore) -> None:
    first = await store.modify(SUBJECT, bump, None)
    assert first.wrote and first.conflicts == 0 and first.held is not None
    second = await store.modify(SUBJECT, bump, first.held)
    assert second.held is not None and second.held[0].notify_count == 2
    assert second.held[1] > first.held[1]
    assert await store.get(SUBJECT) == second.held


async def test_a_lost_race_reloads_and_applies_the_change_to_the_newer_record(
    store: StateStore,
) -> None:
    stale = (await store.modify(SUBJECT, bump, None)).held
    newer = (await store.modify(SUBJECT, bump, stale)).held  # someone else's write
    seen: list[int] = []

    def change(rec: Record | None) -> Record:
        seen.append(rec.notify_count if rec else 0)
        return bump(rec)

    done = await store.modify(SUBJECT, change, stale)
    assert seen == [1, 2]  # decided once on the stale record, once on the reloaded one
    assert done.conflicts == 1 and done.wrote
    assert done.held is not None and newer is not None and done.held[1] > newer[1]
    assert done.held[0].notify_count == 3


async def test_nothing_to_do_writes_nothing(store: StateStore) -> None:
    held = (await store.modify(SUBJECT, bump, None)).held
    done = await store.modify(SUBJECT, lambda rec: None, held)
    assert not done.wrote and done.held == held
    gone = await store.modify("heartbeat.store.none", lambda rec: DELETE, None)
    assert not gone.wrote and gone.held is None


async def test_delete_is_compare_and_set_too(store: StateStore) -> None:
    stale = (await store.modify(SUBJECT, bump, None)).held
    await store.modify(SUBJECT, bump, stale)
    seen: list[int] = []

    def change(rec: Record | None) -> Delete:
        seen.append(rec.notify_count if rec else 0)
        return DELETE

    done = await store.modify(SUBJECT, change, stale)
    assert done.wrote and done.held is None and done.conflicts == 1
    assert seen == [1, 2]
    assert await store.get(SUBJECT) is None


async def test_a_key_that_keeps_changing_gives_up_with_a_conflict(store: StateStore) -> None:
    stale = (await store.modify(SUBJECT, bump, None)).held
    await store.modify(SUBJECT, bump, stale)
    rounds = 0

    def racing(rec: Record | None) -> Record:
        nonlocal rounds
        rounds += 1
        return bump(rec)

    class Meddling(StateStore):
        """Another writer lands between every reload and the write that follows it."""

        async def get(self, subject: str) -> tuple[Record, int] | None:
            got = await store.get(subject)
            assert got is not None
            await store.put(bump(got[0]), got[1])
            return got

    with pytest.raises(StateConflict):
        await Meddling(store.js, store.kv, store.cfg).modify(SUBJECT, racing, stale, attempts=3)
    assert rounds == 3


async def test_publish_expected_refuses_a_stale_sequence(store: StateStore) -> None:
    seq = await store.publish_expected("_test.raw", b"one", 0)
    with pytest.raises(StateConflict):
        await store.publish_expected("_test.raw", b"two", 0)
    again = await store.publish_expected("_test.raw", b"two", seq)
    got = await store.read_raw("_test.raw")
    assert got is not None and got[0] == b"two" and got[2] == again
    assert await store.read_raw("_test.none") is None
