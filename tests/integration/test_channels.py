"""The native HTTP channels against a real local receiver: the exact request each
sends for alert, repeat, resolved and group, how each classifies real answers,
and that no secret reaches an error (no HTTP mocks)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from email.header import decode_header, make_header
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from heartbeat.notify import (
    DiscordNotifier,
    EventKind,
    Notification,
    Notifier,
    NotifyError,
    NtfyNotifier,
    OpsgenieNotifier,
    PagerDutyNotifier,
    SlackNotifier,
    TeamsNotifier,
    TelegramNotifier,
    epoch_rfc3339,
    group_notice,
    make_session,
    send_with_retry,
)
from tests.harness import free_port, wait_count

S = 1_000_000_000
SLACK_TOKEN = "XXslackXXtokenXXinXXpathXX"
TEAMS_SIG = "teamsSIGNATUREvalue0123456789abcdef"
DISCORD_TOKEN = "discordTOKEN-0123456789-abcdefghijklmnop"
TELEGRAM_TOKEN = "123456:ABC-telegram-bot-token-xyz"
NTFY_TOKEN = "tk_ntfyaccesstoken0123456789"
NTFY_TOPIC = "heartbeats-secret-topic-name"
PD_KEY = "R0UTINGKEYpagerduty0123456789ab"
OG_KEY = "eb243592-faa2-4ba2-a551q-opsgeniekey"

SUBJECT = "heartbeat.db.main"
LABEL = "heartbeat.db.main (Main DB)"
CREATED = 1_700_000_192.0
ALERT_TITLE = f"{LABEL} is DOWN"
ALERT_TEXT = f"{LABEL} is DOWN: no heartbeat for 3m12s (host db-1, window 1m)"
REPEAT_TITLE = f"{LABEL} is still DOWN"
REPEAT_TEXT = f"{LABEL} is still DOWN: no heartbeat for 10m12s (host db-1, window 1m)"
RESOLVED_TITLE = f"{LABEL} is UP again"
RESOLVED_TEXT = f"{LABEL} is UP again after 4m40s down"
GROUP_TITLE = "7 heartbeat notifications: 5 DOWN, 2 UP"
GROUP_LINES = [
    GROUP_TITLE,
    "- heartbeat.s0 is DOWN: no heartbeat for 3m12s (host db-1, window 1m)",
    "- heartbeat.s1 is DOWN: no heartbeat for 3m12s (host db-1, window 1m)",
    "- heartbeat.s2 is UP again after 4m40s down",
    "- heartbeat.s3 is DOWN: no heartbeat for 3m12s (host db-1, window 1m)",
    "- heartbeat.s4 is DOWN: no heartbeat for 3m12s (host db-1, window 1m)",
    "and 2 more",
]
GROUP_TEXT = "\n".join(GROUP_LINES)


def note(event: EventKind = EventKind.ALERT, **overrides: Any) -> Notification:
    missed = {EventKind.REPEAT: 612 * S, EventKind.RESOLVED: 280 * S}.get(event, 192 * S)
    fields: dict[str, Any] = {
        "event": event,
        "subject": SUBJECT,
        "description": "Main DB",
        "host": "db-1",
        "last_seen": 1_700_000_000.0,
        "interval_ns": 15 * S,
        "window_ns": 60 * S,
        "missed_for_ns": missed,
        "miss_count": 4,
        "alert_id": "a1b2c3",
        "notification_id": f"a1b2c3-{event}",
        "created_at": CREATED,
        "monitor": "mon-a",
    }
    fields.update(overrides)
    return Notification(**fields)


def group(count: int = 7) -> Notification:
    members = []
    for i in range(count):
        event = EventKind.RESOLVED if i % 3 == 2 else EventKind.ALERT
        members.append(
            note(event, subject=f"heartbeat.s{i}", description="", alert_id=f"al-{i}",
                 notification_id=f"n-{i}")
        )  # fmt: skip
    return group_notice(members, notification_id="grp-1", created_at=CREATED, monitor="mon-a")


REP = note(EventKind.REPEAT)
RES = note(EventKind.RESOLVED)


def footer(n: Notification) -> str:
    return f"{n.event} · monitor mon-a · id {n.notification_id}"


# --- a receiver that keeps the query string and can answer with a script --------------


@dataclass
class Req:
    method: str
    path_qs: str
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def header(self, name: str) -> str | None:
        return {k.lower(): v for k, v in self.headers.items()}.get(name.lower())


@dataclass
class Rec:
    url: str = ""
    requests: list[Req] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    default_status: int = 200
    echo: bool = False  # answer errors with everything received (a chatty server)
    event: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        req = Req(request.method, request.path_qs, dict(request.headers), body)
        self.requests.append(req)
        self.event.set()
        status = self.script.pop(0) if self.script else self.default_status
        if status == 204:
            return web.Response(status=204)
        # Secrets first: the error keeps only the start of the answer.
        auth = req.header("Authorization") or ""
        text = f"{req.path_qs} {auth} {body.decode()}" if self.echo else "{}"
        return web.Response(status=status, text=text)

    async def wait_for(self, count: int) -> list[Req]:
        await wait_count(self.requests, self.event, count, 10.0, "requests")
        return list(self.requests)


@pytest.fixture
async def rec() -> AsyncIterator[Rec]:
    r = Rec()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", r.handle)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    r.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield r
    finally:
        await runner.cleanup()


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with make_session(timeout_s=5.0) as s:
        yield s


async def sent(notifier: Notifier, rec: Rec, n: Notification) -> Req:
    await notifier.send(n)
    [req] = rec.requests
    rec.requests.clear()
    assert req.method == "POST"
    return req


# --- Slack ----------------------------------------------------------------------------


def slack(session: aiohttp.ClientSession, base: str) -> SlackNotifier:
    return SlackNotifier(session, name="slack", url=f"{base}/services/T0/B0/{SLACK_TOKEN}")


def slack_blocks(icon: str, title: str, text: str, n: Notification) -> dict[str, Any]:
    return {
        "text": text,
        "blocks": [
            {
                "type": "header",
                "text": {"type": "plain_text", "text": f"{icon} {title}", "emoji": True},
            },
            {"type": "section", "text": {"type": "mrkdwn", "text": text}},
            {
                "type": "context",
                "elements": [{"type": "plain_text", "text": footer(n), "emoji": False}],
            },
        ],
    }


async def test_slack_requests(rec: Rec, session: aiohttp.ClientSession) -> None:
    notifier = slack(session, rec.url)
    assert notifier.name == "slack"
    red, green = ":red_circle:", ":large_green_circle:"
    for n, expected in [
        (note(), slack_blocks(red, ALERT_TITLE, ALERT_TEXT, note())),
        (REP, slack_blocks(red, REPEAT_TITLE, REPEAT_TEXT, REP)),
        (RES, slack_blocks(green, RESOLVED_TITLE, RESOLVED_TEXT, RES)),
        (group(), slack_blocks(red, GROUP_TITLE, GROUP_TEXT, group())),
    ]:  # fmt: skip
        req = await sent(notifier, rec, n)
        assert req.path_qs == f"/services/T0/B0/{SLACK_TOKEN}"
        assert req.header("Content-Type") == "application/json"
        assert req.json() == expected


async def test_slack_escapes_mrkdwn_from_heartbeats(
    rec: Rec, session: aiohttp.ClientSession
) -> None:
    req = await sent(slack(session, rec.url), rec, note(description="<!channel> & <b>co"))
    body = req.json()
    expected = "heartbeat.db.main (&lt;!channel&gt; &amp; &lt;b&gt;co) is DOWN"
    assert body["text"].startswith(expected + ": no heartbeat")
    assert body["blocks"][1]["text"]["text"] == body["text"]
    # The header is plain_text: Slack shows it as is, so it needs (and gets) no escaping.
    header = body["blocks"][0]["text"]
    assert header["type"] == "plain_text"
    assert header["text"] == ":red_circle: heartbeat.db.main (<!channel> & <b>co) is DOWN"


# --- Teams ----------------------------------------------------------------------------


def teams(session: aiohttp.ClientSession, base: str) -> TeamsNotifier:
    url = f"{base}/workflows/abc/triggers/manual/paths/invoke?api-version=1&sig={TEAMS_SIG}"
    return TeamsNotifier(session, name="teams", url=url)


def card(color: str, title: str, lines: list[str], n: Notification) -> dict[str, Any]:
    body: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": title, "wrap": True, "weight": "Bolder", "size": "Medium",
         "color": color},
        *({"type": "TextBlock", "text": line, "wrap": True} for line in lines),
        {"type": "TextBlock", "text": footer(n), "wrap": True, "isSubtle": True, "size": "Small"},
    ]  # fmt: skip
    return {
        "type": "message",
        "attachments": [
            {
                "contentType": "application/vnd.microsoft.card.adaptive",
                "contentUrl": None,
                "content": {
                    "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                    "type": "AdaptiveCard",
                    "version": "1.4",
                    "body": body,
                },
            }
        ],
    }


async def test_teams_requests(rec: Rec, session: aiohttp.ClientSession) -> None:
    notifier = teams(session, rec.url)
    rec.default_status = 202
    for n, expected in [
        (note(), card("Attention", ALERT_TITLE, [ALERT_TEXT], note())),
        (REP, card("Attention", REPEAT_TITLE, [REPEAT_TEXT], REP)),
        (RES, card("Good", RESOLVED_TITLE, [RESOLVED_TEXT], RES)),
        (group(), card("Attention", GROUP_TITLE, GROUP_LINES, group())),
    ]:  # fmt: skip
        req = await sent(notifier, rec, n)
        assert (
            req.path_qs
            == f"/workflows/abc/triggers/manual/paths/invoke?api-version=1&sig={TEAMS_SIG}"
        )
        assert req.header("Content-Type") == "application/json"
        assert req.json() == expected


# --- Discord --------------------------------------------------------------------------


def discord(session: aiohttp.ClientSession, base: str) -> DiscordNotifier:
    return DiscordNotifier(session, name="discord", url=f"{base}/api/webhooks/42/{DISCORD_TOKEN}")


def embed(content: str, title: str, text: str, color: int, n: Notification) -> dict[str, Any]:
    return {
        "content": content,
        "embeds": [
            {
                "title": title,
                "description": text,
                "color": color,
                "timestamp": epoch_rfc3339(CREATED),
                "footer": {"text": footer(n)},
            }
        ],
        "allowed_mentions": {"parse": []},
    }


async def test_discord_requests(rec: Rec, session: aiohttp.ClientSession) -> None:
    notifier = discord(session, rec.url)
    rec.default_status = 204  # what Discord answers
    red, green = 0xD93F0B, 0x2EB67D
    for n, expected in [
        (note(), embed(ALERT_TEXT, ALERT_TITLE, ALERT_TEXT, red, note())),
        (REP, embed(REPEAT_TEXT, REPEAT_TITLE, REPEAT_TEXT, red, REP)),
        (RES, embed(RESOLVED_TEXT, RESOLVED_TITLE, RESOLVED_TEXT, green, RES)),
        (group(), embed(GROUP_TITLE, GROUP_TITLE, GROUP_TEXT, red, group())),
    ]:  # fmt: skip
        req = await sent(notifier, rec, n)
        assert req.path_qs == f"/api/webhooks/42/{DISCORD_TOKEN}"
        assert req.header("Content-Type") == "application/json"
        assert req.json() == expected


async def test_discord_heartbeat_text_cannot_hide_a_link(
    rec: Rec, session: aiohttp.ClientSession
) -> None:
    rec.default_status = 204
    n = note(description="[status ok](https://evil.example/login) \\o/")
    body = (await sent(discord(session, rec.url), rec, n)).json()
    label = r"heartbeat.db.main (\[status ok\](https://evil.example/login) \\o/)"
    assert body["content"].startswith(label + " is DOWN: no heartbeat")
    assert body["embeds"][0]["description"] == body["content"]
    assert body["embeds"][0]["title"] == f"heartbeat.db.main ({n.description}) is DOWN"


# --- Telegram -------------------------------------------------------------------------


def telegram(session: aiohttp.ClientSession, base: str) -> TelegramNotifier:
    return TelegramNotifier(
        session, name="telegram", token=TELEGRAM_TOKEN, chat_id="-1001234", api_url=base + "/"
    )


async def test_telegram_requests(rec: Rec, session: aiohttp.ClientSession) -> None:
    notifier = telegram(session, rec.url)
    for n, text in [
        (note(), ALERT_TEXT),
        (note(EventKind.REPEAT), REPEAT_TEXT),
        (note(EventKind.RESOLVED), RESOLVED_TEXT),
        (group(), GROUP_TEXT),
    ]:
        req = await sent(notifier, rec, n)
        assert req.path_qs == f"/bot{TELEGRAM_TOKEN}/sendMessage"
        assert req.header("Content-Type") == "application/json"
        assert req.json() == {
            "chat_id": "-1001234",
            "text": text,
            "link_preview_options": {"is_disabled": True},
        }
    assert TELEGRAM_TOKEN not in repr(notifier)


# --- ntfy -----------------------------------------------------------------------------


def ntfy(session: aiohttp.ClientSession, base: str, token: str = NTFY_TOKEN) -> NtfyNotifier:
    return NtfyNotifier(session, name="ntfy", url=f"{base}/{NTFY_TOPIC}", token=token)


async def test_ntfy_requests(rec: Rec, session: aiohttp.ClientSession) -> None:
    notifier = ntfy(session, rec.url)
    for n, title, text, priority, tags in [
        (note(), ALERT_TITLE, ALERT_TEXT, "high", "rotating_light"),
        (note(EventKind.REPEAT), REPEAT_TITLE, REPEAT_TEXT, "high", "rotating_light"),
        (note(EventKind.RESOLVED), RESOLVED_TITLE, RESOLVED_TEXT, "default", "white_check_mark"),
        (group(), GROUP_TITLE, GROUP_TEXT, "high", "rotating_light"),
    ]:
        req = await sent(notifier, rec, n)
        assert req.path_qs == f"/{NTFY_TOPIC}"
        assert req.header("Title") == title
        assert req.header("Priority") == priority
        assert req.header("Tags") == tags
        assert req.header("Authorization") == f"Bearer {NTFY_TOKEN}"
        assert req.header("Content-Type") == "text/plain; charset=utf-8"
        assert req.body == text.encode()


async def test_ntfy_without_token_and_with_non_ascii_title(
    rec: Rec, session: aiohttp.ClientSession
) -> None:
    req = await sent(ntfy(session, rec.url, token=""), rec, note(description="Datenbank Köln"))
    assert req.header("Authorization") is None
    title = req.header("Title")
    assert title is not None and title.isascii() and title.startswith("=?UTF-8?B?")
    assert str(make_header(decode_header(title))) == f"{SUBJECT} (Datenbank Köln) is DOWN"
    assert req.body.decode().startswith(f"{SUBJECT} (Datenbank Köln) is DOWN: ")


# --- PagerDuty ------------------------------------------------------------------------


def pagerduty(session: aiohttp.ClientSession, base: str) -> PagerDutyNotifier:
    return PagerDutyNotifier(session, name="pagerduty", routing_key=PD_KEY, api_url=base)


def trigger(n: Notification, summary: str) -> dict[str, Any]:
    return {
        "routing_key": PD_KEY,
        "event_action": "trigger",
        "dedup_key": n.alert_id,
        "client": "nats-heartbeat",
        "payload": {
            "summary": summary,
            "source": "db-1",
            "severity": "critical",
            "timestamp": epoch_rfc3339(CREATED),
            "component": n.subject,
            "class": "heartbeat",
            "custom_details": n.body(),
        },
    }


async def test_pagerduty_trigger_repeat_resolve_share_the_dedup_key(
    rec: Rec, session: aiohttp.ClientSession
) -> None:
    notifier = pagerduty(session, rec.url)
    rec.default_status = 202
    alert, repeat, resolved = note(), note(EventKind.REPEAT), note(EventKind.RESOLVED)
    reqs = [await sent(notifier, rec, n) for n in (alert, repeat, resolved)]
    assert [r.path_qs for r in reqs] == ["/v2/enqueue"] * 3
    assert {r.header("Content-Type") for r in reqs} == {"application/json"}
    assert reqs[0].json() == trigger(alert, ALERT_TEXT)
    assert reqs[1].json() == trigger(repeat, REPEAT_TEXT)
    assert reqs[2].json() == {
        "routing_key": PD_KEY,
        "event_action": "resolve",
        "dedup_key": "a1b2c3",
    }
    assert {r.json()["dedup_key"] for r in reqs} == {"a1b2c3"}


async def test_pagerduty_group_is_one_event_per_member(
    rec: Rec, session: aiohttp.ClientSession
) -> None:
    rec.default_status = 202
    g = group()
    await pagerduty(session, rec.url).send(g)
    bodies = [r.json() for r in rec.requests]
    assert [(b["event_action"], b["dedup_key"]) for b in bodies] == [
        ("resolve" if m.event is EventKind.RESOLVED else "trigger", m.alert_id) for m in g.members
    ]
    assert bodies[0] == trigger(g.members[0], GROUP_LINES[1].removeprefix("- "))


async def test_pagerduty_group_tries_every_member_and_fails_retryably(
    rec: Rec, session: aiohttp.ClientSession
) -> None:
    rec.script = [202, 503, 400]
    rec.default_status = 202
    with pytest.raises(NotifyError) as info:
        await pagerduty(session, rec.url).send(group())
    assert len(rec.requests) == 7
    assert info.value.retryable and info.value.status == 503
    assert "2 of 7 group members failed" in str(info.value)
    rec.requests.clear()
    rec.script = [400]
    with pytest.raises(NotifyError) as info:
        await pagerduty(session, rec.url).send(group(2))
    assert not info.value.retryable and len(rec.requests) == 2


async def test_pagerduty_blind_and_sight_restored(rec: Rec, session: aiohttp.ClientSession) -> None:
    from heartbeat.notification import monitor_notice

    notifier = pagerduty(session, rec.url)
    blind = monitor_notice(EventKind.BLIND, "mon-a", 1000.0, 1090.0)
    back = monitor_notice(EventKind.SIGHT_RESTORED, "mon-a", 1000.0, 1125.0)
    first = (await sent(notifier, rec, blind)).json()
    second = (await sent(notifier, rec, back)).json()
    assert first["event_action"] == "trigger" and second["event_action"] == "resolve"
    assert first["dedup_key"] == second["dedup_key"] == blind.alert_id
    assert first["payload"]["severity"] == "warning"
    assert first["payload"]["source"] == "mon-a"
    assert first["payload"]["summary"] == (
        "monitor mon-a is BLIND: it has not seen NATS for 1m30s, "
        "missing heartbeats are not being detected"
    )


# --- Opsgenie -------------------------------------------------------------------------


def opsgenie(session: aiohttp.ClientSession, base: str) -> OpsgenieNotifier:
    return OpsgenieNotifier(session, name="opsgenie", api_key=OG_KEY, api_url=base)


def og_create(n: Notification, title: str, text: str) -> dict[str, Any]:
    details = {k: str(v) for k, v in n.body().items() if v is not None and v != ""}
    return {
        "message": title,
        "alias": n.alert_id,
        "description": text,
        "source": "nats-heartbeat",
        "entity": n.subject,
        "priority": "P2",
        "tags": ["nats-heartbeat", str(n.event)],
        "details": details,
    }


async def test_opsgenie_create_repeat_close_by_alias(
    rec: Rec, session: aiohttp.ClientSession
) -> None:
    notifier = opsgenie(session, rec.url)
    rec.default_status = 202
    alert, repeat, resolved = note(), note(EventKind.REPEAT), note(EventKind.RESOLVED)
    reqs = [await sent(notifier, rec, n) for n in (alert, repeat, resolved)]
    assert {r.header("Authorization") for r in reqs} == {f"GenieKey {OG_KEY}"}
    assert [r.path_qs for r in reqs] == [
        "/v2/alerts",
        "/v2/alerts",
        "/v2/alerts/a1b2c3/close?identifierType=alias",
    ]
    assert reqs[0].json() == og_create(alert, ALERT_TITLE, ALERT_TEXT)
    assert reqs[0].json()["details"]["miss_count"] == "4"
    assert reqs[1].json() == og_create(repeat, REPEAT_TITLE, REPEAT_TEXT)  # same alias again
    assert reqs[2].json() == {"source": "nats-heartbeat", "note": RESOLVED_TEXT}


async def test_opsgenie_group_is_one_request_per_member_and_alias_is_quoted(
    rec: Rec, session: aiohttp.ClientSession
) -> None:
    rec.default_status = 202
    g = group(3)
    odd = note(EventKind.RESOLVED, alert_id="a/b c?")
    await opsgenie(session, rec.url).send(g)
    await opsgenie(session, rec.url).send(odd)
    assert [r.path_qs for r in rec.requests] == [
        "/v2/alerts",
        "/v2/alerts",
        "/v2/alerts/al-2/close?identifierType=alias",
        "/v2/alerts/a%2Fb%20c%3F/close?identifierType=alias",
    ]
    assert [r.json()["alias"] for r in rec.requests[:2]] == ["al-0", "al-1"]


# --- every channel: classification and secrets ----------------------------------------

Factory = Callable[[aiohttp.ClientSession, str], Notifier]
CHANNELS: dict[str, tuple[Factory, tuple[str, ...]]] = {
    "slack": (slack, (SLACK_TOKEN,)),
    "teams": (teams, (TEAMS_SIG,)),
    "discord": (discord, (DISCORD_TOKEN,)),
    "telegram": (telegram, (TELEGRAM_TOKEN,)),
    "ntfy": (ntfy, (NTFY_TOKEN, NTFY_TOPIC)),
    "pagerduty": (pagerduty, (PD_KEY,)),
    "opsgenie": (opsgenie, (OG_KEY,)),
}


@pytest.mark.parametrize("channel", sorted(CHANNELS))
@pytest.mark.parametrize(
    ("status", "retryable"),
    [(200, None), (202, None), (204, None), (400, False), (401, False), (403, False),
     (404, False), (429, True), (500, True), (503, True)],
)  # fmt: skip
async def test_channel_classifies_real_answers(
    rec: Rec, session: aiohttp.ClientSession, channel: str, status: int, retryable: bool | None
) -> None:
    factory, _secrets = CHANNELS[channel]
    rec.default_status = status
    notifier = factory(session, rec.url)
    if retryable is None:
        await notifier.send(note())
    else:
        with pytest.raises(NotifyError) as info:
            await notifier.send(note())
        assert info.value.retryable is retryable
        assert info.value.status == status
        assert f"{notifier.name}: HTTP {status}" in str(info.value)
    assert len(rec.requests) == 1


@pytest.mark.parametrize("channel", sorted(CHANNELS))
@pytest.mark.parametrize("status", [400, 429, 500])
async def test_channel_errors_never_contain_secrets(
    rec: Rec,
    session: aiohttp.ClientSession,
    channel: str,
    status: int,
    caplog: pytest.LogCaptureFixture,
) -> None:
    factory, secrets = CHANNELS[channel]
    rec.default_status = status
    rec.echo = True  # the server repeats path, headers and body in its error
    notifier = factory(session, rec.url)
    with pytest.raises(NotifyError) as info:
        await notifier.send(note())
    echoed = rec.requests[0]
    assert any(s in echoed.path_qs or s in str(echoed.headers) or s.encode() in echoed.body
               for s in secrets)  # fmt: skip
    with caplog.at_level("DEBUG"):
        result = await send_with_retry(
            notifier, note(), deadline_s=0.2, initial_backoff_s=0.01, max_backoff_s=0.05
        )
    assert not result.delivered
    for text in (str(info.value), repr(info.value), result.error, caplog.text, repr(notifier)):
        for secret in secrets:
            assert secret not in text
    assert "<redacted>" in str(info.value)


@pytest.mark.parametrize("channel", sorted(CHANNELS))
async def test_channel_connection_refused_is_retryable_without_secrets(
    session: aiohttp.ClientSession, channel: str
) -> None:
    factory, secrets = CHANNELS[channel]
    notifier = factory(session, f"http://127.0.0.1:{free_port()}")
    with pytest.raises(NotifyError) as info:
        await notifier.send(group(2))
    assert info.value.retryable and info.value.status is None
    assert "cannot connect" in str(info.value)
    for secret in secrets:
        assert secret not in str(info.value)


@pytest.mark.parametrize("channel", sorted(CHANNELS))
def test_channel_names_are_what_the_config_says(channel: str) -> None:
    factory, _ = CHANNELS[channel]
    unused: Any = None  # the name needs no session
    assert factory(unused, "http://127.0.0.1:9").name == channel


BLIND_TEXT = (
    "monitor mon-a is BLIND: it has not seen NATS for 1m30s, "
    "missing heartbeats are not being detected"
)
RESTORED_TEXT = "monitor mon-a sees heartbeats again after 2m5s blind"


@pytest.mark.parametrize("channel", sorted(CHANNELS))
async def test_monitor_notices_render_on_every_channel(
    rec: Rec, session: aiohttp.ClientSession, channel: str
) -> None:
    from heartbeat.notification import monitor_notice

    factory, _ = CHANNELS[channel]
    notifier = factory(session, rec.url)
    blind = monitor_notice(EventKind.BLIND, "mon-a", 1000.0, 1090.0)
    back = monitor_notice(EventKind.SIGHT_RESTORED, "mon-a", 1000.0, 1125.0)
    blind_req = await sent(notifier, rec, blind)
    back_req = await sent(notifier, rec, back)
    assert BLIND_TEXT in blind_req.body.decode()
    for req in (blind_req, back_req):
        text = req.body.decode()
        assert "()" not in text and "(no subject)" not in text
    if channel == "pagerduty":  # resolved by dedup_key alone
        assert back_req.json()["event_action"] == "resolve"
    else:
        assert RESTORED_TEXT in back_req.body.decode()
    if channel == "ntfy":
        assert (blind_req.header("Tags"), blind_req.header("Priority")) == ("warning", "high")
        assert (back_req.header("Tags"), back_req.header("Priority")) == ("eyes", "default")
        assert back_req.header("Title") == "monitor mon-a sees heartbeats again"
    if channel == "opsgenie":
        assert blind_req.json()["alias"] == blind.alert_id
        assert blind_req.json()["entity"] == "monitor mon-a"
        assert blind_req.json()["priority"] == "P3"
        assert back_req.path_qs == f"/v2/alerts/{blind.alert_id}/close?identifierType=alias"
