"""Ingestion: an ordered push consumer on the heartbeat stream.

It delivers the last beat of every subject (catch-up), then every new beat.
Each message is validated (payload subject must equal the NATS subject) and
handed to ``on_beat`` with the JetStream server timestamp as ``last_seen``.

Anyone may publish on the prefix, so beyond Go's rules every beat must fit
:class:`IngestLimits`: payload size and subject length (checked before decoding,
O(1)), nesting (msgspec's recursion guard), interval and grace within bounds.
Description and host are cut to :data:`heartbeat.text.MAX_DESCRIPTION` and
:data:`~heartbeat.text.MAX_HOST`.  Rejections are counted by reason and logged at
most once per reason per 10 s, with values neutralised and cut.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections import Counter
from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass
from typing import Protocol

import nats.errors
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription
from nats.js import JetStreamContext

from heartbeat.connection import tap_directly
from heartbeat.durations import (
    HOUR,
    MAX_DURATION_NS,
    MICROSECOND,
    MILLISECOND,
    format_duration_ns,
    micro_ns,
    to_ns,
)
from heartbeat.engine import Beat, Job, shared_ns
from heartbeat.errors import InvalidHeartbeat, InvalidSubject
from heartbeat.feed import Feed
from heartbeat.ratelog import RateLog
from heartbeat.schema import (
    Message,
    decode,
    is_valid_subject,
    kept_time,
    known_valid_time,
    learn_minute,
    max_subject_length,
    read_go_wire,
    read_wire,
    validate_subject,
)
from heartbeat.text import MAX_DESCRIPTION, MAX_HOST, clip, for_log

log = logging.getLogger(__name__)

BeatHandler = Callable[[str, Beat], None]


class TapTarget(Protocol):
    """Where the tap's beats go (:class:`heartbeat.subjects.Subjects`)."""

    @property
    def tapped(self) -> Mapping[str, int]:
        """Subjects tapped and not yet confirmed (with a hash of the payload the tap saw)."""

    def on_tapped(self, subject: str, beat: Beat, data: bytes) -> bool: ...

    def confirm_tapped(self, subject: str, data: bytes, last_seen: float) -> bool: ...


_DAY = 24 * HOUR
DEFAULT_MAX_PAYLOAD = 8 * 1024
DEFAULT_MIN_INTERVAL_NS = 100 * MILLISECOND
DEFAULT_MAX_INTERVAL_NS = 31 * _DAY  # a monthly job still fits
DEFAULT_MAX_GRACE_NS = 31 * _DAY
# The subject limit when the bucket is not known: right for any bucket name up to this long.
_ANY_BUCKET = "B" * 64
REJECT_LOG_EVERY_S = 10.0


@dataclass(frozen=True, slots=True)
class IngestLimits:
    """What a beat must fit beyond Go's rules (sizes in bytes and characters, durations
    in ns).  ``min_interval_ns`` also bounds a non-zero grace (a window that short would
    only flap); a zero or absent grace means "use the interval", as on the wire."""

    max_payload: int = DEFAULT_MAX_PAYLOAD
    max_subject: int = max_subject_length(_ANY_BUCKET)
    min_interval_ns: int = DEFAULT_MIN_INTERVAL_NS
    max_interval_ns: int = DEFAULT_MAX_INTERVAL_NS
    max_grace_ns: int = DEFAULT_MAX_GRACE_NS

    @classmethod
    def for_bucket(cls, bucket: str, **overrides: int) -> IngestLimits:
        """The defaults, with the subject limit that KV ``bucket``'s writes allow."""
        overrides.setdefault("max_subject", max_subject_length(bucket))
        return cls(**overrides)

    def __post_init__(self) -> None:
        if self.max_payload <= 0 or self.max_subject <= 0:
            raise ValueError("max_payload and max_subject must be positive")
        if not 0 < self.min_interval_ns <= self.max_interval_ns:
            raise ValueError("need 0 < min_interval_ns <= max_interval_ns")
        if self.max_grace_ns < self.min_interval_ns:
            raise ValueError("need max_grace_ns >= min_interval_ns")


