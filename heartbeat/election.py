"""Leader election through a lease key in the state bucket.

The election is for efficiency, not safety: every state write is a
compare-and-set, so two replicas that both believe they lead still commit (and
send) each transition once.  The leader acts only while
``monotonic() < sent_time_of_last_successful_renewal + 0.8 * ttl``.

A replica that is not ``eligible`` (the monitor: one that is blind) steps down and
does not campaign, so a replica that can see the data path leads instead.  What to
do next is the pure :func:`next_step`; :class:`Election` carries it out.

The lease is a message on ``$KV.<bucket>._monitor.leader`` with a per-message TTL
(whole seconds, the server's granularity).  Renewal is a compare-and-set on the
lease's revision; stepping down deletes it with a compare-and-set.  When the lease
expires the server leaves a marker (``Nats-Marker-Reason``); a deleted lease
leaves a ``KV-Operation: DEL`` tombstone; both count as free and are taken over
with a compare-and-set on their sequence.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum

import msgspec

from heartbeat.aio import wait_any, wait_event
from heartbeat.store import KV_OP, LEASE_KEY, StateConflict, StateStore, StoreError, is_tombstone

log = logging.getLogger(__name__)

TTL_HEADER = "Nats-TTL"
SAFETY = 0.8


class Lease(msgspec.Struct, kw_only=True):
    holder: str
    acquired_at: float
    renewed_at: float


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Lease)


@dataclass(frozen=True)
class LeaseView:
    """The lease as last seen: ``holder`` None when free (absent, deleted, expired)."""

    holder: str | None
    revision: int


def lease_view(data: bytes, headers: Mapping[str, str] | None, revision: int) -> LeaseView:
    """Interpret one message of the lease key (a watch entry or a direct get)."""
    if is_tombstone(data, headers):
        return LeaseView(None, revision)
    try:
        return LeaseView(_decoder.decode(data).holder, revision)
    except (msgspec.DecodeError, msgspec.ValidationError):
        log.warning("lease key holds something that is not a lease; treating it as free")
        return LeaseView(None, revision)


class Step(StrEnum):
    STAND_ASIDE = "stand_aside"  # may not lead: give up the lease if held, do not campaign
    RENEW = "renew"
    CAMPAIGN = "campaign"


def next_step(*, eligible: bool, holding: bool, holder: str | None, me: str) -> Step:
    """What a replica does next: renew a lease it holds (unless someone else took it),
    campaign otherwise, and neither while it may not lead."""
    if not eligible:
        return Step.STAND_ASIDE
    if holding and holder in (None, me):
        return Step.RENEW
    return Step.CAMPAIGN


class Election:
    """Campaigns for, renews and gives up the lease.

    ``eligible`` is set by the owner (the monitor: False while blind).  ``terms``
    counts the times this replica started leading, so the owner can tell a new term
    (and catch up before judging) without a callback.
    """

    def __init__(self, store: StateStore, replica_id: str, *, ttl_s: float = 10.0) -> None:
        self.store = store
        self.replica_id = replica_id
        self.ttl_s = max(1.0, float(math.ceil(ttl_s)))
        self.eligible = True
        self.view = LeaseView(None, 0)
        self.revision = 0  # of our own lease while we hold it
        self.valid_until = 0.0  # monotonic
        self.acquired_at = 0.0
        self.changes = 0
        self.terms = 0
        self._free = asyncio.Event()
        self._was_leading = False
        self.on_lead: Callable[[], None] | None = None  # called when a term begins

    # ----- queries -----------------------------------------------------------------

    def leading(self) -> bool:
        return time.monotonic() < self.valid_until

    @property
    def leader_id(self) -> str | None:
        if self.leading():
            return self.replica_id
        return self.view.holder

    # ----- watch input ---------------------------------------------------------------

    def observe(self, view: LeaseView) -> None:
        """A new message on the lease key (from the bucket watch)."""
        if view.revision < self.view.revision:
            return
        self.view = view
        if view.holder is None:
            self._free.set()
        elif view.holder != self.replica_id and self.leading():
            log.warning("lease taken by %s; stepping back", view.holder)
            self.valid_until = 0.0

    # ----- the loop ------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Campaign and renew until ``stop``; then step down."""
        renew_every = self.ttl_s / 3
        while not stop.is_set():
            step = next_step(
                eligible=self.eligible,
                holding=bool(self.revision),
                holder=self.view.holder,
                me=self.replica_id,
            )
            try:
                if step is Step.STAND_ASIDE:
                    if self.revision:
                        log.info("replica %s cannot lead now; stepping down", self.replica_id)
                        await self.step_down()
                    await wait_event(stop, min(1.0, renew_every))
                    continue
                if step is Step.RENEW:
                    await self._renew()
                    self._note_change()
                    await wait_event(stop, renew_every)
                    continue
                # Cleared before the attempt: a release the watch sees while the read
                # is under way must wake the next attempt, not be cleared after it (a
                # busy standby then waited ttl/2 for nothing: 5 s at 100k subjects).
                self._free.clear()
                await self._try_acquire()
                self._note_change()
                if self.revision:
                    await wait_event(stop, renew_every)
                else:
                    await wait_any(self._free, stop, within_s=self.ttl_s / 2)
            except StoreError as e:
                log.warning("lease %s: %s", "renewal" if self.revision else "campaign", e)
                self._note_change()
                await wait_event(stop, min(1.0, renew_every))
        await self.step_down()

    async def _put(self, last: int, now: float) -> None:
        sent = time.monotonic()
        lease = Lease(holder=self.replica_id, acquired_at=self.acquired_at or now, renewed_at=now)
        self.revision = await self.store.publish_expected(
            LEASE_KEY, _encoder.encode(lease), last, {TTL_HEADER: f"{int(self.ttl_s)}s"}
        )
        self.valid_until = sent + SAFETY * self.ttl_s
        self.view = LeaseView(self.replica_id, self.revision)

    async def _try_acquire(self) -> None:
        # Bounded by half a ttl (at least 1 s, a busy loop's stall): a read sent while the
        # bucket's stream has no leader (a node lost) is never answered, and waiting
        # nats-py's 5 s for it held a takeover 3 s past the stream's new election.
        got = await self.store.read_raw(LEASE_KEY, timeout_s=max(1.0, min(5.0, self.ttl_s / 2)))
        view = LeaseView(None, 0) if got is None else lease_view(*got)
        if view.holder is not None and view.holder != self.replica_id:
            if view.revision >= self.view.revision:  # not over what the watch saw since
                self.view = view
            return
        now = time.time()
        self.acquired_at = now
        try:
            await self._put(view.revision, now)
        except StateConflict:
            self.revision = 0
            return  # someone else got there first
        self.changes += 1
        log.info("replica %s now leads (lease ttl %ss)", self.replica_id, int(self.ttl_s))

    async def _renew(self) -> None:
        try:
            await self._put(self.revision, time.time())
        except StateConflict:
            log.warning("lost the lease (someone else holds it now)")
            self.revision = 0
            self.valid_until = 0.0

    async def step_down(self) -> None:
        """Give the lease up at once (a successor takes over in milliseconds)."""
        if not self.revision:
            return
        rev, self.revision, self.valid_until = self.revision, 0, 0.0
        try:
            # Briefly: a stop must not wait out a server that does not answer.
            await self.store.publish_expected(LEASE_KEY, b"", rev, {KV_OP: "DEL"}, timeout_s=1.0)
            log.info("replica %s stepped down", self.replica_id)
        except StoreError as e:
            log.info("stepping down: lease left to expire (%s)", e)
        self._note_change()

    def _note_change(self) -> None:
        leading = self.leading()
        if leading != self._was_leading:
            self._was_leading = leading
            if leading:
                self.terms += 1
                if self.on_lead is not None:
                    self.on_lead()
            else:
                log.info("replica %s no longer leads", self.replica_id)
