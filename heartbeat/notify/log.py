"""A channel that writes one log line per notification (always on, never fails)."""

from __future__ import annotations

import logging

from heartbeat.notify.base import Notification
from heartbeat.text import neutral

DEFAULT_LOGGER = "nats-heartbeat.notify"


class LogNotifier:
    """Logs ``notification event=... subject=... id=... alert_id=... <message>`` at INFO."""

    def __init__(self, logger_name: str = DEFAULT_LOGGER) -> None:
        self._logger = logging.getLogger(logger_name)

    @property
    def name(self) -> str:
        return "log"

    async def send(self, notification: Notification) -> None:
        _title, message = notification.summary()
        self._logger.info(
            "notification event=%s subject=%s id=%s alert_id=%s %s",
            notification.event,
            neutral(notification.subject),
            notification.notification_id,
            notification.alert_id,
            neutral(message),  # heartbeat text: no forged lines or terminal escapes
        )
