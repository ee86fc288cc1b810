"""Retiring subjects: a service that is gone should stop alerting, for good.

A subject is retired by purging its last beat from the stream and deleting its
record (compare-and-set).  The monitor also retires what an operator removed by
hand: a record deleted with ``nats kv del`` (seen on the bucket watch) and a
subject purged with ``nats stream purge --subject`` (which emits no event, so the
leader reconciles its records against the stream's subject list).
"""

from __future__ import annotations

import logging

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext

from heartbeat.store import StateConflict, StateStore, StoreError

log = logging.getLogger(__name__)


async def stream_subjects(js: JetStreamContext, stream: str, filter_subject: str) -> set[str]:
    """Every subject that has a message in ``stream`` under ``filter_subject``."""
    try:
        info = await js.stream_info(stream, subjects_filter=filter_subject)
    except (nats.errors.Error, TimeoutError) as e:
        raise StoreError(f"cannot list subjects of stream {stream}: {e}") from e
    return set((info.state.subjects or {}).keys())


async def purge_subject(js: JetStreamContext, stream: str, subject: str) -> None:
    try:
        await js.purge_stream(stream, subject=subject)
    except (nats.errors.Error, TimeoutError) as e:
        raise StoreError(f"cannot purge {subject} from stream {stream}: {e}") from e


async def delete_record(store: StateStore, subject: str) -> bool:
    """Delete ``subject``'s record (compare-and-set, retried); False if it had none."""
    for _ in range(10):
        held = await store.get(subject)
        if held is None:
            return False
        rec, rev = held
        if rec.pending:
            log.warning(
                "retiring %s cancels %d pending notification(s): %s",
                subject,
                len(rec.pending),
                ", ".join(p.notification.notification_id for p in rec.pending),
            )
        try:
            await store.delete(subject, rev)
        except StateConflict:
            continue
        return True
    raise StoreError(f"{subject} kept changing; could not delete its record")


async def retire(js: JetStreamContext, store: StateStore, subject: str) -> tuple[bool, bool]:
    """Purge ``subject`` from the stream and delete its record.

    Returns (had a beat in the stream, had a record).
    """
    cfg = store.cfg
    had_beat = subject in await stream_subjects(js, cfg.stream, subject)
    await purge_subject(js, cfg.stream, subject)
    had_record = await delete_record(store, subject)
    log.info("retired %s (beat purged: %s, record deleted: %s)", subject, had_beat, had_record)
    return had_beat, had_record
