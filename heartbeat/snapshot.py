"""The state as the bucket and the stream hold it, for when no monitor answers.

``nats-heartbeat status --from-kv`` reads what a replica mirrors (every record in
the state bucket, the lease, the last beat per subject in the heartbeat stream)
the same way a replica does (:class:`~heartbeat.feed.Feed`, :class:`Subjects`),
then builds the same report (:func:`heartbeat.status.build_report`).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import nats.errors
from nats.js import JetStreamContext

from heartbeat.connection import Headers
from heartbeat.election import lease_view
from heartbeat.engine import EngineConfig, Record
from heartbeat.ingest import Ingestor
from heartbeat.status import Filter, build_report
from heartbeat.status_schema import StatusReport
from heartbeat.store import LEASE_KEY, RESERVED, StateStore, StoreConfig, StoreError
from heartbeat.subjects import Subjects


@dataclass
class Snapshot:
    subjects: Subjects
    leader_id: str | None


async def read_state(js: JetStreamContext, cfg: StoreConfig, *, timeout_s: float) -> Snapshot:
    """Every record and every subject's last beat, read once to the end.

    Raises :class:`StoreError` when the bucket is missing or the read does not finish
    within ``timeout_s``.
    """
    subjects = Subjects(EngineConfig())
    leader: list[str | None] = [None]
    store = await StateStore.open(js, cfg, create=False)

    def on_entry(key: str, rec: Record | None, rev: int, data: bytes, headers: Headers) -> None:
        if key == LEASE_KEY:
            leader[0] = lease_view(data, headers, rev).holder
        elif not key.startswith(RESERVED) and rec is not None:
            subjects.set_record(key, rec, rev)

    watch = store.watch(on_entry)
    # Every subject of the stream (the monitor's prefix need not be known here).
    ingestor = Ingestor(js, cfg.stream, ">", subjects.on_beat, subjects.known)
    try:
        async with asyncio.timeout(timeout_s):
            await watch.start()
            await ingestor.start()
            await watch.caught_up.wait()
            await ingestor.caught_up.wait()
    except TimeoutError as e:
        raise StoreError(
            f"reading bucket {cfg.bucket} and stream {cfg.stream} took longer than {timeout_s:g}s"
        ) from e
    except (nats.errors.Error, OSError) as e:  # a missing stream, no permission
        raise StoreError(f"cannot read stream {cfg.stream}: {e or type(e).__name__}") from e
    finally:
        await ingestor.stop()  # Feed.stop logs and swallows its own errors
        await watch.stop()
    return Snapshot(subjects, leader[0])


def report_of(snapshot: Snapshot, now: float, only: Filter | None = None) -> StatusReport:
    """The status report a replica would serve for this state."""
    return build_report(snapshot.subjects, now, leader_id=snapshot.leader_id, only=only)
