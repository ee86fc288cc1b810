"""Discord webhook: ``content`` plus one embed; mentions are never parsed."""

from __future__ import annotations

from heartbeat.notify import words
from heartbeat.notify.base import Notification, epoch_rfc3339
from heartbeat.notify.jsonpost import JsonWebhook
from heartbeat.text import clip

RED = 0xD93F0B
GREEN = 0x2EB67D
_CONTENT_MAX = 2000
_TITLE_MAX = 256
_DESCRIPTION_MAX = 4096


def escape(text: str) -> str:
    """Backslash-escape ``[`` and ``]`` (and backslashes): a heartbeat's text cannot
    become a masked link ``[looks safe](elsewhere)``; it still reads the same."""
    return text.replace("\\", "\\\\").replace("[", "\\[").replace("]", "\\]")


class DiscordNotifier(JsonWebhook):
    """POSTs to one Discord webhook URL (the URL holds the token: never shown).

    ``content`` is the headline (what a phone shows), the embed holds the title,
    the whole message, a colour and the time.  ``allowed_mentions`` is empty, so
    an ``@everyone`` in a heartbeat's description pings nobody, and brackets are
    escaped so it cannot hide a link.  Discord answers 204.
    """

    kind = "discord"

    def payload(self, n: Notification) -> dict[str, object]:
        return {
            "content": clip(escape(words.headline(n)), _CONTENT_MAX),
            "embeds": [
                {
                    "title": clip(words.title(n), _TITLE_MAX),
                    "description": clip(escape(words.message(n)), _DESCRIPTION_MAX),
                    "color": RED if words.urgent(n) else GREEN,
                    "timestamp": epoch_rfc3339(n.created_at),
                    "footer": {"text": words.footer(n)},
                }
            ],
            "allowed_mentions": {"parse": []},
        }
