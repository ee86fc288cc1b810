"""Small asyncio helpers shared by the library."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def wait_any(*events: asyncio.Event, within_s: float | None = None) -> None:
    """Wait until one of ``events`` is set (or ``within_s`` seconds pass)."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, timeout=within_s, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def wait_event(event: asyncio.Event, seconds: float) -> bool:
    """Wait up to ``seconds`` for ``event``; return whether it is set."""
    if seconds > 0 and not event.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout=seconds)
    return event.is_set()


async def retry_until_stopped(
    attempt: Callable[[], Awaitable[T]],
    stop: asyncio.Event,
    *,
    retry: Callable[[Exception], bool],
    log: logging.Logger,
    warning: str,
    recovered: str,
    max_backoff_s: float = 30.0,
) -> T | None:
    """``await attempt()`` until it works, with exponential backoff from 0.5 s.

    An exception for which ``retry`` is false is raised.  The first retried one is
    logged as ``warning % error`` (later ones at debug level), and ``recovered`` once
    an attempt works after failing.  ``None`` if ``stop`` is set first.
    """
    backoff, failing = min(0.5, max_backoff_s), False
    while not stop.is_set():
        try:
            got = await attempt()
        except Exception as e:
            if not retry(e):
                raise
            if not failing:
                log.warning(warning, e)
                failing = True
            else:
                log.debug("retrying in %.1fs: %s", backoff, e)
            await wait_event(stop, backoff)
            backoff = min(backoff * 2, max_backoff_s)
            continue
        if failing:
            log.info(recovered)
        return got
    return None
