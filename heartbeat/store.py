"""The monitor's NATS storage: the heartbeat stream and the state bucket.

Every write to the bucket is a compare-and-set.  Record writes go through
:meth:`StateStore.modify`, the one place that reloads and decides again after a lost
race; the lease's raw writes (:meth:`StateStore.publish_expected`) sit beside it.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import Enum

import msgspec
import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.api import (
    DiscardPolicy,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.kv import KeyValue

from heartbeat.connection import Headers
from heartbeat.engine import Record, shared_ns
from heartbeat.errors import HeartbeatError
from heartbeat.feed import Feed
from heartbeat.text import for_log

log = logging.getLogger(__name__)

LEASE_KEY = "_monitor.leader"
RESERVED = "_"  # keys that start so are the monitor's own, never a subject's
DAY_S = 86_400.0
KV_OP = "KV-Operation"
MARKER_REASON = "Nats-Marker-Reason"
EXPECTED_LAST = "Nats-Expected-Last-Subject-Sequence"


class StoreError(HeartbeatError):
    """NATS storage failed (timeout, no responders, server error)."""


class StateConflict(StoreError):
    """A compare-and-set lost: someone else wrote the key first."""


class ConfigConflict(StoreError):
    """An existing stream or bucket is configured in a way we cannot use."""


_record_encoder = msgspec.json.Encoder()
_record_decoder = msgspec.json.Decoder(Record)


def encode_record(rec: Record) -> bytes:
    return _record_encoder.encode(rec)


def decode_record(data: bytes) -> Record:
    return _record_decoder.decode(data)


@dataclass(frozen=True)
class StoreConfig:
    stream: str = "HEARTBEATS"
    bucket: str = "HEARTBEAT_STATE"
    subject_prefix: str = "heartbeat."
    replicas: int = 1
    max_age_s: float = 30 * DAY_S
    marker_ttl_s: float = 5.0

    @property
    def filter_subject(self) -> str:
        return (
            f"{self.subject_prefix}>"
            if self.subject_prefix.endswith(".")
            else (f"{self.subject_prefix}.>" if self.subject_prefix else ">")
        )


def _covers(pattern: str, subject: str) -> bool:
    """Whether NATS subject ``pattern`` matches every subject ``subject`` matches."""
    p, s = pattern.split("."), subject.split(".")
    for i, tok in enumerate(p):
        if tok == ">":
            return i < len(s)
        if i >= len(s) or (tok != "*" and tok != s[i]) or (tok == "*" and s[i] == ">"):
            return False
    return len(p) == len(s)


async def stream_or_create(js: JetStreamContext, config: StreamConfig) -> StreamConfig | None:
    """The existing stream's config, or None after creating ``config`` (file storage,
    limits retention, old messages discarded): the one path for our streams."""
    name = config.name
    try:
        return (await js.stream_info(name or "")).config
    except nats.js.errors.NotFoundError:
        pass
    except (nats.errors.Error, TimeoutError) as e:
        raise StoreError(f"cannot read stream {name}: {e}") from e
    config.storage = StorageType.FILE
    config.retention = RetentionPolicy.LIMITS
    config.discard = DiscardPolicy.OLD
    try:
        await js.add_stream(config)
    except nats.js.errors.BadRequestError as e:
        raise ConfigConflict(f"cannot create stream {name}: {e.description}") from e
    except (nats.errors.Error, TimeoutError) as e:
        raise StoreError(f"cannot create stream {name}: {e}") from e
    log.info("created stream %s for %s", name, config.subjects)
    return None


async def bucket_or_create(
    js: JetStreamContext,
    bucket: str,
    *,
    replicas: int,
    marker_ttl_s: float,
    description: str,
    create: bool = True,
    absent: str = "",
) -> KeyValue:
    """Open a KV bucket of ours, creating it when missing (one revision per key, file
    storage; ``absent`` says why it may not exist when ``create`` is False)."""
    try:
        return await js.key_value(bucket)
    except nats.js.errors.BucketNotFoundError:
        pass
    except (nats.errors.Error, TimeoutError) as e:
        raise StoreError(f"cannot open bucket {bucket}: {e}") from e
    if not create:
        raise StoreError(f"bucket {bucket} does not exist ({absent})")
    try:
        kv = await js.create_key_value(
            bucket=bucket,
            history=1,
            replicas=replicas,
            storage=StorageType.FILE,
            limit_marker_ttl=marker_ttl_s,
            description=description,
        )
    except nats.js.errors.BadRequestError as e:
        if "already in use" not in str(e.description):
            raise ConfigConflict(f"cannot create bucket {bucket}: {e.description}") from e
        return await js.key_value(bucket)  # another process created it just now
    except (nats.errors.Error, TimeoutError) as e:
        raise StoreError(f"cannot create bucket {bucket}: {e}") from e
    log.info("created bucket %s", bucket)
    return kv


async def ensure_stream(js: JetStreamContext, cfg: StoreConfig) -> None:
    """Create the heartbeat stream if missing; refuse an incompatible existing one."""
    c = await stream_or_create(
        js,
        StreamConfig(
            name=cfg.stream,
            subjects=[cfg.filter_subject],
            max_msgs_per_subject=1,
            max_age=cfg.max_age_s,
            num_replicas=cfg.replicas,
        ),
    )
    if c is None:
        return
    subjects = c.subjects or []
    if not any(_covers(s, cfg.filter_subject) for s in subjects):
        raise ConfigConflict(
            f"stream {cfg.stream} captures {subjects}, not {cfg.filter_subject}: "
            f"use --stream with another name or --subject-prefix to match"
        )
    if c.retention not in (None, RetentionPolicy.LIMITS):
        raise ConfigConflict(
            f"stream {cfg.stream} has {c.retention} retention; it needs limits retention"
        )
    if c.max_msgs_per_subject not in (None, 1):
        log.warning(
            "stream %s keeps %s messages per subject; 1 is enough",
            cfg.stream,
            c.max_msgs_per_subject,
        )


class StateStore:
    """The KV bucket of per-subject records, with compare-and-set writes."""

    def __init__(
        self, js: JetStreamContext, kv: KeyValue, cfg: StoreConfig, *, max_writes: int = 256
    ) -> None:
        self.js = js
        self.kv = kv
        self.cfg = cfg
        # Record writes in flight at once: a storm queues here, not in the connection,
        # so the lease's writes (not bounded) never wait behind thousands of them.
        self._writes = asyncio.Semaphore(max_writes)

    @classmethod
    async def open(
        cls, js: JetStreamContext, cfg: StoreConfig, *, create: bool = True
    ) -> StateStore:
        """Open the bucket, creating it when missing (unless ``create`` is False)."""
        kv = await bucket_or_create(
            js,
            cfg.bucket,
            replicas=cfg.replicas,
            marker_ttl_s=cfg.marker_ttl_s,
            description="nats-heartbeat monitor state",
            create=create,
            absent="no monitor has run here?",
        )
        return cls(js, kv, cfg)

    async def get(self, subject: str) -> tuple[Record, int] | None:
        """The committed record and its revision, or None when absent."""
        try:
            entry = await self.kv.get(subject, validate_keys=False)
        except nats.js.errors.KeyNotFoundError:
            return None
        except (nats.errors.Error, TimeoutError) as e:
            raise StoreError(f"cannot read {subject}: {e}") from e
        if entry.value is None or not entry.value:
            return None
        return decode_record(entry.value), entry.revision or 0

    async def put(self, rec: Record, revision: int | None) -> int:
        """Write ``rec`` if the key is still at ``revision`` (None or 0: create).

        Returns the new revision; raises :class:`StateConflict` on a lost race.
        """
        data = encode_record(rec)
        try:
            if revision:
                return int(
                    await self.kv.update(rec.subject, data, last=revision, validate_keys=False)
                )
            return int(await self.kv.create(rec.subject, data, validate_keys=False))
        except nats.js.errors.KeyWrongLastSequenceError as e:
            raise StateConflict(f"{rec.subject} changed since revision {revision}") from e
        except nats.js.errors.APIError as e:
            if is_cas_conflict(e):
                raise StateConflict(f"{rec.subject} changed since revision {revision}") from e
            raise StoreError(f"cannot write {rec.subject}: {e}") from e
        except (nats.errors.Error, TimeoutError) as e:
            raise StoreError(f"cannot write {rec.subject}: {e}") from e

    async def create_entry(self, key: str, data: bytes) -> int:
        """Create ``key`` (one that must not exist yet) holding raw ``data``; its revision."""
        try:
            async with self._writes:
                return int(await self.kv.create(key, data, validate_keys=False))
        except (nats.errors.Error, TimeoutError) as e:
            raise StoreError(f"cannot create {key}: {e}") from e

    async def delete_entry(self, key: str, revision: int) -> None:
        """Delete ``key`` if it is still at ``revision`` (one of the bounded writes)."""
        async with self._writes:
            await self.delete(key, revision)

    async def delete(self, subject: str, revision: int | None = None) -> None:
        """Delete a record (with ``revision``, only if unchanged)."""
        try:
            await self.kv.delete(subject, last=revision, validate_keys=False)
        except nats.js.errors.APIError as e:
            if is_cas_conflict(e):
                raise StateConflict(f"{subject} changed since revision {revision}") from e
            raise StoreError(f"cannot delete {subject}: {e}") from e
        except (nats.errors.Error, TimeoutError) as e:
            raise StoreError(f"cannot delete {subject}: {e}") from e

    async def modify(
        self, subject: str, change: Change, held: Held, *, attempts: int = 10
    ) -> Modified:
        """Apply ``change`` to the subject's record with compare-and-set.

        ``held`` is the record and revision the caller holds (None: it knows of none).
        A lost race reloads the record and applies ``change`` again, at most
        ``attempts`` times; then :class:`StateConflict`.  Other failures raise
        :class:`StoreError`.
        """
        conflicts = 0
        for _ in range(attempts):
            rec, rev = held if held is not None else (None, 0)
            new = change(rec)
            if new is None or (new is DELETE and rec is None):
                return Modified(held, False, conflicts)
            try:
                async with self._writes:
                    if new is DELETE:
                        await self.delete(subject, rev)
                        return Modified(None, True, conflicts)
                    return Modified((new, await self.put(new, rev)), True, conflicts)
            except StateConflict:
                conflicts += 1
                async with self._writes:
                    held = await self.get(subject)
        raise StateConflict(f"{subject} kept changing; gave up after {attempts} attempts")

    async def publish_expected(
        self,
        key: str,
        data: bytes,
        last: int,
        headers: Mapping[str, str] | None = None,
        *,
        timeout_s: float = 5.0,
    ) -> int:
        """Publish raw ``data`` on ``key`` if its last sequence is still ``last`` (0: the
        key has none); returns the new sequence.  For the lease, whose writes carry a
        per-message TTL or a delete marker that the KV API cannot send."""
        hdrs = {EXPECTED_LAST: str(last), **(headers or {})}
        try:
            ack = await self.js.publish(
                self.key_subject(key), data, headers=hdrs, timeout=timeout_s
            )
        except nats.js.errors.APIError as e:
            if is_cas_conflict(e):
                raise StateConflict(f"{key} changed since sequence {last}") from e
            raise StoreError(f"cannot write {key}: {e}") from e
        except (nats.errors.Error, TimeoutError, OSError) as e:
            raise StoreError(f"cannot write {key}: {e}") from e
        return int(ack.seq)

    async def read_raw(
        self, key: str, *, timeout_s: float = 5.0
    ) -> tuple[bytes, Mapping[str, str] | None, int] | None:
        """The newest message on ``key`` (data, headers, sequence), or None."""
        try:
            async with asyncio.timeout(timeout_s):
                msg = await self.js.get_msg(f"KV_{self.cfg.bucket}", subject=self.key_subject(key))
        except nats.js.errors.NotFoundError:
            return None
        except (nats.errors.Error, TimeoutError, OSError) as e:
            why = str(e) or f"no answer in {timeout_s:g}s"  # asyncio's TimeoutError says nothing
            raise StoreError(f"cannot read {key}: {why}") from e
        return msg.data or b"", msg.headers, int(msg.seq or 0)

    def key_subject(self, key: str) -> str:
        return f"$KV.{self.cfg.bucket}.{key}"

    def watch(self, on_entry: EntryHandler) -> Feed:
        """A feed of the bucket: every key's newest entry, then each change.

        ``on_entry(key, record_or_None, revision, data, headers)``: None for a deleted,
        purged or expired key (and for the lease key, whose message the caller reads).
        """
        prefix = f"$KV.{self.cfg.bucket}."

        def handle(
            subject: str, data: bytes, headers: Headers, revision: int, _stamp_ns: int
        ) -> None:
            key = sys.intern(subject[len(prefix) :])
            rec = record_of(key, data, headers)
            if rec is not None:
                _share_strings(rec, key)
            on_entry(key, rec, revision, data, headers)

        return Feed(self.js, f"KV_{self.cfg.bucket}", f"{prefix}>", handle)


EntryHandler = Callable[[str, Record | None, int, bytes, Headers], None]
"""(key, its record or None, revision, the message's data and headers)."""
Held = tuple[Record, int] | None


class Delete(Enum):
    """What a :data:`Change` returns to delete the record."""

    DELETE = "delete"


DELETE = Delete.DELETE
Change = Callable[[Record | None], "Record | Delete | None"]
"""From the record as the bucket holds it (None: absent) to the record to write,
:data:`DELETE`, or None for "nothing to do"."""


@dataclass(frozen=True)
class Modified:
    """How :meth:`StateStore.modify` ended: what the bucket holds now, as far as this
    replica knows, whether it wrote, and how many races it lost on the way."""

    held: Held
    wrote: bool
    conflicts: int


def _share_strings(rec: Record, key: str) -> None:
    """Point a mirrored record at shared strings (a monitor holds one per subject).

    The subject becomes the key object, which heartbeat.ingest's beats share too (both
    interned); hosts, replica ids and intervals repeat across subjects.  Saves ~200
    bytes a record.
    """
    if rec.subject == key:
        rec.subject = key
    rec.host = sys.intern(rec.host)
    rec.updated_by = sys.intern(rec.updated_by)
    rec.interval_ns = shared_ns(rec.interval_ns)
    if rec.grace_ns is not None:
        rec.grace_ns = shared_ns(rec.grace_ns)


def is_cas_conflict(e: nats.js.errors.APIError) -> bool:
    """The server refused a write because the key's last sequence was not the expected one."""
    return e.err_code in (10071, 10164)


def is_tombstone(data: bytes, headers: Mapping[str, str] | None) -> bool:
    """A delete, purge or TTL-expiry marker rather than a value."""
    headers = headers or {}
    return KV_OP in headers or MARKER_REASON in headers or not data


def record_of(key: str, data: bytes, headers: Mapping[str, str] | None) -> Record | None:
    """The record a bucket message holds; None for a tombstone and for the reserved
    keys (``_monitor.leader``, ``_group.<id>``: they are not records)."""
    if key.startswith(RESERVED) or is_tombstone(data, headers):
        return None
    try:
        return decode_record(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as e:
        log.error("ignoring undecodable record %s: %s", for_log(key), for_log(str(e)))
        return None
