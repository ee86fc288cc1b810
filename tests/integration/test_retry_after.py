"""Retry-After against real aiohttp receivers: never tried sooner than asked."""

from __future__ import annotations

import math
import time
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate

import aiohttp
import pytest
from aiohttp import web

from heartbeat.notify import (
    PushoverNotifier,
    WebhookNotifier,
    fan_out,
    make_session,
    send_with_retry,
)
from heartbeat.notify.http import MAX_RETRY_AFTER_S
from tests.integration.test_notifiers import FAST, TOKEN, USER, make_notification, serve


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session(timeout_s=5.0) as s:
        yield s


class Scripted:
    """Answers each request with the next (status, Retry-After) and records when it came."""

    def __init__(self, *answers: tuple[int, Callable[[], str] | str | None]) -> None:
        self.answers = list(answers)
        self.arrivals: list[float] = []
        self.answered: list[float] = []

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        self.arrivals.append(time.time())
        status, after = self.answers.pop(0) if self.answers else (200, None)
        headers = {}
        if after is not None:
            headers["Retry-After"] = after() if callable(after) else after
        self.answered.append(time.time())
        return web.Response(status=status, text="{}", headers=headers)


@pytest.mark.parametrize("status", [429, 503])
async def test_retry_after_seconds_is_honoured(session: aiohttp.ClientSession, status: int) -> None:
    server = Scripted((status, "1"))
    async with serve(server.handle) as url:
        result = await send_with_retry(
            WebhookNotifier(session, url), make_notification(), deadline_s=5.0, **FAST
        )
    assert result.delivered and result.attempts == 2
    waited = server.arrivals[1] - server.answered[0]
    assert waited >= 1.0, waited  # the backoff alone would have retried in ~10 ms
    assert waited < 2.0, waited


async def test_retry_after_http_date_is_honoured(session: aiohttp.ClientSession) -> None:
    not_before: list[float] = []

    def two_seconds_on() -> str:
        when = math.floor(time.time()) + 2  # an HTTP date has whole seconds
        not_before.append(when)
        return formatdate(when, usegmt=True)

    server = Scripted((429, two_seconds_on))
    async with serve(server.handle) as url:
        result = await send_with_retry(
            WebhookNotifier(session, url), make_notification(), deadline_s=6.0, **FAST
        )
    assert result.delivered and result.attempts == 2
    assert server.arrivals[1] >= not_before[0], server.arrivals[1] - not_before[0]
    assert server.arrivals[1] - not_before[0] < 1.0


async def test_a_wait_past_the_deadline_ends_the_round_and_is_reported(
    session: aiohttp.ClientSession,
) -> None:
    server = Scripted((429, "30"))
    async with serve(server.handle) as url:
        started = time.monotonic()
        result = await send_with_retry(
            WebhookNotifier(session, url), make_notification(), deadline_s=3.0, **FAST
        )
        took = time.monotonic() - started
    assert (result.delivered, result.permanent, result.attempts) == (False, False, 1)
    assert result.retry_after_s is not None and 29.0 < result.retry_after_s <= 30.0
    assert took < 1.0, took  # gave up at once instead of sleeping to the deadline
    assert len(server.arrivals) == 1


async def test_retry_after_is_capped(session: aiohttp.ClientSession) -> None:
    server = Scripted((503, "86400"))
    async with serve(server.handle) as url:
        result = await send_with_retry(
            WebhookNotifier(session, url), make_notification(), deadline_s=1.0, **FAST
        )
    assert result.retry_after_s is not None
    assert MAX_RETRY_AFTER_S - 1 < result.retry_after_s <= MAX_RETRY_AFTER_S


async def test_garbage_retry_after_falls_back_to_the_backoff(
    session: aiohttp.ClientSession,
) -> None:
    server = Scripted((429, "soon"), (429, "-5"))
    async with serve(server.handle) as url:
        result = await send_with_retry(
            WebhookNotifier(session, url), make_notification(), deadline_s=5.0, **FAST
        )
    assert result.delivered and result.attempts == 3 and result.retry_after_s is None
    assert server.arrivals[2] - server.arrivals[0] < 1.0


async def test_retry_after_on_other_statuses_is_ignored(session: aiohttp.ClientSession) -> None:
    server = Scripted((500, "30"))
    async with serve(server.handle) as url:
        result = await send_with_retry(
            WebhookNotifier(session, url), make_notification(), deadline_s=5.0, **FAST
        )
    assert result.delivered and result.attempts == 2
    assert server.arrivals[1] - server.arrivals[0] < 1.0


async def test_pushover_and_fan_out_carry_the_wait(session: aiohttp.ClientSession) -> None:
    server = Scripted((429, "20"))
    async with serve(server.handle) as url:
        results = await fan_out(
            [PushoverNotifier(session, user=USER, token=TOKEN, url=url)],
            make_notification(),
            deadline_s=2.0,
            **FAST,
        )
    got = results["pushover"]
    assert not got.delivered and got.retry_after_s is not None and got.retry_after_s > 19
