"""Carrying out committed notifications: deliver each pending channel, cross it off.

A notification reaches this module only after the record holding it as
``pending`` was committed to KV.  Each channel that succeeds (or fails for good)
is removed from ``pending`` with a compare-and-set, as soon as it finishes; a
channel still failing after the deadline stays pending and is retried later
with the same notification (same id).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Protocol

import msgspec

from heartbeat.engine import Pending, Record
from heartbeat.notify.base import Notifier
from heartbeat.notify.retry import DeliveryResult, fan_out
from heartbeat.store import StateConflict, StateStore, StoreError

log = logging.getLogger(__name__)


class RecordBook(Protocol):
    """Where the monitor keeps the committed records."""

    def held(self, subject: str) -> tuple[Record, int] | None:
        """The subject's committed record and its revision, if there is one."""

    def set_record(self, subject: str, rec: Record, rev: int) -> None: ...

    async def reload(self, subject: str) -> tuple[Record, int] | None:
        """Hold what the bucket holds for the subject now, and return it."""


class Deliveries:
    def __init__(
        self,
        book: RecordBook,
        store: StateStore,
        notifiers: Mapping[str, Notifier],
        *,
        deadline_s: float,
        retry_s: float,
        may_send: Callable[[], bool],
        clock: Callable[[], float],
    ) -> None:
        self.book = book
        self.store = store
        self.notifiers = notifiers
        self.deadline_s = deadline_s
        self.retry_s = retry_s
        self.may_send = may_send
        self.clock = clock
        self.inflight: set[tuple[str, str]] = set()  # (notification_id, channel)
        self.retry_at: dict[tuple[str, str], float] = {}
        self.last_error: dict[tuple[str, str], str] = {}  # how the last round failed
        self.results: dict[tuple[str, str, str], int] = {}  # (channel, kind, result) -> count
        self.retries: dict[str, int] = {}  # channel -> attempts beyond the first
        self.kv_writes = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    def start(self, subject: str) -> None:
        """Start delivering what the subject's committed record still owes."""
        held = self.book.held(subject)
        if held is None:
            return
        now = self.clock()
        for pending in held[0].pending:
            nid = pending.notification.notification_id
            todo = []
            for channel in pending.channels:
                key = (nid, channel)
                if key in self.inflight or self.retry_at.get(key, 0.0) > now:
                    continue
                if channel not in self.notifiers:
                    log.warning("%s: channel %s is no longer configured; dropping it", nid, channel)
                    self._spawn(self._cross_off(subject, nid, channel))
                    continue
                todo.append(self.notifiers[channel])
                self.inflight.add(key)
            if todo:
                self._spawn(self._send(subject, pending, todo))

    async def drain(self, timeout_s: float) -> None:
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=timeout_s)

    async def _send(self, subject: str, pending: Pending, notifiers: list[Notifier]) -> None:
        n = pending.notification

        async def record(channel: str, result: DeliveryResult) -> None:
            key = (n.notification_id, channel)
            outcome = "ok" if result.delivered else ("permanent" if result.permanent else "retry")
            counter = (channel, str(n.event), outcome)
            self.results[counter] = self.results.get(counter, 0) + 1
            extra = max(0, result.attempts - 1)
            self.retries[channel] = self.retries.get(channel, 0) + extra
            if result.delivered or result.permanent:
                self.retry_at.pop(key, None)
                self.last_error.pop(key, None)
                await self._cross_off(subject, n.notification_id, channel)
            else:
                self.retry_at[key] = self.clock() + self.retry_s
                self.last_error[key] = result.error
            self.inflight.discard(key)

        try:
            await fan_out(
                notifiers,
                n,
                deadline_s=self.deadline_s,
                on_result=record,
                may_send=self.may_send,
                previous_errors={
                    m.name: self.last_error.get((n.notification_id, m.name), "") for m in notifiers
                },
            )
        finally:
            for notifier in notifiers:
                self.inflight.discard((n.notification_id, notifier.name))

    async def _cross_off(self, subject: str, nid: str, channel: str) -> None:
        """Remove ``channel`` from pending delivery ``nid`` (compare-and-set, retried)."""
        async with self._locks.setdefault(subject, asyncio.Lock()):
            for attempt in range(20):
                held = self.book.held(subject)
                if held is None:
                    return
                rec, rev = held
                pending = without(rec.pending, nid, channel)
                if pending == rec.pending:
                    return
                new = msgspec.structs.replace(rec, pending=pending)
                try:
                    new_rev = await self.store.put(new, rev)
                except StateConflict:
                    got = await self.book.reload(subject)
                    if got is None:
                        return
                    continue
                except StoreError as e:
                    log.warning("recording delivery of %s to %s failed: %s", nid, channel, e)
                    await asyncio.sleep(min(5.0, 0.1 * 2**attempt))
                    continue
                self.kv_writes += 1
                self.book.set_record(subject, new, new_rev)
                return
            log.error("could not record delivery of %s to %s; it may be sent again", nid, channel)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def without(pending: list[Pending], nid: str, channel: str) -> list[Pending]:
    """``pending`` with ``channel`` crossed off notification ``nid`` (empty ones dropped)."""
    out = []
    for p in pending:
        if p.notification.notification_id == nid:
            rest = [c for c in p.channels if c != channel]
            if rest:
                out.append(Pending(notification=p.notification, channels=rest))
        else:
            out.append(p)
    return out
