"""History: what happened to each subject, and who was told, as JSON events.

Every transition the leader commits (alert, repeat, resolved, the job alerts,
retired), an alert's ``late`` before it, an alert or repeat kept back by a quiet
(``silenced``, ``paused``, ``maint``, ``suppressed``, heartbeat.quiet; ``late``
before a kept-back alert too) and every delivery outcome per channel (sent, failed
with a retry to come, dropped) becomes one :class:`Event`, appended to the JetStream stream
``HEARTBEAT_EVENTS`` on ``<prefix>.<subject>`` by :mod:`heartbeat.history_writer`.

This module is pure: the schema, the event kinds, and the deterministic ids sent
as ``Nats-Msg-Id``.  An id is built only from what every replica would build the
same way (alert id, notification id, channel, kind, the record's revision), so an
event published twice (a retry, a new leader re-emitting what the old one may have
written before it died) is stored once by the stream's duplicate window
(docs/architecture.md, "History").
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from enum import StrEnum

import msgspec

from heartbeat.durations import SECOND, format_duration_ns, parse_duration
from heartbeat.engine import Record
from heartbeat.errors import InvalidDuration
from heartbeat.notification import EventKind, Notification, epoch_rfc3339
from heartbeat.quiet import Quiet, QuietKind
from heartbeat.routing import valid_pattern
from heartbeat.text import neutral

DEFAULT_STREAM = "HEARTBEAT_EVENTS"
DEFAULT_PREFIX = "heartbeat_events"
DEFAULT_MAX_AGE_S = 30 * 86_400.0
MIN_DUPLICATE_WINDOW_S = 600.0  # a failover (lease ttl + catch-up) many times over
DETAIL_MAX = 200  # characters of an event's detail
MSG_ID = "Nats-Msg-Id"


class Kind(StrEnum):
    """What an event records.  Open: readers keep kinds they do not know (the field is
    a plain string), so new kinds can be added without breaking old readers."""

    ALERT = "alert"
    REPEAT = "repeat"
    RESOLVED = "resolved"
    FAILED = "failed"  # a job run failed
    RUNNING_LONG = "running_long"
    RAN_LONG = "ran_long"
    JOB_RESOLVED = "job_resolved"
    RETIRED = "retired"
    DELIVERY = "delivery"  # one channel's outcome for one notification (see Result)
    LATE = "late"  # silent past its window: written with the alert or quiet it led to
    # An alert or repeat kept back, by what (heartbeat.quiet.QuietKind).
    SILENCED = "silenced"
    PAUSED = "paused"
    MAINT = "maint"
    SUPPRESSED = "suppressed"


class Result(StrEnum):
    """A delivery outcome."""

    SENT = "sent"
    FAILED = "failed"  # this round failed; the delivery stays pending and is retried
    DROPPED = "dropped"  # given up: a permanent error, or the channel was removed


class Event(msgspec.Struct, kw_only=True, omit_defaults=True, frozen=True):
    """One history event, as stored (plain JSON; ``nats stream view`` shows it).

    ``time`` is RFC 3339 UTC: a transition's is when it was decided (so the same on
    every re-emission), a delivery's when its round ended.  ``kind`` is a string, not
    :class:`Kind`, so that events of kinds added later still decode.
    """

    time: str
    subject: str
    kind: str
    monitor: str
    alert_id: str | None = None
    notification_id: str | None = None
    channel: str | None = None
    result: str | None = None
    attempt: int | None = None
    detail: str | None = None
    notification_kind: str | None = None  # a delivery's notification: alert, repeat, ...
    id: str | None = None  # the Nats-Msg-Id it was written with


_encoder = msgspec.json.Encoder()
_decoder = msgspec.json.Decoder(Event)


def encode_event(event: Event) -> bytes:
    return _encoder.encode(event)


def decode_event(data: bytes) -> Event:
    """Raises msgspec.DecodeError / ValidationError for anything not an event."""
    return _decoder.decode(data)


@dataclass(frozen=True)
class HistoryConfig:
    """Where events go; ``max_age_s`` 0 turns history off."""

    stream: str = DEFAULT_STREAM
    prefix: str = DEFAULT_PREFIX
    max_age_s: float = DEFAULT_MAX_AGE_S
    duplicate_window_s: float = MIN_DUPLICATE_WINDOW_S
    replicas: int = 1

    @property
    def enabled(self) -> bool:
        return self.max_age_s > 0

    @property
    def filter_subject(self) -> str:
        return f"{self.prefix}.>"

    def subject_for(self, subject: str) -> str:
        return f"{self.prefix}.{subject}"

    def subject_of(self, stream_subject: str) -> str:
        """The heartbeat subject an event was stored under."""
        return stream_subject.removeprefix(self.prefix + ".")


def duplicate_window_for(lease_ttl_s: float, max_age_s: float) -> float:
    """The stream's duplicate window: a failover (lease ttl, catch-up) plus a wide
    margin, and never longer than the stream keeps anything."""
    return min(max(MIN_DUPLICATE_WINDOW_S, 60 * lease_ttl_s), max_age_s)


def overlaps(a: str, b: str) -> bool:
    """Whether NATS patterns ``a`` and ``b`` can match one subject."""
    ta, tb = a.split("."), b.split(".")
    for x, y in zip(ta, tb, strict=False):
        if x == ">" or y == ">":
            return True
        if x != y and x != "*" and y != "*":
            return False
    return len(ta) == len(tb)


DEFAULT_SINCE_S = 86_400.0
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000  # per /history answer


@dataclass(frozen=True)
class HistoryQuery:
    """Which events: subjects matching ``pattern``, decided within ``since_s``, the
    newest ``limit``."""

    pattern: str = ">"
    since_s: float = DEFAULT_SINCE_S
    limit: int = DEFAULT_LIMIT

    @classmethod
    def parse(cls, query: Mapping[str, str], *, max_limit: int = MAX_LIMIT) -> HistoryQuery:
        """From ``?subject=PATTERN&since=SECONDS|DURATION&limit=N``; ValueError if bad."""
        unknown = set(query) - {"subject", "since", "limit"}
        if unknown:
            raise ValueError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        pattern = query.get("subject") or ">"
        if (why := valid_pattern(pattern)) is not None:
            raise ValueError(f"subject pattern {pattern[:80]!r} {why}")
        since = query.get("since")
        since_s = DEFAULT_SINCE_S if since is None else parse_since(since)
        limit = query.get("limit")
        if limit is not None and not (limit.isdigit() and 0 < int(limit) <= max_limit):
            raise ValueError(f"limit must be an integer from 1 to {max_limit}, not {limit[:40]!r}")
        return cls(pattern, since_s, int(limit) if limit is not None else DEFAULT_LIMIT)


def parse_since(text: str) -> float:
    """Seconds (``7200``) or a Go duration (``2h``); ValueError unless positive."""
    try:
        seconds = float(text) if text.replace(".", "", 1).isdigit() else None
        if seconds is None:
            seconds = parse_duration(text).total_seconds()
    except (InvalidDuration, ValueError) as e:
        raise ValueError(f"since must be seconds or a duration (2h, 30m), not {text[:40]!r}") from e
    if not 0 < seconds < 1e10:
        raise ValueError(f"since must be positive, not {text[:40]!r}")
    return seconds


def encode_events(events: list[Event]) -> bytes:
    """The ``GET /history`` body: ``{"events": [...]}``, oldest first."""
    return _encoder.encode({"events": events})


# ----- ids -------------------------------------------------------------------------


def transition_id(kind: str, notification_id: str) -> str:
    """A transition is one notification decided: its id names it for ever."""
    return f"{kind}:{notification_id}"


def delivery_id(result: str, notification_id: str, channel: str, monitor: str, rnd: int) -> str:
    """Sent and dropped happen once per notification and channel, whoever leads
    (a resend after a crash is the same outcome); each failed round is its own
    event, named by the replica that ran it and its round there."""
    if result == Result.FAILED:
        return f"failed:{notification_id}:{channel}:{monitor}:{rnd}"
    return f"{result}:{notification_id}:{channel}"


def late_id(subject: str, last_seen: float) -> str:
    """Late once per silence: named by the last beat it followed."""
    return f"late:{subject}:{last_seen:.6f}"


def hushed_id(kind: str, subject: str, ref: str, rec: Record) -> str:
    """What kept back an alert (named by the last beat) or a repeat (by the
    notification it would have followed): every leader deciding it names it the same."""
    what = f"{rec.alert_id}-{rec.notify_count}" if rec.alert_active else f"{rec.last_seen:.6f}"
    return f"{kind}:{subject}:{ref}:{what}"


def retired_id(subject: str, revision: int) -> str:
    """Retiring ends the record at ``revision``: every replica names it the same."""
    return f"retired:{subject}:{revision}"


# ----- events from decisions ---------------------------------------------------------


def kind_of(n: Notification, rec: Record | None) -> Kind | None:
    """The transition a notification stands for (a job's resolved is ``job_resolved``);
    None for one that is no subject's transition (groups, notices about the monitor)."""
    if n.event is EventKind.RESOLVED:
        # Only a job's notifications carry run facts; a heartbeat's resolved has none.
        job_facts = n.run_id or n.exit_code is not None or n.duration_ns is not None
        job = rec.job if rec is not None else None
        is_job = job_facts or (job is not None and n.alert_id == job.alert_id)
        return Kind.JOB_RESOLVED if is_job else Kind.RESOLVED
    return _KINDS.get(str(n.event))


# The notification events a record's pending can hold, as transitions.
_KINDS = {str(k): k for k in (Kind.ALERT, Kind.REPEAT, Kind.FAILED, Kind.RUNNING_LONG,
                              Kind.RAN_LONG)}  # fmt: skip


def transition_detail(n: Notification, kind: Kind) -> str:
    """A short line about the transition, for people (neutralised)."""
    missed = format_duration_ns(n.missed_for_ns)
    if kind in (Kind.ALERT, Kind.REPEAT):
        beats = f" ({n.miss_count} beats)" if n.miss_count else ""
        text = f"missed {missed}{beats}"
    elif kind is Kind.RESOLVED:
        text = f"back after {missed} of silence"
    elif kind in (Kind.FAILED, Kind.RAN_LONG):
        took = format_duration_ns(n.duration_ns) if n.duration_ns is not None else "?"
        text = f"exit {n.exit_code} after {took}" if n.exit_code is not None else f"took {took}"
        last = n.output.strip().splitlines()[-1:] if n.output else []
        if last:
            text += f": {last[0]}"
    elif kind is Kind.RUNNING_LONG:
        took = format_duration_ns(n.duration_ns) if n.duration_ns is not None else "?"
        text = f"running for {took}"
    elif kind is Kind.JOB_RESOLVED:
        text = f"job alert open for {missed}"
    else:
        text = ""
    return neutral(text, DETAIL_MAX)


def transition_event(n: Notification, rec: Record | None, monitor: str) -> Event | None:
    kind = kind_of(n, rec)
    if kind is None:
        return None
    return Event(
        time=epoch_rfc3339(n.created_at),
        subject=n.subject,
        kind=str(kind),
        monitor=monitor,
        alert_id=n.alert_id,
        notification_id=n.notification_id,
        detail=transition_detail(n, kind) or None,
        id=transition_id(str(kind), n.notification_id),
    )


def transition_events(n: Notification, rec: Record | None, monitor: str) -> list[Event]:
    """A notification's transition, an alert's preceded by ``late`` (when the window
    ran out)."""
    e = transition_event(n, rec, monitor)
    if e is None:
        return []
    if n.event is not EventKind.ALERT or n.last_seen is None:
        return [e]
    return [late_event(n.subject, n.last_seen, n.window_ns, monitor, n.alert_id), e]


def late_event(
    subject: str, last_seen: float, window_ns: int, monitor: str, alert_id: str | None = None
) -> Event:
    """Silent past its window (when it ran out); with the id of the alert it led to."""
    return Event(
        time=epoch_rfc3339(last_seen + window_ns / SECOND),
        subject=subject,
        kind=str(Kind.LATE),
        monitor=monitor,
        alert_id=alert_id or None,
        detail=f"no heartbeat within {format_duration_ns(window_ns)}",
        id=late_id(subject, last_seen),
    )


def hushed_events(rec: Record, quiet: Quiet, now: float, monitor: str) -> list[Event]:
    """An alert (``late`` first) or a repeat due at ``now`` that ``quiet`` kept back."""
    kind = _QUIET_KINDS[quiet.kind]
    held = "repeat" if rec.alert_active else "alert"
    e = Event(
        time=epoch_rfc3339(now),
        subject=rec.subject,
        kind=str(kind),
        monitor=monitor,
        alert_id=rec.alert_id if rec.alert_active else None,
        detail=neutral(f"{held} kept back ({quiet.kind} by {quiet.ref})", DETAIL_MAX),
        id=hushed_id(str(kind), rec.subject, quiet.ref, rec),
    )
    if rec.alert_active or rec.last_seen <= 0:
        return [e]
    return [late_event(rec.subject, rec.last_seen, rec.window_ns, monitor), e]


_QUIET_KINDS = {
    QuietKind.SILENCED: Kind.SILENCED,
    QuietKind.PAUSED: Kind.PAUSED,
    QuietKind.MAINT: Kind.MAINT,
    QuietKind.SUPPRESSED: Kind.SUPPRESSED,
}


def committed(old: Record | None, new: Record, notification: Notification | None) -> list[Event]:
    """The transitions one commit made: every notification new in ``new.pending``
    (a commit can queue two: a heartbeat's resolved and a job's failed), and the
    outcome's notification when no channel took it (so it is pending nowhere)."""
    before = {p.notification.notification_id for p in (old.pending if old else ())}
    made = [p.notification for p in new.pending if p.notification.notification_id not in before]
    if notification is not None and all(
        m.notification_id != notification.notification_id for m in made
    ):
        made.append(notification)
    return [e for n in made for e in transition_events(n, new, new.updated_by)]


def resumed(records: Iterable[Record], now: float, horizon_s: float) -> Iterator[Event]:
    """What a new leader publishes again on taking over: the transition of every
    notification still pending that was decided within ``horizon_s`` (inside the
    stream's duplicate window, so one its predecessor did write is dropped as a
    duplicate).  A predecessor killed between its commit and its publish loses
    nothing."""
    for rec in records:
        for p in rec.pending:
            if now - p.notification.created_at < horizon_s:
                yield from transition_events(p.notification, rec, rec.updated_by)


def delivery_event(
    subject: str,
    n: Notification,
    channel: str,
    result: Result,
    *,
    monitor: str,
    now: float,
    rnd: int,
    detail: str = "",
) -> Event:
    """One channel's outcome for notification ``n`` (``rnd``: this replica's round)."""
    return Event(
        time=epoch_rfc3339(now),
        subject=subject,
        kind=str(Kind.DELIVERY),
        monitor=monitor,
        alert_id=n.alert_id or None,
        notification_id=n.notification_id,
        channel=channel,
        result=str(result),
        attempt=rnd,
        detail=neutral(detail, DETAIL_MAX) or None,
        notification_kind=str(n.event),
        id=delivery_id(str(result), n.notification_id, channel, monitor, rnd),
    )


def retired_event(subject: str, revision: int, *, monitor: str, now: float, why: str) -> Event:
    return Event(
        time=epoch_rfc3339(now),
        subject=subject,
        kind=str(Kind.RETIRED),
        monitor=monitor,
        detail=neutral(why, DETAIL_MAX) or None,
        id=retired_id(subject, revision),
    )
