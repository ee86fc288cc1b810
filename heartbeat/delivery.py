"""Carrying out committed notifications: deliver each pending channel, cross it off.

A notification reaches this module only after the record holding it as
``pending`` was committed to KV.  Each channel that succeeds (or fails for good)
is removed from ``pending`` with a compare-and-set, as soon as it finishes; a
channel still failing after the deadline stays pending and is retried later
with the same notification (same id).

When many notifications become due for one channel at once, the channel gets
them as groups (heartbeat.groups): each group is committed under its own key
before it is sent, and owes its members' delivery to that channel from then on.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Collection, Coroutine, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from heartbeat.engine import Pending, Record
from heartbeat.groups import GROUP_PREFIX, Batcher, GroupEntry, decode_group, encode_group
from heartbeat.history import Event, Result, delivery_event
from heartbeat.notification import Notification, group_notice
from heartbeat.notify.base import Notifier
from heartbeat.notify.retry import DeliveryResult, fan_out
from heartbeat.store import StateStore, StoreError, is_tombstone
from heartbeat.subjects import Subjects

log = logging.getLogger(__name__)

Key = tuple[str, str]  # (notification_id, channel)
CROSSING_OFF = 32  # cross-offs in flight at once


@dataclass
class Plan:
    """What to do for one record's pending deliveries now."""

    send: list[tuple[Pending, list[str]]] = field(default_factory=list)
    drop: list[Key] = field(default_factory=list)  # channels no longer configured


