"""The status JSON a monitor replica serves on ``GET /`` (the Go monitor's schema).

Captured from the Go monitor::

    {"observed_at":"2026-11-29T01:59:09.640824111Z","subjects":[{"subject":"heartbeat.smoke",
     "description":"heartbeat.smoke","host":"vm","last_seen":"2026-11-29T01:59:09.13597927Z",
     "interval":"1s","allowed_window":"1s","missing":false,"alert_active":false}]}

Durations are strings in Go's ``Duration.String()`` form (``1m30s``), times are RFC 3339.
Optional fields (``host``, ``last_seen``, ``grace``, ``miss_for``, ``miss_count``) are
``None`` when unset and then left out of the JSON; unknown fields are ignored when
decoding, so the format can grow.  Field names are exactly the JSON names.

Ours, not Go's, and only for jobs (all optional, left out for a plain heartbeat):
``job_alert`` (``failed`` or ``running_long`` while one is active), ``last_run``
(``success``, ``fail`` or ``running``), ``exit_code``, ``run_duration`` and
``output`` (the last finished run; output neutralised and cut to its end),
``running_since``, ``schedule``, ``timezone`` and ``next_run_due`` (the scheduled
run expected next).

Ours, for the status page: a paged answer (``?limit=``, ``offset``, ``after``) adds
``total`` (how many subjects matched), and ``?counts=1`` adds ``counts`` (the
pattern's subjects per state: ``ok``, ``late``, ``alert``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated

import msgspec

from heartbeat.durations import parse_duration_ns
from heartbeat.errors import HeartbeatError, InvalidDuration
from heartbeat.schema import GO_ZERO_TIME, parse_time

NonNegative = Annotated[int, msgspec.Meta(ge=0)]


class InvalidStatus(HeartbeatError, ValueError):
    """Bytes that are not a monitor's status JSON."""


class SubjectStatus(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True, gc=False):
    """One monitored subject as a monitor sees it at ``StatusReport.observed_at``.

    ``gc=False``: it holds only strings, numbers and times, never a cycle, and a status
    answer makes one per subject (16 bytes and the collector's bookkeeping each)."""

    subject: str
    description: str
    host: str | None = None
    last_seen: datetime | None = None
    interval: str
    grace: str | None = None
    allowed_window: str
    missing: bool
    miss_for: str | None = None
    miss_count: int | None = None
    alert_active: bool
    # Ours, for jobs (see the module docstring).
    job_alert: str | None = None
    last_run: str | None = None
    exit_code: int | None = None
    run_duration: str | None = None
    output: str | None = None
    running_since: datetime | None = None
    schedule: str | None = None
    timezone: str | None = None
    next_run_due: datetime | None = None
    # Ours: True when no route sends this subject's notifications anywhere.
    unrouted: bool | None = None
    # Ours: what keeps it quiet now (heartbeat.quiet): ``paused``, ``silenced``,
    # ``maint`` or ``suppressed``; until when (None: until told / the parent is back);
    # the silence id, maintenance window name or parent subject.
    quiet: str | None = None
    quiet_until: datetime | None = None
    quiet_ref: str | None = None


class AwareRows(list[SubjectStatus]):
    """Rows whose every time is timezone-aware, as :func:`heartbeat.status.build_report`
    makes them (all UTC): :func:`encode_status` takes them as checked, sparing a pass
    over every row (~6 ms at 100k).  Not to be changed in place: a row put in later
    is not checked."""

    __slots__ = ()


