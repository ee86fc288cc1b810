"""Notifiers and the retry policy against real aiohttp receivers (no HTTP mocks)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from heartbeat.notify import (
    DeliveryResult,
    EventKind,
    LogNotifier,
    Notification,
    NotifyError,
    PushoverNotifier,
    StatusClass,
    WebhookNotifier,
    classify_status,
    fan_out,
    make_session,
    send_with_retry,
    words,
)
from tests.harness import Receiver, free_port, recording_receiver

TOKEN = "azGDORePK8gMaC0QOYAMyEEuzJnyUi"
USER = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG"
SECRET = "s3cr3t-hmac-key"
SECOND_NS = 1_000_000_000
FAST = {"initial_backoff_s": 0.01, "max_backoff_s": 0.05}
RETRY_LOGGER = "heartbeat.notify.retry"


def make_notification(event: EventKind = EventKind.ALERT, **overrides: Any) -> Notification:
    fields: dict[str, Any] = {
        "event": event,
        "subject": "heartbeat.db1",
        "description": "primary database",
        "host": "db1.example",
        "last_seen": 1_700_000_000.25,
        "interval_ns": 90 * SECOND_NS,
        "window_ns": 5 * 60 * SECOND_NS,
        "missed_for_ns": 200 * SECOND_NS,
        "miss_count": 2,
        "alert_id": "alert-123",
        "notification_id": "notif-456",
        "created_at": 1_700_000_100.75,
        "monitor": "mon-a",
    }
    fields.update(overrides)
    return Notification(**fields)


def header(rec_headers: dict[str, str], name: str) -> str | None:
    lowered = {k.lower(): v for k, v in rec_headers.items()}
    return lowered.get(name.lower())


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session(timeout_s=5.0) as s:
        yield s


@contextlib.asynccontextmanager
async def serve(
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
) -> AsyncIterator[str]:
    """A one-handler aiohttp server on port 0 (for behaviour the receiver lacks)."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


# --- Pushover -------------------------------------------------------------------------


DB1 = "heartbeat.db1 (primary database)"
PUSHOVER_TEXT = {
    EventKind.ALERT: (
        f"{DB1} is DOWN",
        f"{DB1} is DOWN: no heartbeat for 3m20s (host db1.example, window 5m)",
    ),
    EventKind.REPEAT: (
        f"{DB1} is still DOWN",
        f"{DB1} is still DOWN: no heartbeat for 3m20s (host db1.example, window 5m)",
    ),
    EventKind.BLIND: (
        "monitor mon-a is BLIND",
        "monitor mon-a is BLIND: it has not seen NATS for 3m20s, "
        "missing heartbeats are not being detected",
    ),
    EventKind.RESOLVED: (f"{DB1} is UP again", f"{DB1} is UP again after 3m20s down"),
    EventKind.SIGHT_RESTORED: (
        "monitor mon-a sees heartbeats again",
        "monitor mon-a sees heartbeats again after 3m20s blind",
    ),
}


@pytest.mark.parametrize(
    ("event", "priority"),
    [
        (EventKind.ALERT, "1"),
        (EventKind.REPEAT, "1"),
        (EventKind.BLIND, "1"),
        (EventKind.RESOLVED, "0"),
        (EventKind.SIGHT_RESTORED, "0"),
    ],
)
async def test_pushover_form_fields(
    receiver: Receiver, session: aiohttp.ClientSession, event: EventKind, priority: str
) -> None:
    n = make_notification(event)
    notifier = PushoverNotifier(session, user=USER, token=TOKEN, url=receiver.url + "/1/m.json")
    assert notifier.name == "pushover"
    await notifier.send(n)

    [req] = receiver.accepted()
    assert req.method == "POST"
    assert req.path == "/1/m.json"
    assert header(req.headers, "Content-Type") == "application/x-www-form-urlencoded"
    title, message = PUSHOVER_TEXT[event]
    assert words.summary(n) == (title, message)
    assert req.form() == {
        "token": TOKEN,
        "user": USER,
        "title": title,
        "message": message,
        "priority": priority,
        "timestamp": "1700000100",
    }


