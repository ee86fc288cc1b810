"""Pushover (https://pushover.net/api): a form POST per notification."""

from __future__ import annotations

import aiohttp

from heartbeat.notify.base import EventKind, Notification
from heartbeat.notify.http import post
from heartbeat.text import neutral

PUSHOVER_URL = "https://api.pushover.net/1/messages.json"
_TITLE_MAX = 250
_MESSAGE_MAX = 1024
_URGENT = frozenset({EventKind.ALERT, EventKind.REPEAT, EventKind.BLIND})


class PushoverNotifier:
    """Sends to one Pushover user or group key with one application token.

    ``priority`` is 1 (high, bypasses quiet hours) for alerts, repeats and blind
    periods, 0 otherwise.  The token and user key never appear in errors.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        user: str,
        token: str,
        url: str = PUSHOVER_URL,
    ) -> None:
        if not user or not token:
            raise ValueError("pushover needs both a user key and an application token")
        self._session = session
        self._user = user
        self._token = token
        self._url = url

    @property
    def name(self) -> str:
        return "pushover"

    def __repr__(self) -> str:
        return f"PushoverNotifier(url={self._url!r})"

    def form(self, notification: Notification) -> dict[str, str]:
        """The form fields of one message (without secrets redacted: do not log).

        Title and message are neutralised (heartbeat text is shown to a person) and cut
        to Pushover's limits."""
        title, message = notification.summary()
        return {
            "token": self._token,
            "user": self._user,
            "title": neutral(title, _TITLE_MAX),
            "message": neutral(message, _MESSAGE_MAX),
            "priority": "1" if notification.event in _URGENT else "0",
            "timestamp": str(int(notification.created_at)),
        }

    async def send(self, notification: Notification) -> None:
        await post(
            self._session,
            self.name,
            self._url,
            data=self.form(notification),
            secrets=(self._token, self._user),
        )