class SilenceStatus(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """An active (or scheduled) silence or pause, as the status lists it."""

    id: str
    kind: str  # "silence" or "pause"
    subjects: list[str]  # NATS patterns
    starts: datetime
    ends: datetime | None = None  # None: a pause, until resumed
    reason: str = ""
    by: str = ""


class StatusReport(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """The whole status answer: when it was taken and every subject (sorted by subject)."""

    observed_at: datetime
    subjects: list[SubjectStatus]
    # Ours, not the Go monitor's: which replica answered and who leads.
    monitor: str | None = None
    leader: bool | None = None
    leader_id: str | None = None
    # Ours: silences and pauses in force or scheduled (heartbeat.silences).
    silences: list[SilenceStatus] | None = None
    # Ours, for paged answers (``?limit=``, ``offset``, ``after``, ``counts=1``): how many
    # subjects matched in all, and how many of the pattern's are ok, late or alert.
    total: int | None = None
    counts: dict[str, int] | None = None

    @property
    def alerts_firing(self) -> int:
        """How many subjects have an active alert (a missing one, or a job alert)."""
        return sum(1 for s in self.subjects if s.alert_active or s.job_alert)


# What is decoded: times stay text so they are parsed exactly (nine fractional digits
# truncated to microseconds, as Go would print them), durations are checked below.
class _WireSubject(msgspec.Struct, kw_only=True, frozen=True):
    subject: Annotated[str, msgspec.Meta(min_length=1)]
    description: str
    host: str | None = None
    last_seen: str | None = None
    interval: str
    grace: str | None = None
    allowed_window: str
    missing: bool
    miss_for: str | None = None
    miss_count: NonNegative | None = None
    alert_active: bool
    job_alert: str | None = None
    last_run: str | None = None
    exit_code: int | None = None
    run_duration: str | None = None
    output: str | None = None
    running_since: str | None = None
    schedule: str | None = None
    timezone: str | None = None
    next_run_due: str | None = None
    unrouted: bool | None = None
    quiet: str | None = None
    quiet_until: str | None = None
    quiet_ref: str | None = None


class _WireSilence(msgspec.Struct, kw_only=True, frozen=True):
    id: str
    kind: str
    subjects: list[str]
    starts: str
    ends: str | None = None
    reason: str = ""
    by: str = ""


class _WireReport(msgspec.Struct, kw_only=True, frozen=True):
    observed_at: str
    subjects: list[_WireSubject] | None
    monitor: str | None = None
    leader: bool | None = None
    leader_id: str | None = None
    silences: list[_WireSilence] | None = None
    total: NonNegative | None = None
    counts: dict[str, NonNegative] | None = None


_decoder = msgspec.json.Decoder(_WireReport)
_encoder = msgspec.json.Encoder()


def decode_status(data: bytes | str) -> StatusReport:
    """Parse and check a status answer; raise :class:`InvalidStatus` if it is not one.

    Go's zero time (``0001-01-01T00:00:00Z``) as ``last_seen`` means "never" and
    becomes ``None``; as ``observed_at`` it is rejected (no monitor sends it).
    """
    try:
        wire = _decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        raise InvalidStatus(str(e)) from e
    observed_at = _time(wire.observed_at, "$.observed_at")
    if observed_at is None:
        raise InvalidStatus("$.observed_at is the zero time")
    subjects = [_subject(s, f"$.subjects[{i}]") for i, s in enumerate(wire.subjects or ())]
    return StatusReport(
        observed_at=observed_at,
        subjects=subjects,
        monitor=wire.monitor,
        leader=wire.leader,
        leader_id=wire.leader_id,
        silences=None
        if wire.silences is None
        else [_silence(x, f"$.silences[{i}]") for i, x in enumerate(wire.silences)],
        total=wire.total,
        counts=wire.counts,
    )


def encode_status(report: StatusReport) -> bytes:
    """The JSON of ``report`` (optional fields left out when ``None``).

    Times must be timezone-aware: Go (and :func:`decode_status`) reject RFC 3339
    without an offset.
    """
    if _naive(report.observed_at):
        raise InvalidStatus("$.observed_at must be timezone-aware")
    if type(report.subjects) is not AwareRows:
        _check_rows(report.subjects)
    for i, x in enumerate(report.silences or ()):
        for name, value in (("starts", x.starts), ("ends", x.ends)):
            if _naive(value):
                raise InvalidStatus(f"$.silences[{i}].{name} must be timezone-aware")
    return _encoder.encode(report)


def _check_rows(rows: list[SubjectStatus]) -> None:
    """InvalidStatus naming the first time without an offset.  Checked before any
    path is formatted: at 100k subjects the paths cost more than the encoding."""
    for i, s in enumerate(rows):
        if _naive(s.last_seen) or (
            (s.running_since or s.next_run_due or s.quiet_until)
            and (_naive(s.running_since) or _naive(s.next_run_due) or _naive(s.quiet_until))
        ):
            for name in ("last_seen", "running_since", "next_run_due", "quiet_until"):
                if _naive(getattr(s, name)):
                    raise InvalidStatus(f"$.subjects[{i}].{name} must be timezone-aware")


def _naive(value: datetime | None) -> bool:
    """A time without an offset (UTC, the monitor's own, is checked by identity)."""
    return value is not None and value.tzinfo is not UTC and value.utcoffset() is None


def _subject(w: _WireSubject, where: str) -> SubjectStatus:
    return SubjectStatus(
        subject=w.subject,
        description=w.description,
        host=w.host,
        last_seen=None if w.last_seen is None else _time(w.last_seen, f"{where}.last_seen"),
        interval=_duration(w.interval, f"{where}.interval"),
        grace=None if w.grace is None else _duration(w.grace, f"{where}.grace"),
        allowed_window=_duration(w.allowed_window, f"{where}.allowed_window"),
        missing=w.missing,
        miss_for=None if w.miss_for is None else _duration(w.miss_for, f"{where}.miss_for"),
        miss_count=w.miss_count,
        alert_active=w.alert_active,
        job_alert=w.job_alert,
        last_run=w.last_run,
        exit_code=w.exit_code,
        run_duration=None
        if w.run_duration is None
        else _duration(w.run_duration, f"{where}.run_duration"),
        output=w.output,
        running_since=_optional_time(w.running_since, f"{where}.running_since"),
        schedule=w.schedule,
        timezone=w.timezone,
        next_run_due=_optional_time(w.next_run_due, f"{where}.next_run_due"),
        unrouted=w.unrouted,
        quiet=w.quiet,
        quiet_until=_optional_time(w.quiet_until, f"{where}.quiet_until"),
        quiet_ref=w.quiet_ref,
    )


def _silence(w: _WireSilence, where: str) -> SilenceStatus:
    starts = _time(w.starts, f"{where}.starts")
    if starts is None:
        raise InvalidStatus(f"{where}.starts is the zero time")
    return SilenceStatus(
        id=w.id,
        kind=w.kind,
        subjects=w.subjects,
        starts=starts,
        ends=_optional_time(w.ends, f"{where}.ends"),
        reason=w.reason,
        by=w.by,
    )


def _optional_time(text: str | None, where: str) -> datetime | None:
    return None if text is None else _time(text, where)


def _time(text: str, where: str) -> datetime | None:
    try:
        value = parse_time(text)
    except (ValueError, OverflowError) as e:  # InvalidHeartbeat is a ValueError
        raise InvalidStatus(f"{where} {text!r} is not an RFC 3339 time") from e
    return None if value == GO_ZERO_TIME else value


def _duration(text: str, where: str) -> str:
    try:
        parse_duration_ns(text)
    except InvalidDuration as e:
        raise InvalidStatus(f"{where} {text!r} is not a Go duration") from e
    return text
