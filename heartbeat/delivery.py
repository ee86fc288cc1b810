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
from collections.abc import Callable, Collection, Coroutine, Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from heartbeat.engine import Pending, Record
from heartbeat.notify.base import Notifier
from heartbeat.notify.retry import DeliveryResult, fan_out
from heartbeat.store import StateStore, StoreError
from heartbeat.subjects import Subjects

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (notification_id, channel)


@dataclass
class Plan:
    """What to do for one record's pending deliveries now."""

    send: list[tuple[Pending, list[str]]] = field(default_factory=list)
    drop: list[Key] = field(default_factory=list)  # channels no longer configured


def plan(
    pending: list[Pending],
    now: float,
    *,
    configured: Collection[str],
    inflight: Collection[Key],
    retry_at: Mapping[Key, float],
) -> Plan:
    """Which channels of which pending notifications to send now: not those under
    way, not before their retry time, and oldest first; a channel that is no longer
    configured is dropped.  A channel waits while an older notification of the same
    subject is still owed to it, so a repeat or resolved never overtakes its alert."""
    out = Plan()
    owed: set[str] = set()  # channels an older notification still waits for
    for p in pending:  # in the order the engine committed them
        nid = p.notification.notification_id
        todo = []
        for channel in p.channels:
            key = (nid, channel)
            if channel in owed or key in inflight or retry_at.get(key, 0.0) > now:
                continue
            if channel not in configured:
                out.drop.append(key)
                continue
            todo.append(channel)
        owed.update(p.channels)
        if todo:
            out.send.append((p, todo))
    return out


class Deliveries:
    def __init__(
        self,
        subjects: Subjects,
        store: StateStore,
        notifiers: Mapping[str, Notifier],
        *,
        deadline_s: float,
        retry_s: float,
        leading: Callable[[], bool],
        clock: Callable[[], float],
    ) -> None:
        self.subjects = subjects
        self.store = store
        self.notifiers = notifiers
        self.deadline_s = deadline_s
        self.retry_s = retry_s
        self.leading = leading
        self.stopping = False
        self.clock = clock
        self.inflight: set[Key] = set()
        self.retry_at: dict[Key, float] = {}
        self.last_error: dict[Key, str] = {}  # how the last round failed
        self.results: dict[tuple[str, str, str], int] = {}  # (channel, kind, result) -> count
        self.retries: dict[str, int] = {}  # channel -> attempts beyond the first
        self.kv_writes = 0
        self.conflicts = 0
        self.tasks: set[asyncio.Task[None]] = set()
        self._locks: dict[str, asyncio.Lock] = {}

    def start(self, subject: str) -> None:
        """Start delivering what the subject's committed record still owes."""
        rec = self.subjects.record(subject)
        if rec is None:
            return
        todo = plan(
            rec.pending,
            self.clock(),
            configured=self.notifiers,
            inflight=self.inflight,
            retry_at=self.retry_at,
        )
        for nid, channel in todo.drop:
            log.warning("%s: channel %s is no longer configured; dropping it", nid, channel)
            self._spawn(self._cross_off(subject, nid, channel))
        for pending, channels in todo.send:
            nid = pending.notification.notification_id
            self.inflight.update((nid, c) for c in channels)
            self._spawn(self._send(subject, pending, [self.notifiers[c] for c in channels]))

    def may_send(self) -> bool:
        """Asked before every attempt: only a leader that is not handing over sends."""
        return not self.stopping and self.leading()

    async def hand_over(self, timeout_s: float) -> None:
        """Send nothing more; let what is under way record its outcome (within
        ``timeout_s``)."""
        self.stopping = True
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
        """Remove ``channel`` from pending delivery ``nid`` in the committed record."""

        def change(rec: Record | None) -> Record | None:
            if rec is None:
                return None
            pending = without(rec.pending, nid, channel)
            return None if pending == rec.pending else msgspec.structs.replace(rec, pending=pending)

        async with self._locks.setdefault(subject, asyncio.Lock()):
            for attempt in range(5):
                try:
                    done = await self.store.modify(subject, change, self.subjects.held(subject))
                except StoreError as e:  # a lost race too, ten times over
                    log.warning("recording delivery of %s to %s failed: %s", nid, channel, e)
                    await asyncio.sleep(min(5.0, 0.2 * 2**attempt))
                    continue
                self.conflicts += done.conflicts
                self.kv_writes += done.wrote
                self.subjects.hold(subject, done.held)
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
