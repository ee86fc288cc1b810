"""The notifier protocol and the notification every channel receives."""

from __future__ import annotations

from typing import Protocol

from heartbeat.errors import HeartbeatError
from heartbeat.notification import EventKind, Notification, epoch_rfc3339

__all__ = ["EventKind", "Notification", "Notifier", "NotifyError", "epoch_rfc3339"]


class NotifyError(HeartbeatError):
    """A channel failed to deliver; ``retryable`` says whether trying again can help
    (5xx, 429, network errors) or not (other 4xx, bad configuration)."""

    def __init__(self, message: str, *, retryable: bool, status: int | None = None) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status


class Notifier(Protocol):
    """A notification channel.

    ``name`` is stable across restarts (pending deliveries in KV refer to it).
    ``send`` delivers once or raises :class:`NotifyError`; it does not retry.
    """

    @property
    def name(self) -> str: ...

    async def send(self, notification: Notification) -> None: ...
