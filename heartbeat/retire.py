"""Retiring subjects: a service that is gone should stop alerting, for good.

A subject is retired by purging its last beat from the stream and deleting its
record (compare-and-set).  The monitor also retires what an operator removed by
hand: a record deleted with ``nats kv del`` (seen on the bucket watch) and a
subject purged with ``nats stream purge --subject`` (which emits no event, so the
leader reconciles its records against the stream's subject list).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Iterable

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from heartbeat.engine import Record
from heartbeat.store import DELETE, Delete, StateStore, StoreError
from heartbeat.subjects import Subjects, Track

log = logging.getLogger(__name__)


class _State(msgspec.Struct):
    subjects: dict[str, int] | None = None


class _Info(msgspec.Struct):
    state: _State | None = None
    total: int = 0
    error: dict[str, object] | None = None


_info_decoder = msgspec.json.Decoder(_Info)


async def stream_subjects(js: JetStreamContext, stream: str, filter_subject: str) -> set[str]:
    """Every subject that has a message in ``stream`` under ``filter_subject``.

    The server lists at most 100,000 subjects per answer; this asks for every page
    (nats-py's ``stream_info`` does not), and decodes them without building dicts of
    everything else.
    """
    nc = js._nc  # the JetStream API is plain request/reply
    prefix = getattr(js, "_prefix", "$JS.API")
    out: set[str] = set()
    while True:
        req = msgspec.json.encode({"subjects_filter": filter_subject, "offset": len(out)})
        try:
            reply = await nc.request(f"{prefix}.STREAM.INFO.{stream}", req, timeout=10)
            info = _info_decoder.decode(reply.data)
        except (nats.errors.Error, TimeoutError, msgspec.DecodeError) as e:
            raise StoreError(f"cannot list subjects of stream {stream}: {e}") from e
        if info.error is not None:
            raise StoreError(f"cannot list subjects of stream {stream}: {info.error}")
        page = (info.state.subjects if info.state else None) or {}
        out.update(page)
        if not page or len(out) >= info.total:
            return out


async def subject_present(js: JetStreamContext, stream: str, subject: str) -> bool:
    """Whether ``stream`` holds a message on exactly ``subject``.

    Asks stream info with the subject as filter (the permission a monitor already
    needs), not a direct get.
    """
    return subject in await stream_subjects(js, stream, subject)


async def purge_subject(js: JetStreamContext, stream: str, subject: str) -> None:
    try:
        await js.purge_stream(stream, subject=subject)
    except (nats.errors.Error, TimeoutError) as e:
        raise StoreError(f"cannot purge {subject} from stream {stream}: {e}") from e


async def delete_record(store: StateStore, subject: str) -> bool:
    """Delete ``subject``'s record (compare-and-set); False if it had none."""

    def change(rec: Record | None) -> Delete | None:
        if rec is not None and rec.pending:
            log.warning(
                "retiring %s cancels %d pending notification(s): %s",
                subject,
                len(rec.pending),
                ", ".join(p.notification.notification_id for p in rec.pending),
            )
        return None if rec is None else DELETE

    return (await store.modify(subject, change, await store.get(subject))).wrote


async def retire(js: JetStreamContext, store: StateStore, subject: str) -> tuple[bool, bool]:
    """Purge ``subject`` from the stream and delete its record.

    Returns (had a beat in the stream, had a record).
    """
    cfg = store.cfg
    had_beat = await subject_present(js, cfg.stream, subject)
    await purge_subject(js, cfg.stream, subject)
    had_record = await delete_record(store, subject)
    log.info("retired %s (beat purged: %s, record deleted: %s)", subject, had_beat, had_record)
    return had_beat, had_record


def gone_subjects(tracks: Iterable[Track], present: set[str], listed_at: float) -> list[str]:
    """Subjects held but missing from the stream's subject list taken at ``listed_at``,
    leaving out any seen since (a beat newer than the listing may postdate it)."""
    out = []
    for t in tracks:
        if t.subject in present:
            continue
        last = max(t.record.last_seen if t.record else 0.0, t.beat.last_seen if t.beat else 0.0)
        if last < listed_at:
            out.append(t.subject)
    return out


class Janitor:
    """The leader's side of retirement by hand, run beside the evaluation loop.

    ``deleted()`` queues a subject whose record was deleted (``nats kv del``): its
    last beat is purged from the stream, or the stream would bring it back.  Every
    ``every_s`` the stream's subject list is compared with the records; a subject
    purged from the stream (``nats stream purge --subject``, which emits no event) is
    confirmed gone on its own, then its record is deleted.
    """

    def __init__(
        self,
        js: JetStreamContext,
        store: StateStore,
        subjects: Subjects,
        *,
        every_s: float,
        clock: Callable[[], float],
        on_retired: Callable[[str, int, str], None] | None = None,
    ) -> None:
        self.on_retired = on_retired  # (subject, its record's last revision, why)
        self.js = js
        self.store = store
        self.subjects = subjects
        self.every_s = every_s
        self.clock = clock
        self.to_purge: set[str] = set()
        self._next = 0.0
        self._task: asyncio.Task[None] | None = None

    def deleted(self, subject: str) -> None:
        self.to_purge.add(subject)

    def kick(self) -> None:
        """Start a round in the background unless one runs or none is due."""
        if self._task is not None and not self._task.done():
            return
        if not self.to_purge and (self.every_s <= 0 or time.monotonic() < self._next):
            return
        self._task = asyncio.ensure_future(self._round())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task

    async def _round(self) -> None:
        try:
            await self._purge_deleted()
            if self.every_s > 0 and time.monotonic() >= self._next:
                self._next = time.monotonic() + self.every_s
                await self._reconcile()
        except StoreError as e:
            log.warning("retiring removed subjects failed, will retry: %s", e)

    async def _purge_deleted(self) -> None:
        cfg = self.store.cfg
        while self.to_purge:
            subject = self.to_purge.pop()
            try:
                await purge_subject(self.js, cfg.stream, subject)
            except StoreError:
                self.to_purge.add(subject)
                raise
            self.subjects.forget_beat(subject)

    async def _reconcile(self) -> None:
        cfg = self.store.cfg
        listed_at = self.clock() - 1.0  # beats newer than this may postdate the listing
        present = await stream_subjects(self.js, cfg.stream, cfg.filter_subject)
        if len(present) >= len(self.subjects) and present.issuperset(self.subjects.tracks):
            return
        for subject in gone_subjects(list(self.subjects), present, listed_at):
            # Each one confirmed on its own: the loop awaits, the table may change.
            if subject not in self.subjects.tracks:
                continue
            if await subject_present(self.js, cfg.stream, subject):
                continue
            track = self.subjects.get(subject)
            if self.on_retired is not None and track is not None:
                self.on_retired(subject, track.rev, f"purged from stream {cfg.stream}")
            self.subjects.retire(subject)  # first, so the record's tombstone is no news
            await delete_record(self.store, subject)
            log.info("retired %s: it was purged from stream %s", subject, cfg.stream)
