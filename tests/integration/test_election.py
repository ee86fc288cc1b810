"""The lease election against a real nats-server: who may lead, and how fast it changes."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

import pytest
from nats.aio.client import Client as NATS

from heartbeat.election import Election
from heartbeat.store import StateStore, StoreConfig
from tests.harness import names

TTL_S = 1.0


async def _wait(predicate: Callable[[], bool], timeout: float, what: str) -> float:
    """Poll until ``predicate()``; return how long it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


class Candidate:
    """One election, run in the background, with a switch for its eligibility."""

    def __init__(self, store: StateStore, name: str) -> None:
        self.election = Election(store, name, ttl_s=TTL_S)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.election.run(self.stop))

    @property
    def may_lead(self) -> bool:
        return self.election.eligible

    @may_lead.setter
    def may_lead(self, value: bool) -> None:
        self.election.eligible = value

    def leading(self) -> bool:
        return self.election.leading()

    async def close(self) -> None:
        self.stop.set()
        await self.task


@pytest.fixture
async def candidates(nc: NATS, unique: str) -> AsyncIterator[tuple[Candidate, Candidate]]:
    bucket = names(unique)["bucket"]
    store = await StateStore.open(nc.jetstream(), StoreConfig(bucket=bucket))
    a, b = Candidate(store, "a"), Candidate(store, "b")
    try:
        yield a, b
    finally:
        await a.close()
        await b.close()


async def test_a_leader_that_may_not_lead_steps_down_and_the_other_takes_over(
    candidates: tuple[Candidate, Candidate],
) -> None:
    a, b = candidates
    await _wait(lambda: a.leading() != b.leading(), 5, "one leader")
    leader, other = (a, b) if a.leading() else (b, a)
    leader.may_lead = False  # e.g. it went blind
    gone = await _wait(lambda: not leader.leading(), 2, "the blind leader to step down")
    took = await _wait(other.leading, TTL_S + 1, "the other to lead")
    assert gone <= TTL_S / 3 + 0.5, gone
    assert took <= TTL_S, took  # a deleted lease, found by the fallback timer (ttl/2)
    # While it may not lead it does not campaign, even with the lease free.
    await other.close()
    await asyncio.sleep(TTL_S)
    assert not leader.leading()
    assert leader.election.revision == 0
    leader.may_lead = True
    back = await _wait(leader.leading, TTL_S + 1, "leading again once it may")
    print(f"\n[election] stepped down {gone * 1000:.0f}ms after going blind; successor after "
          f"{took * 1000:.0f}ms; back {back * 1000:.0f}ms after becoming eligible")  # fmt: skip


async def test_a_release_seen_while_an_attempt_reads_the_lease_is_not_lost(
    nc: NATS, unique: str
) -> None:
    """The standby's read of the lease races the holder's release: the read returns the
    old lease, the watch then reports the release.  The standby tries again at once
    instead of waiting ttl/2 for its next attempt (seen as 5 s takeovers at 100k)."""
    from heartbeat.election import LEASE_KEY, lease_view

    bucket = names(unique)["bucket"]
    store = await StateStore.open(nc.jetstream(), StoreConfig(bucket=bucket))
    holder = Election(store, "holder", ttl_s=10.0)
    stop_holder = asyncio.Event()
    holding = asyncio.create_task(holder.run(stop_holder))
    await _wait(holder.leading, 5, "the holder to lead")
    standby = Election(store, "standby", ttl_s=10.0)
    read_raw, in_read, go_on = store.read_raw, asyncio.Event(), asyncio.Event()

    async def racing_read(
        key: str, *, timeout_s: float = 5.0
    ) -> tuple[bytes, dict[str, str] | None, int] | None:
        got = await read_raw(key, timeout_s=timeout_s)  # the lease as it was
        if key == LEASE_KEY and not go_on.is_set():
            in_read.set()
            await go_on.wait()  # meanwhile the holder releases and the watch reports it
        return got  # type: ignore[return-value]

    store.read_raw = racing_read  # type: ignore[method-assign]
    stop = asyncio.Event()
    campaign = asyncio.create_task(standby.run(stop))
    try:
        await asyncio.wait_for(in_read.wait(), 5)
        stop_holder.set()
        await holding  # stepped down: the lease key holds a delete marker
        got = await read_raw(LEASE_KEY)
        assert got is not None
        standby.observe(lease_view(*got))  # what the bucket watch hands over
        go_on.set()
        took = await _wait(standby.leading, 4.0, "the standby to lead")  # ttl/2 is 5 s
        assert took < 2.0, took
    finally:
        stop.set()
        await campaign
