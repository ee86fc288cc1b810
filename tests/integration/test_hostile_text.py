"""Heartbeat text reaches people neutralised and JSON as sent (real receivers)."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import pytest

from heartbeat.notify import (
    LogNotifier,
    PushoverNotifier,
    WebhookNotifier,
    make_session,
    send_with_retry,
)
from tests.harness import Receiver
from tests.integration.test_notifiers import TOKEN, USER, make_notification

HOSTILE = "db\x1b[2J\x1b]0;pwned\x07\nFAKE LOG LINE\u202egnp.exe\u200b" + "é" * 2000
INVISIBLE = ("\x1b", "\x07", "\n", "\r", "\u202e", "\u200b")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session(timeout_s=5.0) as s:
        yield s


async def test_pushover_gets_neutral_bounded_text(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    n = make_notification(description=HOSTILE, host="h\x1b[31m")
    await PushoverNotifier(session, user=USER, token=TOKEN, url=receiver.url).send(n)
    [req] = receiver.accepted()
    form = req.form()
    for field in ("title", "message"):
        assert not any(c in form[field] for c in INVISIBLE), form[field][:100]
    assert form["message"].startswith("heartbeat.db1 (db FAKE LOG LINEgnp.exe")
    assert len(form["message"]) <= 1024 and "é…) is DOWN" in form["message"]  # cut


async def test_webhook_keeps_the_text_as_sent_json_escaped(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    n = make_notification(description=HOSTILE)
    await WebhookNotifier(session, receiver.url).send(n)
    [req] = receiver.accepted()
    assert b"\x1b" not in req.body and b"\n" not in req.body  # escaped by JSON
    assert req.json()["description"] == HOSTILE


async def test_log_notifier_line_is_neutral(caplog: pytest.LogCaptureFixture) -> None:
    n = make_notification(description=HOSTILE, subject="heartbeat.x")
    with caplog.at_level(logging.INFO, logger="nats-heartbeat.notify"):
        assert (await send_with_retry(LogNotifier(), n, deadline_s=1.0)).delivered
    [record] = [r for r in caplog.records if r.name == "nats-heartbeat.notify"]
    line = record.getMessage()
    assert not any(c in line for c in INVISIBLE), line[:200]
    assert "db FAKE LOG LINEgnp.exe" in line