# Go's rules only (what the wire format itself allows): the default of the pure functions.
NO_LIMITS = IngestLimits(
    max_payload=1 << 62,
    max_subject=1 << 62,
    min_interval_ns=1,
    max_interval_ns=MAX_DURATION_NS,
    max_grace_ns=MAX_DURATION_NS,
)


def beat_from_payload(
    nats_subject: str,
    data: bytes,
    last_seen: float,
    *,
    subject_valid: bool = False,
    limits: IngestLimits = NO_LIMITS,
) -> Beat:
    """Validate one stream message (``last_seen``: its server time, epoch seconds).

    Raises :class:`InvalidHeartbeat` with a reason.  A well-formed beat takes a fast
    path; anything else goes through :func:`_checked_beat`, which gives the same
    result for what the fast path accepts, and the errors for what it does not.
    ``subject_valid``: the subject passed :func:`is_valid_subject` before (a subject
    already tracked), so the fast path need not match it again.  ``limits``: beyond
    Go's rules (default: none); payload size and subject length are checked first,
    before anything is decoded.
    """
    if len(data) > limits.max_payload or len(nats_subject) > limits.max_subject:
        _check_sizes(nats_subject, data, limits)
    beat = _fast_beat(nats_subject, data, last_seen, subject_valid, limits)
    return beat if beat is not None else _checked_beat(nats_subject, data, last_seen, limits)


def _check_sizes(nats_subject: str, data: bytes, limits: IngestLimits) -> None:
    if len(data) > limits.max_payload:
        raise InvalidHeartbeat(
            f"payload of {len(data)} bytes exceeds the limit of {limits.max_payload}",
            "payload_too_large",
        )
    if len(nats_subject) > limits.max_subject:
        raise InvalidHeartbeat(
            f"subject of {len(nats_subject)} characters exceeds the limit of "
            f"{limits.max_subject} (its state record could not be written)",
            "subject_too_long",
        )


def _check_bounds(interval_ns: int, grace_ns: int | None, limits: IngestLimits) -> None:
    if not limits.min_interval_ns <= interval_ns <= limits.max_interval_ns:
        raise InvalidHeartbeat(
            f"interval {format_duration_ns(interval_ns)} is outside "
            f"{format_duration_ns(limits.min_interval_ns)}.."
            f"{format_duration_ns(limits.max_interval_ns)}",
            "interval_out_of_range",
        )
    if grace_ns and not limits.min_interval_ns <= grace_ns <= limits.max_grace_ns:
        raise InvalidHeartbeat(
            f"grace period {format_duration_ns(grace_ns)} is outside "
            f"{format_duration_ns(limits.min_interval_ns)}.."
            f"{format_duration_ns(limits.max_grace_ns)} (or 0: the interval)",
            "grace_out_of_range",
        )


def _checked_beat(
    nats_subject: str, data: bytes, last_seen: float, limits: IngestLimits = NO_LIMITS
) -> Beat:
    """The reference path: the sizes, then full decode and validation (Go's rules, in
    Go's order), then the bounds of ``limits``."""
    _check_sizes(nats_subject, data, limits)
    msg = decode(data)
    if msg.subject != nats_subject:
        raise InvalidHeartbeat(
            f"payload names subject {msg.subject!r} but was published on {nats_subject!r}",
            "subject_mismatch",
        )
    try:
        validate_subject(nats_subject)
    except InvalidSubject as e:
        raise InvalidHeartbeat(str(e), "bad_subject") from e
    assert msg.generated_at is not None
    interval_ns = to_ns(msg.interval)
    grace_ns = to_ns(msg.grace_period) if msg.grace_period is not None else None
    _check_bounds(interval_ns, grace_ns, limits)
    learn_minute(msg.generated_at)
    wire = read_wire(data)  # decoded above, so it reads
    assert wire is not None and wire.generated_at is not None
    return Beat(
        last_seen=last_seen,
        interval_ns=interval_ns,
        grace_ns=grace_ns,
        host=clip(msg.host, MAX_HOST),
        description=clip(msg.description, MAX_DESCRIPTION),
        generated_at=kept_time(wire.generated_at, msg.generated_at),
        job=None if wire.plain else _job(msg),  # None too for an explicit plain beat
    )


