"""Notification channels, the shared retry policy and the process's HTTP session.

:class:`AppriseNotifier` needs the optional ``apprise`` extra; it is importable
without it and says so when constructed.
"""

from __future__ import annotations

import aiohttp

from heartbeat.notification import group_notice
from heartbeat.notify.apprise import AppriseNotifier
from heartbeat.notify.base import EventKind, Notification, Notifier, NotifyError, epoch_rfc3339
from heartbeat.notify.discord import DiscordNotifier
from heartbeat.notify.http import StatusClass, classify_status, raise_for_status
from heartbeat.notify.log import LogNotifier
from heartbeat.notify.ntfy import NtfyNotifier
from heartbeat.notify.opsgenie import OpsgenieNotifier
from heartbeat.notify.pagerduty import PagerDutyNotifier
from heartbeat.notify.pushover import PushoverNotifier
from heartbeat.notify.retry import DeliveryResult, fan_out, send_with_retry
from heartbeat.notify.slack import SlackNotifier
from heartbeat.notify.smtp import EmailNotifier
from heartbeat.notify.teams import TeamsNotifier
from heartbeat.notify.telegram import TelegramNotifier
from heartbeat.notify.webhook import WebhookNotifier

__all__ = [
    "AppriseNotifier",
    "DeliveryResult",
    "DiscordNotifier",
    "EmailNotifier",
    "EventKind",
    "LogNotifier",
    "Notification",
    "Notifier",
    "NotifyError",
    "NtfyNotifier",
    "OpsgenieNotifier",
    "PagerDutyNotifier",
    "PushoverNotifier",
    "SlackNotifier",
    "StatusClass",
    "TeamsNotifier",
    "TelegramNotifier",
    "WebhookNotifier",
    "classify_status",
    "epoch_rfc3339",
    "fan_out",
    "group_notice",
    "make_session",
    "raise_for_status",
    "send_with_retry",
]


def make_session(
    timeout_s: float = 10.0, *, connect_timeout_s: float = 5.0
) -> aiohttp.ClientSession:
    """The one HTTP session of the process, with explicit timeouts.

    Call it inside the running event loop and close it at shutdown
    (``async with make_session() as session:``).
    """
    timeout = aiohttp.ClientTimeout(total=timeout_s, connect=min(connect_timeout_s, timeout_s))
    return aiohttp.ClientSession(
        timeout=timeout, headers={"User-Agent": "nats-heartbeat"}, raise_for_status=False
    )