def plan(
    pending: Sequence[Pending],
    now: float,
    *,
    configured: Collection[str],
    inflight: Collection[Key],
    retry_at: Mapping[Key, float],
    claimed: Collection[Key] = (),
    owed: Collection[str] = (),
) -> Plan:
    """Which channels of which pending notifications to send now: not those under
    way, not before their retry time, and oldest first; a channel that is no longer
    configured, or whose delivery a committed group has ``claimed``, is dropped.  A
    channel waits while an older notification of the same subject is still owed to
    it (``owed``: by a group not yet delivered), so a repeat or resolved never
    overtakes its alert."""
    out = Plan()
    owed = set(owed)  # channels an older notification still waits for
    for p in pending:  # in the order the engine committed them
        nid = p.notification.notification_id
        todo = []
        for channel in p.channels:
            key = (nid, channel)
            if key in inflight or retry_at.get(key, 0.0) > now:
                continue
            if key in claimed:
                out.drop.append(key)
                continue
            if channel in owed:
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
        batcher: Batcher | None = None,
        monitor: str = "",
        max_entry_bytes: int = 512 * 1024,
    ) -> None:
        self.max_entry_bytes = max_entry_bytes
        self.subjects = subjects
        self.batcher = batcher
        self.monitor = monitor
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
        # Committed groups, mirrored from the bucket: id -> (entry, revision); the member
        # deliveries they claim, and per subject the channels a group still owes it.
        self.groups: dict[str, tuple[GroupEntry, int]] = {}
        self.claimed: set[Key] = set()
        self.group_owed: dict[str, set[str]] = {}
        self.groups_sent = 0
        self._dropped: dict[str, int] = {}  # group id -> revision we deleted
        self._crossing = asyncio.Semaphore(CROSSING_OFF)
        # History (heartbeat.history_writer): each channel's outcome, per round here.
        self.history: Callable[[Iterable[Event]], None] | None = None
        self.rounds: dict[Key, int] = {}

    def start(self, subject: str) -> None:
        """Start delivering what the subject's committed record still owes."""
        rec = self.subjects.record(subject)
        if rec is None:
            return
        now = self.clock()
        todo = plan(
            rec.pending,
            now,
            configured=self.notifiers,
            inflight=self.inflight,
            retry_at=self.retry_at,
            claimed=self.claimed,
            owed=self.group_owed.get(subject, ()),
        )
        for nid, channel in todo.drop:
            if (nid, channel) not in self.claimed:
                log.warning("%s: channel %s is no longer configured; dropping it", nid, channel)
                for p in rec.pending:
                    if p.notification.notification_id == nid:
                        why = "channel no longer configured"
                        self._tell(subject, p.notification, channel, Result.DROPPED, 0, why)
            self.inflight.add((nid, channel))
            self._spawn(self._cross_off(subject, nid, channel))
        for pending, channels in todo.send:
            n = pending.notification
            self.inflight.update((n.notification_id, c) for c in channels)
            alone = [c for c in channels if self.batcher is None or self.batcher.alone(c, now)]
            for c in channels:
                if c not in alone:
                    assert self.batcher is not None
                    self.batcher.hold(c, subject, n, now)
            if alone:
                self._spawn(self._send(subject, pending, [self.notifiers[c] for c in alone]))

    def flush(self) -> None:
        """Form the groups that are ready, and (re)deliver committed groups that are due."""
        now = self.clock()
        if self.batcher is not None:
            for channel, members in self.batcher.ready(now):
                self._spawn(self._group(channel, members, now))
        for gid, (entry, _rev) in list(self.groups.items()):
            key = (gid, entry.channel)
            if key not in self.inflight and self.retry_at.get(key, 0.0) <= now:
                self.inflight.add(key)
                self._spawn(self._deliver_group(gid))

    def observe_group(
        self, key: str, data: bytes, headers: Mapping[str, str] | None, rev: int
    ) -> None:
        """A change of a ``_group.<id>`` entry, from the bucket watch."""
        gid = key[len(GROUP_PREFIX) :]
        if is_tombstone(data, headers):
            self._dropped.pop(gid, None)
            self._forget_group(gid)
            return
        held = self.groups.get(gid)
        if rev <= max(self._dropped.get(gid, 0), held[1] if held else 0):
            return  # our own write's echo, or one that our delete has overtaken
        self._forget_group(gid)
        try:
            entry = decode_group(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            log.error("ignoring undecodable group %s: %s", key, e)
            return
        self._hold_group(gid, entry, rev)

    def _hold_group(self, gid: str, entry: GroupEntry, rev: int) -> None:
        self.groups[gid] = (entry, rev)
        for subject, nid in entry.members:
            self.claimed.add((nid, entry.channel))
            self.group_owed.setdefault(subject, set()).add(entry.channel)

    def _forget_group(self, gid: str) -> None:
        got = self.groups.pop(gid, None)
        if got is None:
            return
        entry = got[0]
        for subject, nid in entry.members:
            self.claimed.discard((nid, entry.channel))
            owed = self.group_owed.get(subject)
            if owed is not None:
                owed.discard(entry.channel)
                if not owed:
                    del self.group_owed[subject]

    def may_send(self) -> bool:
        """Asked before every attempt: only a leader that is not handing over sends."""
        return not self.stopping and self.leading()

    async def hand_over(self, timeout_s: float) -> None:
        """Send nothing more; let what is under way record its outcome (within
        ``timeout_s``)."""
        self.stopping = True
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=timeout_s)

    def _count(self, key: Key, channel: str, event: str, result: DeliveryResult) -> bool:
        """Book one channel's round; True when it is over (delivered or failed for good)."""
        outcome = "ok" if result.delivered else ("permanent" if result.permanent else "retry")
        counter = (channel, event, outcome)
        self.results[counter] = self.results.get(counter, 0) + 1
        self.retries[channel] = self.retries.get(channel, 0) + max(0, result.attempts - 1)
        if result.delivered or result.permanent:
            self.retry_at.pop(key, None)
            self.last_error.pop(key, None)
            return True
        # Never sooner than the channel asked (Retry-After), nor than our own retry time.
        self.retry_at[key] = self.clock() + max(self.retry_s, result.retry_after_s or 0.0)
        self.last_error[key] = result.error
        return False

    async def _send(self, subject: str, pending: Pending, notifiers: list[Notifier]) -> None:
        n = pending.notification

        async def record(channel: str, result: DeliveryResult) -> None:
            key = (n.notification_id, channel)
            self._told(key, [(subject, n)], channel, result)
            if self._count(key, channel, str(n.event), result):
                await self._cross_off(subject, n.notification_id, channel)
            self.inflight.discard(key)

        try:
            await self._fan_out(notifiers, n, record)
        finally:
            for notifier in notifiers:
                self.inflight.discard((n.notification_id, notifier.name))

    async def _fan_out(
        self,
        notifiers: list[Notifier],
        n: Notification,
        record: Callable[[str, DeliveryResult], Coroutine[Any, Any, None]],
    ) -> None:
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

    async def _group(
        self, channel: str, members: list[tuple[str, Notification]], now: float
    ) -> None:
        """Commit ``members`` as one group for ``channel``, cross them off their own
        records, and deliver the group."""
        gid = "group-" + uuid.uuid4().hex[:16]
        n = group_notice(
            [m for _, m in members], notification_id=gid, created_at=now, monitor=self.monitor
        )
        entry = GroupEntry(
            notification=n,
            channel=channel,
            members=[(s, m.notification_id) for s, m in members],
        )
        data = encode_group(entry)
        if len(data) > self.max_entry_bytes and len(members) > 1:  # long subjects: split it
            half = len(members) // 2
            await asyncio.gather(
                self._group(channel, members[:half], now), self._group(channel, members[half:], now)
            )
            return
        keys = [(m.notification_id, channel) for _, m in members]
        # In flight before it exists: the watch may echo the entry (and a tick's flush see
        # it) before create() returns, and this task is the one that delivers it.
        self.inflight.add((gid, channel))
        try:
            rev = await self.store.create_entry(GROUP_PREFIX + gid, data)
        except StoreError as e:  # nothing claimed: the members go out on a later round
            log.warning("committing a group of %d for %s failed: %s", len(members), channel, e)
            self.inflight.difference_update([*keys, (gid, channel)])
            return
        self.kv_writes += 1
        self._hold_group(gid, entry, rev)
        log.info("grouping %d notifications for %s as %s", len(members), channel, gid)
        self._spawn(self._deliver_group(gid))
        for (subject, _m), key in zip(members, keys, strict=True):
            self._spawn(self._cross_off(subject, key[0], channel))

    async def _deliver_group(self, gid: str) -> None:
        got = self.groups.get(gid)
        if got is None:
            return
        entry, _rev = got
        key = (gid, entry.channel)
        notifier = self.notifiers.get(entry.channel)

        async def record(channel: str, result: DeliveryResult) -> None:
            members = zip((s for s, _ in entry.members), entry.notification.members, strict=False)
            self._told(key, list(members), channel, result, f" (in {gid})")
            if self._count(key, channel, "group", result):
                self.groups_sent += result.delivered
                await self._drop_group(gid)

        try:
            if notifier is None:
                log.warning("%s: channel %s is no longer configured; dropping it", gid, key[1])
                await self._drop_group(gid)
            else:
                await self._fan_out([notifier], entry.notification, record)
        finally:
            self.inflight.discard(key)

    async def _drop_group(self, gid: str) -> None:
        got = self.groups.get(gid)
        if got is None:
            return
        try:
            await self.store.delete_entry(GROUP_PREFIX + gid, got[1])
        except StoreError as e:  # delivered: a later round would send it again
            log.warning("recording delivery of %s failed: %s", gid, e)
            return
        self.kv_writes += 1
        self._dropped[gid] = got[1]  # until its tombstone comes back on the feed
        self._forget_group(gid)

    async def _cross_off(self, subject: str, nid: str, channel: str) -> None:
        """Remove ``channel`` from pending delivery ``nid`` in the committed record."""

        def change(rec: Record | None) -> Record | None:
            if rec is None:
                return None
            pending = without(rec.pending, nid, channel)
            return None if pending == rec.pending else msgspec.structs.replace(rec, pending=pending)

        # Crossing off is bookkeeping: a few at a time, so that in a storm the alert
        # commits (which decide what is owed) get most of the bucket's write rate.
        async with self._crossing, self._locks.setdefault(subject, asyncio.Lock()):
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
                break
            else:
                log.error(
                    "could not record delivery of %s to %s; it may be sent again", nid, channel
                )
        self.inflight.discard((nid, channel))
        self.rounds.pop((nid, channel), None)  # crossed off: no round of it follows here

    def _told(
        self,
        key: Key,
        about: list[tuple[str, Notification]],
        channel: str,
        result: DeliveryResult,
        suffix: str = "",
    ) -> None:
        """Record one round's outcome in the history: sent, failed (a retry comes) or
        dropped (a permanent error).  A round cut short before any attempt (this
        replica stopped leading) is no outcome: the next leader runs it."""
        if self.history is None or (not result.delivered and result.attempts == 0):
            return
        rnd = self.rounds[key] = self.rounds.get(key, 0) + 1
        tries = f"{result.attempts} attempt{'s' if result.attempts != 1 else ''}"
        if result.delivered:
            outcome, detail = Result.SENT, tries
        elif result.permanent:
            outcome, detail = Result.DROPPED, f"{result.error} ({tries}; not retried)"
        else:
            outcome, detail = Result.FAILED, f"{result.error} ({tries}; will retry)"
        if outcome is not Result.FAILED:
            self.rounds.pop(key, None)
        for subject, n in about:
            self._tell(subject, n, channel, outcome, rnd, detail + suffix)

    def _tell(
        self, subject: str, n: Notification, channel: str, result: Result, rnd: int, detail: str
    ) -> None:
        if self.history is None:
            return
        event = delivery_event(
            subject, n, channel, result, monitor=self.monitor, now=self.clock(), rnd=rnd,
            detail=detail,
        )  # fmt: skip
        self.history([event])

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)


def without(pending: Sequence[Pending], nid: str, channel: str) -> tuple[Pending, ...]:
    """``pending`` with ``channel`` crossed off notification ``nid`` (empty ones dropped)."""
    out = []
    for p in pending:
        if p.notification.notification_id == nid:
            rest = [c for c in p.channels if c != channel]
            if rest:
                out.append(Pending(notification=p.notification, channels=rest))
        else:
            out.append(p)
    return tuple(out)
