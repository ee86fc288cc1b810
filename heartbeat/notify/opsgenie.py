"""Opsgenie Alert API: create on alert, close by alias on resolved.

The ``alias`` is the notification's ``alert_id``.  A repeat creates the alert
again with the same alias: Opsgenie de-duplicates it into the open alert (its
count goes up), and re-opens one that was closed by hand while the heartbeat is
still missing, so a repeat is idempotent and heals a lost create.  A monitor's
blind notice creates, its sight-restored notice closes.  A group is one request
per member, each with its own alias.

Job notifications: ``failed`` and ``running_long`` create (alias: the job alert's
id; a job's resolved notice closes it); ``ran_long``, a one-off report, creates an
informational P5 alert under an alias of its own.
"""

from __future__ import annotations

from urllib.parse import quote

import aiohttp

from heartbeat.notify import words
from heartbeat.notify.base import EventKind, Notification
from heartbeat.notify.jsonpost import post_json, send_each
from heartbeat.text import clip, neutral

OPSGENIE_API = "https://api.opsgenie.com"
PRIORITIES = frozenset({"P1", "P2", "P3", "P4", "P5"})
SOURCE = "nats-heartbeat"
_MESSAGE_MAX = 130
_DESCRIPTION_MAX = 15000
_NOTE_MAX = 25000
# A test closes an alias that never existed: Opsgenie checks the key, alerts nobody.
_RESOLVING = frozenset({EventKind.RESOLVED, EventKind.SIGHT_RESTORED, EventKind.TEST})
_PRIORITY = {EventKind.BLIND: "P3", EventKind.RAN_LONG: "P5"}


class OpsgenieNotifier:
    """Uses ``Authorization: GenieKey <api_key>`` (never shown in errors); alerts
    and repeats have ``priority``, a blind monitor ``P3``."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        name: str,
        api_key: str,
        api_url: str = OPSGENIE_API,
        priority: str = "P2",
    ) -> None:
        if not api_key:
            raise ValueError("opsgenie needs an API key")
        if priority not in PRIORITIES:
            raise ValueError(f"opsgenie priority must be one of {sorted(PRIORITIES)}")
        self._session = session
        self._name = name
        self._api_key = api_key
        self._api = api_url.rstrip("/")
        self._priority = priority

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"OpsgenieNotifier(name={self._name!r}, priority={self._priority!r})"

    def request(self, n: Notification) -> tuple[str, dict[str, object]]:
        """(path and query, JSON body) for one (non-group) notification."""
        if n.event in _RESOLVING:
            path = f"/v2/alerts/{quote(n.alert_id, safe='')}/close?identifierType=alias"
            return path, {"source": SOURCE, "note": clip(words.headline(n), _NOTE_MAX)}
        details = {k: str(v) for k, v in words.details(n).items() if v is not None and v != ""}
        return "/v2/alerts", {
            "message": clip(words.title(n), _MESSAGE_MAX),
            "alias": n.alert_id,
            "description": clip(words.message(n), _DESCRIPTION_MAX),
            "source": SOURCE,
            "entity": neutral(n.subject) or words.monitor_label(n),
            "priority": _PRIORITY.get(n.event, self._priority),
            "tags": [SOURCE, str(n.event)],
            "details": details,
        }

    async def _send_one(self, n: Notification) -> None:
        path, body = self.request(n)
        await post_json(
            self._session,
            self._name,
            self._api + path,
            body,
            headers={"Authorization": f"GenieKey {self._api_key}"},
            secrets=(self._api_key,),
        )

    async def send(self, notification: Notification) -> None:
        await send_each(self._name, notification, self._send_one)
