"""What every HTTP notifier shares: status classification and error wrapping.

Alertmanager's rule: 2xx delivered, 429 and 5xx worth retrying, any other status
permanent.  aiohttp exceptions are turned into :class:`NotifyError` here, so the
rest of the package never imports them.  Error texts name the channel, the status
or the kind of failure, never a URL, token or key.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from datetime import UTC
from email.utils import parsedate_to_datetime
from enum import StrEnum

import aiohttp

from heartbeat.notify.base import NotifyError

_DETAIL_CHARS = 200
_READ_BYTES = 4096
MAX_RETRY_AFTER_S = 60.0  # a channel may ask for a pause, not for silence
_RETRY_AFTER_STATUSES = frozenset({429, 503})


class StatusClass(StrEnum):
    OK = "ok"
    RETRY = "retry"
    PERMANENT = "permanent"


def classify_status(status: int) -> StatusClass:
    """2xx ok; 429 and 5xx retry; everything else (other 4xx, 1xx, 3xx) permanent."""
    if 200 <= status < 300:
        return StatusClass.OK
    if status == 429 or status >= 500:
        return StatusClass.RETRY
    return StatusClass.PERMANENT


def parse_retry_after(
    value: str | None, now: float, *, cap_s: float = MAX_RETRY_AFTER_S
) -> float | None:
    """Seconds to wait from ``now`` (epoch seconds) that a ``Retry-After`` value asks
    for: delta seconds or an HTTP date, at most ``cap_s``, never negative; None when
    absent or unreadable (then the ordinary backoff applies)."""
    if value is None:
        return None
    text = value.strip()
    if not text or len(text) > 64:
        return None
    if text.isascii() and text.isdigit():
        return min(float(text), cap_s) if len(text) < 16 else cap_s
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # "-0000": UTC, as HTTP dates are
        when = when.replace(tzinfo=UTC)
    try:
        delay = when.timestamp() - now
    except (OverflowError, OSError, ValueError):
        return None
    if not math.isfinite(delay):
        return None
    return min(max(delay, 0.0), cap_s)


def redact(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


def raise_for_status(
    channel: str,
    status: int,
    detail: str = "",
    *,
    secrets: Iterable[str] = (),
    retry_after_s: float | None = None,
) -> None:
    """Return for 2xx, else raise a classified :class:`NotifyError`.

    ``detail`` (the response body) is shortened and has ``secrets`` redacted.
    ``retry_after_s`` (from ``Retry-After``) is carried on a retryable error.
    """
    klass = classify_status(status)
    if klass is StatusClass.OK:
        return
    snippet = redact(" ".join(detail.split()), secrets)[:_DETAIL_CHARS]
    message = f"{channel}: HTTP {status}" + (f": {snippet}" if snippet else "")
    retryable = klass is StatusClass.RETRY
    raise NotifyError(
        message,
        retryable=retryable,
        status=status,
        retry_after_s=retry_after_s if retryable else None,
    )


def client_error(channel: str, exc: BaseException) -> NotifyError:
    """Wrap an aiohttp exception or timeout; only a bad URL is permanent."""
    if isinstance(exc, TimeoutError):
        return NotifyError(f"{channel}: request timed out", retryable=True)
    if isinstance(exc, aiohttp.InvalidURL):
        return NotifyError(f"{channel}: invalid URL ({type(exc).__name__})", retryable=False)
    if isinstance(exc, aiohttp.ClientConnectorError):
        reason = exc.os_error.strerror or type(exc.os_error).__name__
        return NotifyError(
            f"{channel}: cannot connect to {exc.host}:{exc.port}: {reason}", retryable=True
        )
    return NotifyError(f"{channel}: {type(exc).__name__}", retryable=True)


async def post(
    session: aiohttp.ClientSession,
    channel: str,
    url: str,
    *,
    data: bytes | Mapping[str, str],
    headers: Mapping[str, str] | None = None,
    secrets: Iterable[str] = (),
) -> None:
    """POST once; return on 2xx, raise a classified :class:`NotifyError` otherwise
    (after a 429 or 503, with the ``Retry-After`` the channel sent)."""
    retry_after_s = None
    try:
        async with session.post(url, data=data, headers=headers) as resp:
            status = resp.status
            detail = "" if 200 <= status < 300 else await _read_detail(resp)
            if status in _RETRY_AFTER_STATUSES:
                retry_after_s = parse_retry_after(resp.headers.get("Retry-After"), time.time())
    except (aiohttp.ClientError, TimeoutError) as e:
        raise client_error(channel, e) from e
    raise_for_status(channel, status, detail, secrets=secrets, retry_after_s=retry_after_s)


async def _read_detail(resp: aiohttp.ClientResponse) -> str:
    """The start of an error body; the status decides, so a broken body is no error."""
    try:
        raw = await resp.content.read(_READ_BYTES)
    except (aiohttp.ClientError, TimeoutError):
        return ""
    return raw.decode("utf-8", errors="replace")
