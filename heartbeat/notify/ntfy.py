"""ntfy (self-hosted or public): the message as the body of a POST to the topic URL."""

from __future__ import annotations

import base64

import aiohttp

from heartbeat.notify import words
from heartbeat.notify.base import EventKind, Notification
from heartbeat.notify.http import post
from heartbeat.notify.jsonpost import url_secrets
from heartbeat.text import clip

_TITLE_MAX = 250
_MESSAGE_MAX = 4000  # ntfy turns longer bodies into attachments
_TAGS = {
    EventKind.ALERT: "rotating_light",
    EventKind.REPEAT: "rotating_light",
    EventKind.RESOLVED: "white_check_mark",
    EventKind.BLIND: "warning",
    EventKind.SIGHT_RESTORED: "eyes",
    EventKind.OVER_CAPACITY: "warning",
    EventKind.TEST: "test_tube",
    EventKind.FAILED: "x",
    EventKind.RUNNING_LONG: "hourglass_flowing_sand",
    EventKind.RAN_LONG: "turtle",
}


def header_text(text: str) -> str:
    """ASCII as is, anything else as one RFC 2047 encoded word (which ntfy decodes)."""
    if text.isascii():
        return text
    return "=?UTF-8?B?" + base64.b64encode(text.encode()).decode("ascii") + "?="


class NtfyNotifier:
    """POSTs to ``url`` (the topic URL, e.g. ``https://ntfy.example/heartbeats``).

    ``Title`` is the title, ``Priority`` is ``alert_priority`` (``high`` by default)
    while something is wrong and ``default`` otherwise, ``Tags`` an emoji tag.
    With a ``token``, ``Authorization: Bearer <token>``.  Neither the token nor the
    topic (a secret on a public server) appears in errors.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        name: str,
        url: str,
        token: str = "",
        alert_priority: str = "high",
    ) -> None:
        if not url:
            raise ValueError("ntfy needs a topic URL")
        self._session = session
        self._name = name
        self._url = url
        self._token = token
        self._alert_priority = alert_priority

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"NtfyNotifier(name={self._name!r}, auth={bool(self._token)})"

    def request(self, n: Notification) -> tuple[bytes, dict[str, str]]:
        """The exact body and headers (with the token: do not log)."""
        if n.event is EventKind.GROUP:
            tag = "rotating_light" if words.urgent(n) else "white_check_mark"
        else:
            tag = _TAGS.get(n.event, "warning")
        headers = {
            "Content-Type": "text/plain; charset=utf-8",
            "Title": header_text(clip(words.title(n), _TITLE_MAX)),
            "Priority": self._alert_priority if words.urgent(n) else "default",
            "Tags": tag,
        }
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        return clip(words.message(n), _MESSAGE_MAX).encode(), headers

    async def send(self, notification: Notification) -> None:
        body, headers = self.request(notification)
        await post(
            self._session,
            self._name,
            self._url,
            data=body,
            headers=headers,
            secrets=(self._token, *url_secrets(self._url)),
        )
