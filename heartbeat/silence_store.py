"""The silences bucket in NATS: create it, list, add, end and purge entries, watch it.

Used by the CLI (``silence``, ``pause``, ``resume``: no monitor needed) and by every
monitor replica (a watch into its :class:`~heartbeat.silences.SilenceBook`).  Every
write is a compare-and-set.  When the bucket allows per-message TTLs (nats-server
2.11+, a bucket created by us), each write also carries one that expires the entry
:data:`~heartbeat.silences.KEEP_ENDED_S` after its end: a backstop for the purge,
never relied on (a pause, with no end, has none).
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

import nats.errors
import nats.js.errors
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from heartbeat.connection import Headers
from heartbeat.feed import Feed, read_last
from heartbeat.silences import KEEP_ENDED_S, InvalidSilence, Silence, decode_silence, ended_at
from heartbeat.silences import encode_silence as encode
from heartbeat.store import (
    EXPECTED_LAST,
    StoreError,
    bucket_or_create,
    is_cas_conflict,
    is_tombstone,
)
from heartbeat.text import for_log

log = logging.getLogger(__name__)

MARKER_TTL_S = 5.0  # how long a delete or TTL-expiry marker stays (as the state bucket's)
PURGE_MARKER_TTL_S = 60  # a purge's own marker expires too, so old ids leave no trace
# Longer TTLs are not sent: the server counts them in int64 nanoseconds (~292 years), and one
# that overflows expires the entry at once.  The purge still removes such an entry.
MAX_TTL_S = 10 * 365 * 86_400


class UnknownSilence(StoreError):
    """No silence or pause has that id."""


Entry = tuple[str, Silence | None, int]
"""(key, the silence or None when the value is not one, revision)."""


class SilenceStore:
    def __init__(self, js: JetStreamContext, kv: KeyValue, bucket: str, *, ttl: bool) -> None:
        self.js = js
        self.kv = kv
        self.bucket = bucket
        self.ttl = ttl  # the bucket takes per-message TTLs

    @classmethod
    async def open(
        cls, js: JetStreamContext, bucket: str, *, replicas: int = 1, create: bool = True
    ) -> SilenceStore:
        """Open the bucket, creating it when missing (with the settings the monitor uses)."""
        kv = await bucket_or_create(
            js,
            bucket,
            replicas=replicas,
            marker_ttl_s=MARKER_TTL_S,
            description="nats-heartbeat silences and pauses",
            create=create,
            absent="no silence was ever added",
        )
        try:
            info = await js.stream_info(f"KV_{bucket}")
        except (nats.errors.Error, TimeoutError) as e:
            raise StoreError(f"cannot read bucket {bucket}: {e}") from e
        return cls(js, kv, bucket, ttl=bool(info.config.allow_msg_ttl))

    def key_subject(self, key: str) -> str:
        return f"$KV.{self.bucket}.{key}"

    async def entries(self, *, timeout_s: float = 10.0) -> list[Entry]:
        """Every key's newest value (a value that is not a silence: None, logged)."""
        prefix = self.key_subject("")
        try:
            got = await read_last(self.js, f"KV_{self.bucket}", f"{prefix}>", timeout_s=timeout_s)
        except TimeoutError as e:
            raise StoreError(f"listing bucket {self.bucket} took longer than {timeout_s:g}s") from e
        except (nats.errors.Error, OSError) as e:
            raise StoreError(f"cannot list bucket {self.bucket}: {e or type(e).__name__}") from e
        out: list[Entry] = []
        for subject, (data, headers, rev) in sorted(got.items(), key=lambda kv: kv[1][2]):
            if not is_tombstone(data, headers):
                out.append(self._entry(subject[len(prefix) :], data, rev))
        return out

    async def _get(self, key: str) -> Entry | None:
        try:
            entry = await self.kv.get(key, validate_keys=False)
        except nats.js.errors.KeyNotFoundError:
            return None
        except (nats.errors.Error, TimeoutError) as e:
            raise StoreError(f"cannot read {key}: {e}") from e
        if not entry.value:  # a TTL-expiry marker (a delete raises KeyNotFoundError)
            return None
        return self._entry(key, entry.value, entry.revision or 0)

    @staticmethod
    def _entry(key: str, value: bytes, rev: int) -> Entry:
        try:
            return key, decode_silence(key, value), rev
        except InvalidSilence as e:
            log.warning("ignoring silence entry %s: %s", for_log(key), for_log(str(e)))
            return key, None, rev

    async def get(self, key: str) -> Entry:
        got = await self._get(key)
        if got is None or got[1] is None:
            raise UnknownSilence(f"no silence or pause with id {key!r}")
        return got

    async def write(self, s: Silence, last: int, now: float) -> int:
        """Write ``s`` if its key is still at revision ``last`` (0: new); the revision."""
        ttl = None
        ends = s.ends_s
        if self.ttl and ends is not None:
            ttl = max(1, int(max(ends, now) - now + KEEP_ENDED_S))
            if ttl > MAX_TTL_S:
                ttl = None
        try:
            ack = await self.js.publish(
                self.key_subject(s.id),
                encode(s),
                headers={EXPECTED_LAST: str(last)},
                msg_ttl=ttl,
                timeout=5.0,
            )
        except nats.js.errors.APIError as e:
            if is_cas_conflict(e):
                raise ConflictError(f"{s.id} changed meanwhile") from e
            raise StoreError(f"cannot write silence {s.id}: {e}") from e
        except (nats.errors.Error, TimeoutError, OSError) as e:
            raise StoreError(f"cannot write silence {s.id}: {e}") from e
        return int(ack.seq)

    async def end(self, key: str, now: float) -> tuple[Silence, bool]:
        """End ``key`` at ``now``: the entry, and False if it had already ended (it
        keeps its end).  :class:`UnknownSilence` if there is no such entry."""
        for _ in range(10):
            _, s, rev = await self.get(key)
            assert s is not None
            new = ended_at(s, now)
            if new is s:
                return s, False
            try:
                await self.write(new, rev, now)
                return new, True
            except ConflictError:
                continue
        raise StoreError(f"silence {key} kept changing; try again")

    async def purge(self, key: str, revision: int) -> bool:
        """Remove ``key`` if still at ``revision`` (an entry long ended); False if it
        changed meanwhile."""
        headers = {"KV-Operation": "PURGE", "Nats-Rollup": "sub", EXPECTED_LAST: str(revision)}
        try:
            await self.js.publish(
                self.key_subject(key),
                b"",
                headers=headers,
                msg_ttl=PURGE_MARKER_TTL_S if self.ttl else None,
                timeout=5.0,
            )
        except nats.js.errors.APIError as e:
            if is_cas_conflict(e):
                return False
            raise StoreError(f"cannot purge silence {key}: {e}") from e
        except (nats.errors.Error, TimeoutError, OSError) as e:
            raise StoreError(f"cannot purge silence {key}: {e}") from e
        return True

    def watch(self, on_entry: Callable[[str, bytes | None, int], None]) -> Feed:
        """A feed of the bucket: every key's newest entry, then each change;
        ``on_entry(key, data or None for a delete/purge/expiry, revision)``."""
        prefix = f"$KV.{self.bucket}."

        def handle(
            subject: str, data: bytes, headers: Headers, revision: int, _stamp_ns: int
        ) -> None:
            key = sys.intern(subject[len(prefix) :])
            on_entry(key, None if is_tombstone(data, headers) else data, revision)

        return Feed(self.js, f"KV_{self.bucket}", f"{prefix}>", handle)


class ConflictError(StoreError):
    """A compare-and-set on a silence lost."""