@pytest.mark.parametrize("status", [400, 401, 429, 500])
async def test_pushover_errors_never_contain_secrets(
    session: aiohttp.ClientSession, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    async def echo(request: web.Request) -> web.Response:
        # A hostile or chatty server that echoes what it received.
        return web.Response(status=status, text=(await request.read()).decode())

    async with serve(echo) as url:
        notifier = PushoverNotifier(session, user=USER, token=TOKEN, url=url)
        with pytest.raises(NotifyError) as info:
            await notifier.send(make_notification())
        with caplog.at_level(logging.DEBUG):
            result = await send_with_retry(notifier, make_notification(), deadline_s=0.2, **FAST)

    texts = [str(info.value), repr(info.value), result.error, caplog.text, repr(notifier)]
    for text in texts:
        assert TOKEN not in text
        assert USER not in text
    assert f"HTTP {status}" in str(info.value)
    assert "<redacted>" in str(info.value)
    assert info.value.status == status
    assert info.value.retryable is (status >= 429)


async def test_pushover_connection_error_has_no_secrets(session: aiohttp.ClientSession) -> None:
    notifier = PushoverNotifier(
        session, user=USER, token=TOKEN, url=f"http://127.0.0.1:{free_port()}/{TOKEN}"
    )
    with pytest.raises(NotifyError) as info:
        await notifier.send(make_notification())
    assert info.value.retryable
    assert info.value.status is None
    assert TOKEN not in str(info.value)
    assert USER not in str(info.value)


# --- Webhook --------------------------------------------------------------------------

RFC3339 = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")


async def test_webhook_body_and_headers(receiver: Receiver, session: aiohttp.ClientSession) -> None:
    notifier = WebhookNotifier(session, receiver.url + "/hook")
    before = time.time()
    await notifier.send(make_notification())
    after = time.time()

    [req] = receiver.accepted()
    assert req.method == "POST"
    assert req.path == "/hook"
    assert header(req.headers, "Content-Type") == "application/json"
    assert header(req.headers, "Idempotency-Key") == "notif-456"
    assert header(req.headers, "X-Heartbeat-Signature") is None
    assert b": " not in req.body and b", " not in req.body  # compact encoding

    body = req.json()
    sent_at = body.pop("sent_at")
    assert RFC3339.match(sent_at)
    assert before - 1 <= _parse_rfc3339(sent_at) <= after + 1
    assert body == {
        "event": "alert",
        "subject": "heartbeat.db1",
        "description": "primary database",
        "host": "db1.example",
        "last_seen": "2023-11-14T22:13:20.25Z",
        "interval": "1m30s",
        "window": "5m0s",
        "missed_for": "3m20s",
        "miss_count": 2,
        "alert_id": "alert-123",
        "notification_id": "notif-456",
        "monitor": "mon-a",
    }


def _parse_rfc3339(text: str) -> float:
    from datetime import datetime

    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


async def test_webhook_resolved_without_last_seen(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    await WebhookNotifier(session, receiver.url).send(
        make_notification(EventKind.RESOLVED, last_seen=None)
    )
    body = receiver.accepted()[0].json()
    assert body["event"] == "resolved"
    assert body["last_seen"] is None


async def test_webhook_signature_verifies_over_exact_body(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    await WebhookNotifier(session, receiver.url, secret=SECRET).send(make_notification())

    [req] = receiver.accepted()
    signature = header(req.headers, "X-Heartbeat-Signature")
    assert signature is not None and signature.startswith("sha256=")
    expected = hmac.new(SECRET.encode(), req.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(signature.removeprefix("sha256="), expected)
    wrong = hmac.new(b"other", req.body, hashlib.sha256).hexdigest()
    assert not hmac.compare_digest(signature.removeprefix("sha256="), wrong)
    assert SECRET not in req.body.decode()


def test_webhook_name_is_stable_and_distinct_per_url() -> None:
    session: Any = None  # name needs no session
    a1 = WebhookNotifier(session, "https://hooks.example/a?token=xyz")
    a2 = WebhookNotifier(session, "https://hooks.example/a?token=xyz", secret=SECRET)
    b = WebhookNotifier(session, "https://hooks.example/b")
    expected = hashlib.sha256(b"https://hooks.example/a?token=xyz").hexdigest()[:8]
    assert a1.name == a2.name == f"webhook:{expected}"
    assert b.name != a1.name
    assert re.fullmatch(r"webhook:[0-9a-f]{8}", b.name)
    assert "xyz" not in repr(a2) and SECRET not in repr(a2)


async def test_webhook_errors_hide_url_and_secret(session: aiohttp.ClientSession) -> None:
    url = f"http://127.0.0.1:{free_port()}/hook/T0KEN-IN-PATH"
    notifier = WebhookNotifier(session, url, secret=SECRET)
    with pytest.raises(NotifyError) as info:
        await notifier.send(make_notification())
    assert info.value.retryable
    assert notifier.name in str(info.value)
    assert "T0KEN-IN-PATH" not in str(info.value)
    assert SECRET not in str(info.value)


# --- classification -------------------------------------------------------------------

CLASSIFICATION = [
    (200, StatusClass.OK),
    (201, StatusClass.OK),
    (204, StatusClass.OK),
    (400, StatusClass.PERMANENT),
    (401, StatusClass.PERMANENT),
    (404, StatusClass.PERMANENT),
    (429, StatusClass.RETRY),
    (500, StatusClass.RETRY),
    (502, StatusClass.RETRY),
    (503, StatusClass.RETRY),
]


@pytest.mark.parametrize(("status", "expected"), CLASSIFICATION)
def test_classify_status(status: int, expected: StatusClass) -> None:
    assert classify_status(status) is expected


@pytest.mark.parametrize("channel", ["pushover", "webhook"])
@pytest.mark.parametrize(("status", "expected"), CLASSIFICATION)
async def test_notifier_classifies_real_responses(
    receiver: Receiver,
    session: aiohttp.ClientSession,
    channel: str,
    status: int,
    expected: StatusClass,
) -> None:
    receiver.default_status = status
    notifier: PushoverNotifier | WebhookNotifier
    if channel == "pushover":
        notifier = PushoverNotifier(session, user=USER, token=TOKEN, url=receiver.url)
    else:
        notifier = WebhookNotifier(session, receiver.url, secret=SECRET)
    if expected is StatusClass.OK:
        await notifier.send(make_notification())
    else:
        with pytest.raises(NotifyError) as info:
            await notifier.send(make_notification())
        assert info.value.status == status
        assert info.value.retryable is (expected is StatusClass.RETRY)
    assert len(receiver.accepted()) == 1


# --- send_with_retry ------------------------------------------------------------------


async def test_retry_delivers_on_third_attempt_with_same_key(
    receiver: Receiver, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script = [500, 500, 200]
    notifier = WebhookNotifier(session, receiver.url)
    with caplog.at_level(logging.INFO, logger=RETRY_LOGGER):
        result = await send_with_retry(notifier, make_notification(), deadline_s=5.0, **FAST)

    assert result == DeliveryResult(delivered=True, permanent=False, attempts=3, error="")
    reqs = receiver.accepted()
    assert len(reqs) == 3
    assert {header(r.headers, "Idempotency-Key") for r in reqs} == {"notif-456"}
    # The same error twice is logged once (when it changes), not on every attempt.
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "HTTP 500" in warnings[0].getMessage()


async def test_retry_logs_again_when_the_error_changes(
    receiver: Receiver, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script = [500, 500, 503, 503, 200]
    with caplog.at_level(logging.WARNING, logger=RETRY_LOGGER):
        result = await send_with_retry(
            WebhookNotifier(session, receiver.url), make_notification(), deadline_s=5.0, **FAST
        )
    assert result.delivered and result.attempts == 5
    messages = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(messages) == 2
    assert "HTTP 500" in messages[0] and "HTTP 503" in messages[1]


async def test_permanent_error_is_not_retried_and_logged_loudly(
    receiver: Receiver, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    receiver.script = [400]
    notifier = PushoverNotifier(session, user=USER, token=TOKEN, url=receiver.url)
    with caplog.at_level(logging.WARNING, logger=RETRY_LOGGER):
        result = await send_with_retry(notifier, make_notification(), deadline_s=5.0, **FAST)

    assert not result.delivered
    assert result.permanent
    assert result.attempts == 1
    assert "HTTP 400" in result.error
    assert len(receiver.accepted()) == 1
    errors = [r for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 1
    assert "pushover" in errors[0].getMessage()
    assert "notif-456" in errors[0].getMessage()
    assert not [r for r in caplog.records if r.levelno == logging.WARNING]
    assert TOKEN not in caplog.text and USER not in caplog.text


async def test_always_500_gives_up_by_the_deadline(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    receiver.default_status = 500
    start = time.monotonic()
    result = await send_with_retry(
        WebhookNotifier(session, receiver.url), make_notification(), deadline_s=0.5, **FAST
    )
    elapsed = time.monotonic() - start

    assert elapsed < 0.5 + 0.2
    assert not result.delivered
    assert not result.permanent
    assert result.attempts >= 3
    # The last attempt may be cut short by the deadline before the receiver records it.
    assert len(receiver.accepted()) <= result.attempts <= len(receiver.accepted()) + 1
    assert "HTTP 500" in result.error


async def test_a_round_failing_as_the_last_one_did_logs_nothing_new(
    receiver: Receiver, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    """A channel down for hours is retried every few seconds without a log line each time."""
    receiver.default_status = 500
    notifier = WebhookNotifier(session, receiver.url)
    with caplog.at_level(logging.INFO, logger=RETRY_LOGGER):
        first = await send_with_retry(notifier, make_notification(), deadline_s=0.3, **FAST)
        logged = len(caplog.records)
        second = await send_with_retry(
            notifier, make_notification(), deadline_s=0.3, previous_error=first.error, **FAST
        )
    assert logged >= 2  # the first failure and "still failing"
    assert not second.delivered and second.error == first.error
    assert len(caplog.records) == logged, [r.getMessage() for r in caplog.records[logged:]]


async def test_connection_refused_is_retryable(session: aiohttp.ClientSession) -> None:
    notifier = WebhookNotifier(session, f"http://127.0.0.1:{free_port()}/hook")
    result = await send_with_retry(notifier, make_notification(), deadline_s=0.3, **FAST)
    assert not result.delivered
    assert not result.permanent
    assert result.attempts >= 2
    assert "cannot connect" in result.error


async def test_hanging_server_is_cut_off_at_the_deadline(session: aiohttp.ClientSession) -> None:
    release = asyncio.Event()
    arrived = 0

    async def hang(request: web.Request) -> web.Response:
        nonlocal arrived
        arrived += 1
        await release.wait()
        return web.Response(status=200)

    async with serve(hang) as url:
        start = time.monotonic()
        result = await send_with_retry(
            WebhookNotifier(session, url), make_notification(), deadline_s=0.3, **FAST
        )
        elapsed = time.monotonic() - start
        release.set()

    assert 0.25 <= elapsed < 0.8
    assert result == DeliveryResult(
        delivered=False, permanent=False, attempts=1, error=result.error
    )
    assert "deadline" in result.error
    assert arrived == 1


class _Buggy:
    name = "buggy"

    def __init__(self, fail_times: int) -> None:
        self.fail_times = fail_times
        self.calls = 0

    async def send(self, notification: Notification) -> None:
        self.calls += 1
        if self.calls <= self.fail_times:
            raise KeyError("oops")


async def test_notifier_bug_is_logged_with_channel_and_retried(
    caplog: pytest.LogCaptureFixture,
) -> None:
    notifier = _Buggy(fail_times=2)
    with caplog.at_level(logging.WARNING, logger=RETRY_LOGGER):
        result = await send_with_retry(notifier, make_notification(), deadline_s=2.0, **FAST)
    assert result.delivered and result.attempts == 3
    [record] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert record.levelno == logging.ERROR
    assert "buggy" in record.getMessage() and "KeyError" in record.getMessage()
    assert record.exc_info is not None


async def test_send_with_retry_rejects_non_positive_deadline() -> None:
    with pytest.raises(ValueError, match="deadline_s"):
        await send_with_retry(LogNotifier(), make_notification(), deadline_s=0)


# --- fan_out --------------------------------------------------------------------------


async def test_fan_out_good_channel_is_not_delayed_by_a_failing_one(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    receiver.default_status = 200
    calls: list[tuple[str, DeliveryResult, float]] = []

    async def on_result(name: str, result: DeliveryResult) -> None:
        calls.append((name, result, time.monotonic()))

    async with recording_receiver() as bad_receiver:
        bad_receiver.default_status = 500
        good = WebhookNotifier(session, receiver.url + "/good")
        bad = WebhookNotifier(session, bad_receiver.url + "/bad")
        start = time.monotonic()
        results = await fan_out(
            [bad, good], make_notification(), deadline_s=1.0, on_result=on_result, **FAST
        )
        finished = time.monotonic()

    assert [name for name, _, _ in calls] == [good.name, bad.name]
    good_at = calls[0][2] - start
    bad_at = calls[1][2] - start
    assert good_at < 0.5
    assert 0.9 <= bad_at <= finished - start <= 1.2
    assert results[good.name].delivered and results[good.name].attempts == 1
    assert not results[bad.name].delivered and not results[bad.name].permanent
    assert calls[0][1] == results[good.name] and calls[1][1] == results[bad.name]
    assert len(receiver.accepted()) == 1
    assert len(bad_receiver.accepted()) >= 3


async def test_fan_out_failing_callback_does_not_affect_other_channels(
    receiver: Receiver, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    seen: list[str] = []
    hook = WebhookNotifier(session, receiver.url)

    async def on_result(name: str, result: DeliveryResult) -> None:
        if name == "log":
            raise RuntimeError("kv down")
        seen.append(name)

    with caplog.at_level(logging.ERROR, logger=RETRY_LOGGER):
        results = await fan_out(
            [LogNotifier(), hook], make_notification(), deadline_s=1.0, on_result=on_result
        )
    assert seen == [hook.name]
    assert all(r.delivered for r in results.values())
    assert "recording the result" in caplog.text


async def test_fan_out_rejects_duplicate_names(session: aiohttp.ClientSession) -> None:
    with pytest.raises(ValueError, match="distinct"):
        await fan_out(
            [WebhookNotifier(session, "http://x/"), WebhookNotifier(session, "http://x/")],
            make_notification(),
            deadline_s=1.0,
        )


# --- log ------------------------------------------------------------------------------


async def test_log_notifier_line(caplog: pytest.LogCaptureFixture) -> None:
    n = make_notification()
    with caplog.at_level(logging.INFO, logger="nats-heartbeat.notify"):
        result = await send_with_retry(LogNotifier(), n, deadline_s=1.0)
    assert result.delivered
    [record] = [r for r in caplog.records if r.name == "nats-heartbeat.notify"]
    assert record.levelno == logging.INFO
    assert record.getMessage() == (
        "notification event=alert subject=heartbeat.db1 id=notif-456 alert_id=alert-123 "
        "heartbeat.db1 (primary database) is DOWN: no heartbeat for 3m20s "
        "(host db1.example, window 5m)"
    )


# --- groups on the existing channels --------------------------------------------------


def make_group(count: int) -> Notification:
    from heartbeat.notification import group_notice

    members = [
        make_notification(
            EventKind.RESOLVED if i == 1 else EventKind.ALERT,
            subject=f"heartbeat.s{i}",
            description="",
            notification_id=f"n{i}",
        )
        for i in range(count)
    ]
    return group_notice(members, notification_id="grp", created_at=1_700_000_100.75, monitor="m")


async def test_webhook_sends_a_group_as_one_body(
    receiver: Receiver, session: aiohttp.ClientSession
) -> None:
    g = make_group(2)
    await WebhookNotifier(session, receiver.url, name="hook-a").send(g)
    [req] = receiver.accepted()
    assert header(req.headers, "Idempotency-Key") == "grp"
    body = req.json()
    sent_at = body.pop("sent_at")
    members = body.pop("notifications")
    assert body == {"event": "group", "count": 2, "notification_id": "grp", "monitor": "m"}
    assert [m["notification_id"] for m in members] == ["n0", "n1"]
    assert [m["event"] for m in members] == ["alert", "resolved"]
    assert {m["sent_at"] for m in members} == {sent_at}
    assert members[0] == {**make_group(2).members[0].body(), "sent_at": sent_at}


async def test_pushover_and_log_render_a_group_as_one_message(
    receiver: Receiver, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    g = make_group(7)
    down = "is DOWN: no heartbeat for 3m20s (host db1.example, window 5m)"
    lines = [
        "7 heartbeat notifications: 6 DOWN, 1 UP",
        f"- heartbeat.s0 {down}",
        "- heartbeat.s1 is UP again after 3m20s down",
        f"- heartbeat.s2 {down}",
        f"- heartbeat.s3 {down}",
        f"- heartbeat.s4 {down}",
        "and 2 more",
    ]
    notifier = PushoverNotifier(session, user=USER, token=TOKEN, url=receiver.url, name="po-2")
    assert notifier.name == "po-2"
    await notifier.send(g)
    form = receiver.accepted()[0].form()
    assert form["title"] == lines[0]
    assert form["message"] == "\n".join(lines)
    assert form["priority"] == "1"
    with caplog.at_level(logging.INFO, logger="nats-heartbeat.notify"):
        await LogNotifier(name="log-2").send(g)
    [record] = [r for r in caplog.records if r.name == "nats-heartbeat.notify"]
    assert record.getMessage() == (
        "notification event=group subject= id=grp alert_id=grp " + "; ".join(lines)
    )
