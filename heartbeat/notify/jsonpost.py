"""JSON requests and per-incident fan-out shared by the native channels."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from urllib.parse import parse_qsl, urlsplit

import aiohttp
import msgspec

from heartbeat.notify.base import EventKind, Notification, NotifyError
from heartbeat.notify.http import post

_encoder = msgspec.json.Encoder()


def encode(payload: object) -> bytes:
    """Compact JSON, as sent."""
    return _encoder.encode(payload)


async def post_json(
    session: aiohttp.ClientSession,
    channel: str,
    url: str,
    payload: object,
    *,
    headers: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
) -> None:
    """POST ``payload`` as compact JSON once (classified by :func:`http.post`)."""
    await post(
        session,
        channel,
        url,
        data=encode(payload),
        headers={"Content-Type": "application/json", **(headers or {})},
        secrets=secrets,
    )


class JsonWebhook:
    """A channel that POSTs one JSON :meth:`payload` per notification to a webhook URL
    that is itself the secret (never shown: errors and ``repr`` name the channel)."""

    kind = "webhook"
    needs = "a webhook URL"

    def __init__(self, session: aiohttp.ClientSession, *, name: str, url: str) -> None:
        if not url:
            raise ValueError(f"{self.kind} needs {self.needs}")
        self._session = session
        self._name = name
        self._url = url
        self._secrets = url_secrets(url)

    @property
    def name(self) -> str:
        return self._name

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self._name!r})"

    def payload(self, n: Notification) -> dict[str, object]:
        raise NotImplementedError

    async def send(self, notification: Notification) -> None:
        await post_json(
            self._session, self._name, self._url, self.payload(notification), secrets=self._secrets
        )


def url_secrets(url: str) -> tuple[str, ...]:
    """What to redact when a URL is the secret (a webhook's token is in its path or
    query): the URL, its path and query, and every long path segment or query value."""
    parts = urlsplit(url)
    pieces = [url, parts.path, parts.query]
    pieces += [seg for seg in parts.path.split("/") if len(seg) >= 16]
    pieces += [v for _k, v in parse_qsl(parts.query) if len(v) >= 16]
    return tuple(sorted({p for p in pieces if len(p) > 1}, key=len, reverse=True))


def incidents(notification: Notification) -> tuple[Notification, ...]:
    """The notifications a per-incident API gets: a group's members, else itself."""
    if notification.event is EventKind.GROUP:
        return notification.members
    return (notification,)


async def send_each(
    channel: str,
    notification: Notification,
    send_one: Callable[[Notification], Awaitable[None]],
) -> None:
    """Send every incident of ``notification`` (one request each), all of them even
    when one fails; then raise one :class:`NotifyError` if any failed, retryable if
    any failure was (resending the ones that went through is harmless: they carry
    the same dedup key or alias)."""
    errors: list[NotifyError] = []
    items = incidents(notification)
    for item in items:
        try:
            await send_one(item)
        except NotifyError as e:
            errors.append(e)
    if not errors:
        return
    if len(items) == 1:
        raise errors[0]
    first = errors[0]
    raise NotifyError(
        f"{channel}: {len(errors)} of {len(items)} group members failed, first: {first}",
        retryable=any(e.retryable for e in errors),
        status=first.status,
    )
