"""Slack incoming webhook: a Block Kit message with a plain ``text`` fallback."""

from __future__ import annotations

from heartbeat.notify import words
from heartbeat.notify.base import Notification
from heartbeat.notify.jsonpost import JsonWebhook
from heartbeat.text import clip

_HEADER_MAX = 150  # Slack's limit for a header block
_SECTION_MAX = 3000  # and for a section's text


def escape(text: str) -> str:
    """Slack's mrkdwn escaping: only ``&``, ``<`` and ``>`` are special."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class SlackNotifier(JsonWebhook):
    """POSTs to one incoming-webhook URL (the URL is the secret: never shown).

    A header with the title, a section with the message (a group's first members
    and ``and N more``) and a context line with the event, monitor and id.
    """

    kind = "slack"

    def payload(self, n: Notification) -> dict[str, object]:
        icon = ":red_circle:" if words.urgent(n) else ":large_green_circle:"
        text = escape(words.message(n))
        return {
            "text": clip(text, _SECTION_MAX),
            "blocks": [
                {
                    "type": "header",
                    "text": {
                        "type": "plain_text",
                        "text": clip(f"{icon} {words.title(n)}", _HEADER_MAX),
                        "emoji": True,
                    },
                },
                {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, _SECTION_MAX)}},
                {
                    "type": "context",
                    "elements": [{"type": "plain_text", "text": words.footer(n), "emoji": False}],
                },
            ],
        }
