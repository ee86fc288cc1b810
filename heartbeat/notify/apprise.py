"""Apprise (optional extra ``nats-heartbeat[apprise]``): any of its many services by URL."""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Sequence
from typing import Any

from heartbeat.notify import words
from heartbeat.notify.base import EventKind, Notification, NotifyError

MISSING = (
    "the apprise channel needs the optional apprise package: pip install 'nats-heartbeat[apprise]'"
)


def _load() -> Any:
    try:
        return importlib.import_module("apprise")
    except ImportError as e:
        raise ImportError(MISSING) from e


def _notify_type(apprise: Any, n: Notification) -> Any:
    kinds = apprise.NotifyType
    if n.event in (EventKind.BLIND, EventKind.RAN_LONG):
        return kinds.WARNING
    return kinds.FAILURE if words.urgent(n) else kinds.SUCCESS


class AppriseNotifier:
    """Sends the title and message to every Apprise URL in ``urls``.

    apprise blocks, so each send runs in a worker thread; a failed send (any URL
    failing) is retryable, since apprise does not say why.  URLs hold secrets:
    errors give a URL's position, never the URL.  apprise logs through its own
    ``apprise`` logger, which masks secrets in URLs.
    """

    def __init__(self, *, name: str, urls: Sequence[str]) -> None:
        if not urls:
            raise ValueError("apprise needs at least one URL")
        self._apprise = _load()
        self._name = name
        self._client = self._apprise.Apprise()
        for i, url in enumerate(urls, 1):
            if not self._client.add(url):
                raise ValueError(f"apprise URL #{i} of {len(urls)} is not one apprise supports")
        self._count = len(urls)

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"AppriseNotifier(name={self._name!r}, urls={self._count})"

    async def send(self, notification: Notification) -> None:
        title, body = words.summary(notification)
        kind = _notify_type(self._apprise, notification)
        ok = await asyncio.to_thread(self._client.notify, body=body, title=title, notify_type=kind)
        if not ok:
            text = f"{self._name}: apprise could not deliver to every URL"
            raise NotifyError(text, retryable=True)
