"""What a notification says: decided by the engine, delivered by the notifiers.

Kept apart from :mod:`heartbeat.notify` so the pure engine imports no HTTP client.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum

import msgspec

from heartbeat.durations import SECOND, format_duration_ns
from heartbeat.schema import format_time


class EventKind(StrEnum):
    ALERT = "alert"
    REPEAT = "repeat"
    RESOLVED = "resolved"
    BLIND = "blind"
    SIGHT_RESTORED = "sight_restored"
    GROUP = "group"
    FAILED = "failed"  # a job run failed (resolved by the next success)
    RUNNING_LONG = "running_long"  # a job run is past its max_runtime (resolved by its end)
    RAN_LONG = "ran_long"  # a job run finished but took too long: a one-off report
    OVER_CAPACITY = "over_capacity"
    TEST = "test"  # nats-heartbeat notify-test; never committed to KV


class Notification(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One notification, decided and committed to KV before any channel sends it.

    ``notification_id`` is unique per notification and the same on every retry
    (channels that support it send it as an idempotency key); ``alert_id`` is the
    same for an alert, its repeats and its resolved notice.  Times are epoch
    seconds, durations integer nanoseconds (as on the wire).

    A ``group`` notification (see :func:`group_notice`) carries several others in
    ``members`` and is delivered as one message by human channels; its own
    per-subject fields are empty.  ``members`` defaults to empty, so records
    stored before groups existed still decode.

    The job fields (``exit_code``, ``duration_ns``, ``output``, ``run_id``,
    ``max_runtime_ns``) describe the run a job notification is about; they are
    optional, and left out of the stored record and the webhook body when unset.
    So are ``dependents_missing`` and ``dependents``: on a ``[[depends]]`` parent's
    alert and repeats, how many of its dependents are missing too and which (the
    first few).
    """

    event: EventKind
    subject: str
    description: str
    host: str
    last_seen: float | None
    interval_ns: int
    window_ns: int
    missed_for_ns: int
    miss_count: int
    alert_id: str
    notification_id: str
    created_at: float
    monitor: str
    members: tuple[Notification, ...] = ()
    exit_code: int | None = None
    duration_ns: int | None = None
    output: str = ""
    run_id: str = ""
    max_runtime_ns: int | None = None
    dependents_missing: int | None = None  # a parent's alert/repeat: dependents down too
    dependents: tuple[str, ...] = ()  # the first few of them (heartbeat.depends)

    def body(self, sent_at: float | None = None) -> dict[str, object]:
        """The webhook JSON body (durations as Go strings, times RFC 3339).

        A group's body holds ``count`` and each member's own body (with its own
        ``notification_id``) under ``notifications``.
        """
        sent = epoch_rfc3339(sent_at if sent_at is not None else self.created_at)
        if self.event is EventKind.GROUP:
            return {
                "event": str(self.event),
                "count": len(self.members),
                "notification_id": self.notification_id,
                "notifications": [m.body(sent_at) for m in self.members],
                "sent_at": sent,
                "monitor": self.monitor,
            }
        body: dict[str, object] = {
            "event": str(self.event),
            "subject": self.subject,
            "description": self.description,
            "host": self.host,
            "last_seen": epoch_rfc3339(self.last_seen) if self.last_seen is not None else None,
            "interval": format_duration_ns(self.interval_ns),
            "window": format_duration_ns(self.window_ns),
            "missed_for": format_duration_ns(self.missed_for_ns),
            "miss_count": self.miss_count,
            "alert_id": self.alert_id,
            "notification_id": self.notification_id,
            "sent_at": sent,
            "monitor": self.monitor,
        }
        body.update(self.job_fields())
        if self.dependents_missing is not None:
            body["dependents_missing"] = self.dependents_missing
            body["dependents"] = list(self.dependents)
        return body

    def job_fields(self) -> dict[str, object]:
        """The job fields that are set, as the webhook body carries them."""
        out: dict[str, object] = {}
        if self.exit_code is not None:
            out["exit_code"] = self.exit_code
        if self.duration_ns is not None:
            out["duration"] = format_duration_ns(self.duration_ns)
        if self.max_runtime_ns is not None:
            out["max_runtime"] = format_duration_ns(self.max_runtime_ns)
        if self.output:
            out["output"] = self.output
        if self.run_id:
            out["run_id"] = self.run_id
        return out


def epoch_rfc3339(ts: float) -> str:
    return format_time(datetime.fromtimestamp(ts, UTC))


def _about_monitor(
    event: EventKind,
    monitor: str,
    now: float,
    *,
    alert_id: str,
    notification_id: str,
    description: str = "",
    missed_for_ns: int = 0,
    miss_count: int = 0,
    members: tuple[Notification, ...] = (),
) -> Notification:
    """A notification about the monitor rather than one subject (no subject fields)."""
    return Notification(
        event=event,
        subject="",
        description=description,
        host="",
        last_seen=None,
        interval_ns=0,
        window_ns=0,
        missed_for_ns=missed_for_ns,
        miss_count=miss_count,
        alert_id=alert_id,
        notification_id=notification_id,
        created_at=now,
        monitor=monitor,
        members=members,
    )


def monitor_notice(kind: EventKind, monitor: str, blind_since: float, now: float) -> Notification:
    """A ``blind`` or ``sight_restored`` notice about the monitor itself (no subject)."""
    alert_id = f"blind-{monitor}-{int(blind_since * 1000)}"
    return _about_monitor(
        kind,
        monitor,
        now,
        alert_id=alert_id,
        notification_id=f"{alert_id}-{kind}",
        description=f"nats-heartbeat monitor {monitor}",
        missed_for_ns=max(0, round((now - blind_since) * SECOND)),
    )


def capacity_notice(monitor: str, max_subjects: int, refused: int, now: float) -> Notification:
    """The one notice that new subjects are refused: ``max_subjects`` are tracked."""
    notice_id = f"capacity-{monitor}-{int(now * 1000)}"
    return _about_monitor(
        EventKind.OVER_CAPACITY,
        monitor,
        now,
        alert_id=notice_id,
        notification_id=notice_id,
        description=(
            f"tracks {max_subjects} subjects (--max-subjects); {refused} beat(s) of new "
            "subjects refused so far, and new subjects are not monitored"
        ),
        miss_count=refused,
    )


def channel_test_notice(channel: str, sender: str, now: float) -> Notification:
    """The one-off notice ``notify-test`` sends to ``channel``: nothing is wrong.

    Incident tools (PagerDuty, Opsgenie) get it as a resolve/close of an alert that
    never existed, which checks the endpoint and key without paging anyone."""
    notice_id = f"test-{sender}-{int(now * 1000)}"
    return Notification(
        event=EventKind.TEST,
        subject="",
        description=f"channel {channel} works; nothing is wrong",
        host="",
        last_seen=None,
        interval_ns=0,
        window_ns=0,
        missed_for_ns=0,
        miss_count=0,
        alert_id=notice_id,
        notification_id=f"{notice_id}-{channel}",
        created_at=now,
        monitor=sender,
    )


def group_notice(
    members: Sequence[Notification], *, notification_id: str, created_at: float, monitor: str
) -> Notification:
    """One ``group`` notification carrying ``members`` (delivered as one message)."""
    if not members:
        raise ValueError("a group needs at least one member")
    if any(m.event is EventKind.GROUP for m in members):
        raise ValueError("groups do not nest")
    return _about_monitor(
        EventKind.GROUP,
        monitor,
        created_at,
        alert_id=notification_id,
        notification_id=notification_id,
        members=tuple(members),
    )