_NO_JOB = Job()


def _job(msg: Message) -> Job | None:
    job = Job(
        kind=msg.kind,
        run_id=msg.run_id,
        exit_code=msg.exit_code,
        duration_ns=None if msg.duration is None else to_ns(msg.duration),
        output=msg.output,
        schedule=msg.schedule,
        timezone=msg.timezone,
        max_runtime_ns=None if msg.max_runtime is None else to_ns(msg.max_runtime),
    )
    return None if job == _NO_JOB else job


def _fast_beat(
    nats_subject: str,
    data: bytes,
    last_seen: float,
    subject_valid: bool,
    limits: IngestLimits = NO_LIMITS,
) -> Beat | None:
    """The common valid beat in ~2 µs instead of ~15; None when it needs the full checks.

    Accepts only what :func:`_checked_beat` accepts, with the same result: durations
    truncated to microseconds (at least 1 µs when positive) and within ``limits``,
    ``generated_at`` as sent once :func:`known_valid_time` vouches for it, the subject
    checked, text cut.  (The caller has checked the sizes.)  A beat with any job field
    (or any field Go does not send) set takes the checked path.
    """
    wire = read_go_wire(data)
    if wire is None or wire.subject != nats_subject or wire.generated_at is None:
        return None
    interval, grace = wire.interval, wire.grace_period
    if interval is None or not 0 < interval <= MAX_DURATION_NS:
        return None
    if interval % MICROSECOND:
        interval = micro_ns(interval)
    if not limits.min_interval_ns <= interval <= limits.max_interval_ns:
        return None
    if grace is not None:
        if not 0 <= grace <= MAX_DURATION_NS:
            return None
        if grace % MICROSECOND:
            grace = micro_ns(grace)
        if grace and not limits.min_interval_ns <= grace <= limits.max_grace_ns:
            return None
    generated_at = wire.generated_at
    if not known_valid_time(generated_at):
        return None
    if not (subject_valid or is_valid_subject(nats_subject)):
        return None
    host, description = wire.host, wire.description
    if host and len(host) > MAX_HOST:
        host = clip(host, MAX_HOST)
    if description and len(description) > MAX_DESCRIPTION:
        description = clip(description, MAX_DESCRIPTION)
    return Beat(
        last_seen=last_seen,
        interval_ns=shared_ns(interval),
        grace_ns=None if grace is None else shared_ns(grace),
        host=sys.intern(host) if host else "",
        description=description or "",
        generated_at=generated_at,
    )


def server_time(ns: int) -> float:
    """A JetStream timestamp (integer ns) as epoch seconds.

    Within a microsecond of nats-py's ``msg.metadata.timestamp.timestamp()`` (which
    rounds to whole microseconds through a datetime), at a tenth of its cost.
    """
    return ns / 1_000_000_000


