"""Telegram Bot API ``sendMessage``: plain text to one chat."""

from __future__ import annotations

import aiohttp

from heartbeat.notify import words
from heartbeat.notify.base import Notification
from heartbeat.notify.jsonpost import post_json
from heartbeat.text import clip

TELEGRAM_API = "https://api.telegram.org"
_TEXT_MAX = 4096


class TelegramNotifier:
    """POSTs ``{api_url}/bot<token>/sendMessage`` with ``chat_id`` and ``text``.

    Plain text (no ``parse_mode``), so nothing a heartbeat says is markup; link
    previews are off.  The bot token is in the URL path and redacted from errors.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        name: str,
        token: str,
        chat_id: str,
        api_url: str = TELEGRAM_API,
    ) -> None:
        if not token or not chat_id:
            raise ValueError("telegram needs a bot token and a chat id")
        self._session = session
        self._name = name
        self._token = token
        self._chat_id = chat_id
        self._url = f"{api_url.rstrip('/')}/bot{token}/sendMessage"

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"TelegramNotifier(name={self._name!r}, chat_id={self._chat_id!r})"

    def payload(self, n: Notification) -> dict[str, object]:
        return {
            "chat_id": self._chat_id,
            "text": clip(words.message(n), _TEXT_MAX),
            "link_preview_options": {"is_disabled": True},
        }

    async def send(self, notification: Notification) -> None:
        await post_json(
            self._session,
            self._name,
            self._url,
            self.payload(notification),
            secrets=(self._token,),
        )
