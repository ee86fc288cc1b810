"""What a notification says: decided by the engine, delivered by the notifiers.

Kept apart from :mod:`heartbeat.notify` so the pure engine imports no HTTP client.
"""

from __future__ import annotations

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


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    """One notification, decided and committed to KV before any channel sends it.

    ``notification_id`` is unique per notification and the same on every retry
    (channels that support it send it as an idempotency key); ``alert_id`` is the
    same for an alert, its repeats and its resolved notice.  Times are epoch
    seconds, durations integer nanoseconds (as on the wire).
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

    def body(self, sent_at: float | None = None) -> dict[str, object]:
        """The webhook JSON body (durations as Go strings, times RFC 3339)."""
        return {
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
            "sent_at": epoch_rfc3339(sent_at if sent_at is not None else self.created_at),
            "monitor": self.monitor,
        }

    def summary(self) -> tuple[str, str]:
        """A (title, message) pair for human channels (Pushover, log)."""
        label = self.description or self.subject
        missed = format_duration_ns(self.missed_for_ns)
        if self.event in (EventKind.ALERT, EventKind.REPEAT):
            title = (
                "Heartbeat missed" if self.event is EventKind.ALERT else "Heartbeat still missing"
            )
            return title, (
                f"{label} ({self.subject}): no heartbeat for {missed}, "
                f"{self.miss_count} beat(s) missed (interval {format_duration_ns(self.interval_ns)}"
                f", window {format_duration_ns(self.window_ns)})"
            )
        if self.event is EventKind.RESOLVED:
            back = epoch_rfc3339(self.last_seen) if self.last_seen is not None else "now"
            return "Heartbeat resolved", f"{label} ({self.subject}): beating again since {back}"
        if self.event is EventKind.BLIND:
            return "Heartbeat monitor blind", (
                f"monitor {self.monitor} cannot see heartbeats (NATS unreachable) for {missed}; "
                "missing beats are not being detected"
            )
        return "Heartbeat monitor sees again", (
            f"monitor {self.monitor} sees heartbeats again after {missed} blind"
        )


def epoch_rfc3339(ts: float) -> str:
    return format_time(datetime.fromtimestamp(ts, UTC))


def monitor_notice(kind: EventKind, monitor: str, blind_since: float, now: float) -> Notification:
    """A ``blind`` or ``sight_restored`` notice about the monitor itself (no subject)."""
    blind_for_ns = max(0, round((now - blind_since) * SECOND))
    alert_id = f"blind-{monitor}-{int(blind_since * 1000)}"
    return Notification(
        event=kind,
        subject="",
        description=f"nats-heartbeat monitor {monitor}",
        host="",
        last_seen=None,
        interval_ns=0,
        window_ns=0,
        missed_for_ns=blind_for_ns,
        miss_count=0,
        alert_id=alert_id,
        notification_id=f"{alert_id}-{kind}",
        created_at=now,
        monitor=monitor,
    )
