"""The one exception hierarchy of nats-heartbeat.

Errors from nats-py and aiohttp are wrapped at the boundary, so callers (and the
pure engine) never need to import them.
"""

from __future__ import annotations


class HeartbeatError(Exception):
    """Base class of every error raised by this package."""


class InvalidHeartbeat(HeartbeatError, ValueError):
    """A heartbeat payload or message that does not satisfy the wire format.

    ``reason`` is a short machine-friendly label (used as a metric label),
    the message says what is wrong for humans.
    """

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


class InvalidDuration(HeartbeatError, ValueError):
    """A string that is not a Go duration (``15s``, ``1m30s``, ``200ms``)."""


class InvalidSubject(HeartbeatError, ValueError):
    """A subject that cannot be published to (empty tokens, wildcards, spaces)."""


class PublishError(HeartbeatError):
    """A heartbeat could not be published (no stream, timeout, connection lost)."""


class NoStreamError(PublishError):
    """JetStream answered that no stream captures the subject."""


class ConnectError(HeartbeatError):
    """The NATS server could not be reached or refused the connection.

    ``permanent`` is set when retrying cannot help (wrong credentials, an untrusted
    certificate): long-running commands then stop instead of retrying forever.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
