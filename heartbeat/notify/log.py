"""A channel that writes one log line per notification (always on, never fails)."""

from __future__ import annotations

import logging

from heartbeat.notify import words
from heartbeat.notify.base import Notification
from heartbeat.text import neutral

DEFAULT_LOGGER = "nats-heartbeat.notify"


class LogNotifier:
    """Logs ``notification event=... subject=... id=... alert_id=... <message>`` at INFO."""

    def __init__(self, logger_name: str = DEFAULT_LOGGER, *, name: str = "log") -> None:
        self._logger = logging.getLogger(logger_name)
        self._name = name

    @property
    def name(self) -> str:
        return self._name

    async def send(self, notification: Notification) -> None:
        self._logger.info(
            "notification event=%s subject=%s id=%s alert_id=%s %s",
            notification.event,
            neutral(notification.subject),
            notification.notification_id,
            notification.alert_id,
            words.one_line(notification),
        )
