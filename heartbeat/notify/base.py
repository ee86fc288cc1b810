"""The notifier protocol and the notification every channel receives."""

from __future__ import annotations

from typing import Protocol

from heartbeat.errors import HeartbeatError
from heartbeat.notification import EventKind, Notification, epoch_rfc3339

__all__ = ["EventKind", "Notification", "Notifier", "NotifyError", "epoch_rfc3339"]


class NotifyError(HeartbeatError):
    """A channel failed to deliver; ``retryable`` says whether trying again can help
    (5xx, 429, network errors) or not (other 4xx, bad configuration).

    ``retry_after_s``: the channel asked not to be tried again sooner (a 429 or 503
    with ``Retry-After``, already capped); None when it did not say."""

    def __init__(
        self,
        message: str,
        *,
        retryable: bool,
        status: int | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.status = status
        self.retry_after_s = retry_after_s


class Notifier(Protocol):
    """A notification channel.

    ``name`` is stable across restarts (pending deliveries in KV refer to it).
    ``send`` delivers once or raises :class:`NotifyError`; it does not retry.
    """

    @property
    def name(self) -> str: ...

    async def send(self, notification: Notification) -> None: ...
