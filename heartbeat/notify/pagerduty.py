"""PagerDuty Events API v2: trigger on alert and repeat, resolve on resolved.

The ``dedup_key`` is the notification's ``alert_id``, the same for an alert, its
repeats and its resolved notice, so PagerDuty folds repeats into the open
incident and the resolved notice closes it.  A monitor's blind notice triggers
and its sight-restored notice resolves (both share an ``alert_id``).  A group is
one request per member, each with its own ``dedup_key``.

Job notifications: ``failed`` and ``running_long`` trigger with ``severity`` (the
job alert's id as ``dedup_key``; a job's resolved notice resolves it); ``ran_long``,
a one-off report, triggers with severity ``info`` under a key of its own.
"""

from __future__ import annotations

import aiohttp

from heartbeat.notify import words
from heartbeat.notify.base import EventKind, Notification, epoch_rfc3339
from heartbeat.notify.jsonpost import post_json, send_each
from heartbeat.text import clip, neutral

PAGERDUTY_API = "https://events.pagerduty.com"
SEVERITIES = frozenset({"critical", "error", "warning", "info"})
_SUMMARY_MAX = 1024
# A test resolves an incident that never existed: PagerDuty checks the key, pages nobody.
_RESOLVING = frozenset({EventKind.RESOLVED, EventKind.SIGHT_RESTORED, EventKind.TEST})
_SEVERITY = {EventKind.BLIND: "warning", EventKind.RAN_LONG: "info"}


class PagerDutyNotifier:
    """POSTs events to ``{api_url}/v2/enqueue`` with one integration's routing key.

    Alerts and repeats are sent with ``severity``; a blind monitor with ``warning``.
    The routing key never appears in errors.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        *,
        name: str,
        routing_key: str,
        api_url: str = PAGERDUTY_API,
        severity: str = "critical",
    ) -> None:
        if not routing_key:
            raise ValueError("pagerduty needs a routing key")
        if severity not in SEVERITIES:
            raise ValueError(f"pagerduty severity must be one of {sorted(SEVERITIES)}")
        self._session = session
        self._name = name
        self._routing_key = routing_key
        self._url = f"{api_url.rstrip('/')}/v2/enqueue"
        self._severity = severity

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"PagerDutyNotifier(name={self._name!r}, severity={self._severity!r})"

    def event(self, n: Notification) -> dict[str, object]:
        """The Events API body for one (non-group) notification."""
        if n.event in _RESOLVING:
            return {
                "routing_key": self._routing_key,
                "event_action": "resolve",
                "dedup_key": n.alert_id,
            }
        source = n.host if n.event is not EventKind.BLIND and n.host else n.monitor
        return {
            "routing_key": self._routing_key,
            "event_action": "trigger",
            "dedup_key": n.alert_id,
            "client": "nats-heartbeat",
            "payload": {
                "summary": clip(words.headline(n), _SUMMARY_MAX),
                "source": neutral(source) or "nats-heartbeat",
                "severity": _SEVERITY.get(n.event, self._severity),
                "timestamp": epoch_rfc3339(n.created_at),
                "component": n.subject or "nats-heartbeat monitor",
                "class": "heartbeat",
                "custom_details": words.details(n),
            },
        }

    async def _send_one(self, n: Notification) -> None:
        await post_json(
            self._session, self._name, self._url, self.event(n), secrets=(self._routing_key,)
        )

    async def send(self, notification: Notification) -> None:
        await send_each(self._name, notification, self._send_one)
