"""Leader election through a lease key in the state bucket.

The election is for efficiency, not safety: every state write is a
compare-and-set, so two replicas that both believe they lead still commit (and
send) each transition once.  The leader acts only while
``monotonic() < sent_time_of_last_successful_renewal + 0.8 * ttl``.

A replica that is not ``eligible`` (the monitor: one that is blind) steps down and
does not campaign, so a replica that can see the data path leads instead.

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
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from heartbeat.aio import wait_any, wait_event
from heartbeat.store import KV_OP, LEASE_KEY, is_cas_conflict, is_tombstone

log = logging.getLogger(__name__)

EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"
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


OnChange = Callable[[bool], Awaitable[None]]
Eligible = Callable[[], bool]


class Election:
    """Campaigns for, renews and gives up the lease."""

    def __init__(
        self,
        js: JetStreamContext,
        bucket: str,
        replica_id: str,
        *,
        ttl_s: float = 10.0,
        on_change: OnChange | None = None,
        eligible: Eligible | None = None,
    ) -> None:
        self.js = js
        self.bucket = bucket
        self.replica_id = replica_id
        self.ttl_s = max(1.0, float(math.ceil(ttl_s)))
        self.on_change = on_change
        self.eligible = eligible  # None: always
        self.subject = f"$KV.{bucket}.{LEASE_KEY}"
        self.stream = f"KV_{bucket}"
        self.view = LeaseView(None, 0)
        self.revision = 0  # of our own lease while we hold it
        self.valid_until = 0.0  # monotonic
        self.acquired_at = 0.0
        self.changes = 0
        self._free = asyncio.Event()
        self._was_leading = False

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
            try:
                if self.eligible is not None and not self.eligible():
                    # A replica that cannot judge (blind) neither holds nor seeks the lease,
                    # so that one which can see leads meanwhile.
                    if self.revision:
                        log.info("replica %s cannot lead now; stepping down", self.replica_id)
                        await self.step_down()
                    await wait_event(stop, min(1.0, renew_every))
                    continue
                if self.revision and self.view.holder in (None, self.replica_id):
                    await self._renew()
                    await self._notify()
                    await wait_event(stop, renew_every)
                    continue
                await self._try_acquire()
                await self._notify()
                if self.revision:
                    await wait_event(stop, renew_every)
                else:
                    self._free.clear()
                    await wait_any(self._free, stop, within_s=self.ttl_s / 2)
            except (nats.errors.Error, TimeoutError, OSError) as e:
                log.warning("lease %s: %s", "renewal" if self.revision else "campaign", e)
                await self._notify()
                await wait_event(stop, min(1.0, renew_every))
        await self.step_down()

    async def _put(self, last: int, now: float) -> int:
        sent = time.monotonic()
        lease = Lease(
            holder=self.replica_id,
            acquired_at=self.acquired_at or now,
            renewed_at=now,
        )
        ack = await self.js.publish(
            self.subject,
            _encoder.encode(lease),
            headers={EXPECTED_LAST: str(last), TTL_HEADER: f"{int(self.ttl_s)}s"},
        )
        self.valid_until = sent + SAFETY * self.ttl_s
        self.revision = int(ack.seq)
        self.view = LeaseView(self.replica_id, self.revision)
        return self.revision

    async def _try_acquire(self) -> None:
        view = await self._read()
        if view.holder is not None and view.holder != self.replica_id:
            self.view = view
            return
        now = time.time()
        self.acquired_at = now
        try:
            await self._put(view.revision, now)
        except nats.js.errors.APIError as e:
            if is_cas_conflict(e):
                self.revision = 0
                return  # someone else got there first
            raise
        self.changes += 1
        log.info("replica %s now leads (lease ttl %ss)", self.replica_id, int(self.ttl_s))

    async def _renew(self) -> None:
        try:
            await self._put(self.revision, time.time())
        except nats.js.errors.APIError as e:
            if is_cas_conflict(e):
                log.warning("lost the lease (someone else holds it now)")
                self.revision = 0
                self.valid_until = 0.0
                return
            raise

    async def _read(self) -> LeaseView:
        try:
            msg = await self.js.get_msg(self.stream, subject=self.subject)
        except nats.js.errors.NotFoundError:
            return LeaseView(None, 0)
        return lease_view(msg.data or b"", msg.headers, int(msg.seq or 0))

    async def step_down(self) -> None:
        """Give the lease up at once (a successor takes over in milliseconds)."""
        if not self.revision:
            return
        rev, self.revision, self.valid_until = self.revision, 0, 0.0
        try:
            await self.js.publish(
                self.subject, b"", headers={KV_OP: "DEL", EXPECTED_LAST: str(rev)}
            )
            log.info("replica %s stepped down", self.replica_id)
        except (nats.errors.Error, TimeoutError) as e:
            log.info("stepping down: lease left to expire (%s)", e)
        await self._notify()

    async def _notify(self) -> None:
        leading = self.leading()
        if leading != self._was_leading:
            self._was_leading = leading
            if self.on_change is not None:
                await self.on_change(leading)
