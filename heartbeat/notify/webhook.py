"""A generic JSON webhook, optionally signed with HMAC-SHA256."""

from __future__ import annotations

import hashlib
import hmac
import time

import aiohttp
import msgspec

from heartbeat.notify.base import Notification
from heartbeat.notify.http import post
from heartbeat.notify.jsonpost import url_secrets

SIGNATURE_HEADER = "X-Heartbeat-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
_encoder = msgspec.json.Encoder()


def webhook_name(url: str) -> str:
    """``webhook:<8 hex>``: stable across restarts, distinct per URL, URL not revealed."""
    return "webhook:" + hashlib.sha256(url.encode()).hexdigest()[:8]


def sign(secret: str, body: bytes) -> str:
    """The signature header value: ``sha256=<hex HMAC-SHA256(secret, body)>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookNotifier:
    """POSTs :meth:`Notification.body` as compact JSON.

    The notification id goes in ``Idempotency-Key`` (the same on every retry);
    with a secret, ``X-Heartbeat-Signature`` signs the exact body bytes.
    Errors name the channel (by default ``webhook:<hash of the URL>``), never the
    URL (it may hold a token).  A group is one request holding every member.
    """

    def __init__(
        self, session: aiohttp.ClientSession, url: str, *, secret: str = "", name: str = ""
    ) -> None:
        self._session = session
        self._url = url
        self._secret = secret
        self._name = name or webhook_name(url)

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"WebhookNotifier(name={self._name!r}, signed={bool(self._secret)})"

    def request(self, notification: Notification, sent_at: float) -> tuple[bytes, dict[str, str]]:
        """The exact body bytes and headers of one delivery attempt."""
        body = _encoder.encode(notification.body(sent_at=sent_at))
        headers = {
            "Content-Type": "application/json",
            IDEMPOTENCY_HEADER: notification.notification_id,
        }
        if self._secret:
            headers[SIGNATURE_HEADER] = sign(self._secret, body)
        return body, headers

    async def send(self, notification: Notification) -> None:
        body, headers = self.request(notification, time.time())
        await post(
            self._session,
            self._name,
            self._url,
            data=body,
            headers=headers,
            secrets=(self._secret, *url_secrets(self._url)),
        )
