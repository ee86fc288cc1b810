"""Microsoft Teams via a Workflows webhook: one Adaptive Card in ``attachments``."""

from __future__ import annotations

from heartbeat.notify import words
from heartbeat.notify.base import Notification
from heartbeat.notify.jsonpost import JsonWebhook

CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"


def _text(text: str, **style: object) -> dict[str, object]:
    return {"type": "TextBlock", "text": text, "wrap": True, **style}


class TeamsNotifier(JsonWebhook):
    """POSTs a ``message`` with one Adaptive Card (1.4) to a Teams Workflows
    ("When a Teams webhook request is received") URL; the URL is the secret.

    The card: the title in bold (red for trouble, green otherwise), one text
    block per message line, and a small footer.  Teams answers 202.
    """

    kind = "teams"
    needs = "a Workflows webhook URL"

    def payload(self, n: Notification) -> dict[str, object]:
        color = "Attention" if words.urgent(n) else "Good"
        body: list[dict[str, object]] = [
            _text(words.title(n), weight="Bolder", size="Medium", color=color)
        ]
        body.extend(_text(line) for line in words.lines(n))
        body.append(_text(words.footer(n), isSubtle=True, size="Small"))
        card = {"$schema": CARD_SCHEMA, "type": "AdaptiveCard", "version": "1.4", "body": body}
        attachment = {"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": card}
        return {"type": "message", "attachments": [attachment]}