class Ingestor:
    """Consumes the heartbeat stream and reports valid beats; counts rejections.

    ``known``: subjects already accepted once (the monitor's table), whose names
    need no second check.  ``limits``: what a beat must fit beyond Go's rules (the
    monitor passes ``IngestLimits.for_bucket(<its bucket>, max_payload=...)``).
    Rejections are counted in ``rejected`` by reason and logged through
    ``reject_log``: one line per reason per 10 s, with the count of those left out.
    """

    def __init__(
        self,
        js: JetStreamContext,
        stream: str,
        filter_subject: str,
        on_beat: BeatHandler,
        known: Container[str] = frozenset(),
        *,
        limits: IngestLimits | None = None,
        clock: Callable[[], float] = time.monotonic,
        tap: NATS | None = None,
        tap_into: TapTarget | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._on_beat = on_beat
        self._known = known
        self.limits = limits if limits is not None else IngestLimits()
        self.feed = Feed(js, stream, filter_subject, self._handle)
        self.filter_subject = filter_subject
        # The tap: a core subscription on the same subjects, for new subjects only.
        self._tap_nc = tap if tap_into is not None else None
        self._tap_into = tap_into
        self._tapped: Mapping[str, int] = {} if tap_into is None else tap_into.tapped
        self._wall = wall
        self._tap_task: asyncio.Task[None] | None = None
        self._tap_sub: Subscription | None = None
        self.tapped = 0  # new subjects known from the tap before the stream delivered them
        self.rejected: Counter[str] = Counter()
        self.accepted = 0
        self.reject_log = RateLog(
            log, every_s=REJECT_LOG_EVERY_S, clock=clock, what="rejected heartbeats"
        )

    @property
    def caught_up(self) -> asyncio.Event:
        return self.feed.caught_up

    async def start(self) -> None:
        await self.feed.start()
        if self._tap_nc is not None:
            self._tap_task = asyncio.ensure_future(self._tap_when_caught_up(self._tap_nc))

    async def stop(self) -> None:
        if self._tap_task is not None:
            self._tap_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._tap_task
            self._tap_task = None
        sub, self._tap_sub = self._tap_sub, None
        if sub is not None:
            with contextlib.suppress(nats.errors.Error, TimeoutError, OSError):
                await sub.unsubscribe()
        await self.feed.stop()
        self.reject_log.flush(logging.WARNING)

    async def _tap_when_caught_up(self, nc: NATS) -> None:
        """Subscribe once the stream is caught up: before, every beating subject is
        still unknown, and the tap would only repeat the catch-up's work."""
        await self.feed.caught_up.wait()
        try:
            sub = await nc.subscribe(
                self.filter_subject,
                cb=self._tap_msg,  # for another client class, which queues for a task
                pending_msgs_limit=-1,
                pending_bytes_limit=-1,
            )
        except (nats.errors.Error, TimeoutError, OSError) as e:
            log.warning(
                "no tap on %s, new subjects wait for the stream: %s",
                for_log(self.filter_subject),
                e,
            )
            return
        tap_directly(sub, self._tap)
        self._tap_sub = sub

    @property
    def tapping(self) -> bool:
        """Whether the tap's subscription is made (after the stream's catch-up)."""
        return self._tap_sub is not None

    async def _tap_msg(self, msg: Msg) -> None:
        self._tap(msg.subject, msg.data, msg.headers)

    def _tap(self, subject: str, data: bytes, _headers: object) -> None:
        """A message on the core subjects: only a subject not known yet is looked at.
        The stream's copy of every message still comes, and is what is counted,
        logged when rejected, and decided on; this one just makes it known sooner."""
        if subject in self._known or self._tap_into is None:
            return
        try:
            beat = beat_from_payload(subject, data, self._wall(), limits=self.limits)
        except InvalidHeartbeat:
            return  # its stream copy is rejected, counted and logged once
        if self._tap_into.on_tapped(subject, beat, data):
            self.tapped += 1

    def _handle(
        self, subject: str, data: bytes, _headers: object, _seq: int, stamp_ns: int
    ) -> None:
        """The hot path: every beat of every subject, ~2 µs here and in ``on_beat``."""
        if self._tapped and subject in self._tapped:
            assert self._tap_into is not None
            if self._tap_into.confirm_tapped(subject, data, server_time(stamp_ns)):
                self.accepted += 1  # the beat the tap decoded: only its time is new
                return
        try:
            beat = beat_from_payload(
                subject,
                data,
                server_time(stamp_ns),
                subject_valid=subject in self._known,
                limits=self.limits,
            )
        except InvalidHeartbeat as e:
            self.reject(subject, e.reason, str(e))
            return
        self.accepted += 1
        self._on_beat(subject, beat)

    def reject(self, subject: str, reason: str, detail: str) -> None:
        """Count a rejected message and log it at a bounded rate, values made safe."""
        self.rejected[reason] += 1
        self.reject_log.log(
            reason,
            logging.WARNING,
            "rejected heartbeat on %s (%s): %s",
            _Safe(subject),
            reason,
            _Safe(detail, 200),
        )


class _Safe:
    """A value neutralised and cut when (and only when) a log line is formatted."""

    __slots__ = ("limit", "value")

    def __init__(self, value: object, limit: int = 120) -> None:
        self.value = value
        self.limit = limit

    def __str__(self) -> str:
        return for_log(self.value, self.limit)
