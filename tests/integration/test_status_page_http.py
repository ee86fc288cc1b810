"""The status page over HTTP: signing in with the token, the cookie, headers, paging."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest

from heartbeat.durations import SECOND
from heartbeat.engine import Record
from heartbeat.status import Filter, bound_port, build_report, make_app, serve
from heartbeat.status_schema import StatusReport, decode_status
from heartbeat.statuspage import COOKIE, session_value
from heartbeat.subjects import Track

TOKEN = "t0ken-for-the-page"


class Source:
    """The status of 250 subjects, built by the real report code."""

    def __init__(self) -> None:
        now = time.time()
        self.tracks = [
            Track(
                subject=f"hb.s{i:03d}",
                record=Record(subject=f"hb.s{i:03d}", interval_ns=3600 * SECOND, last_seen=now),
            )
            for i in range(250)
        ]

    def report(self, only: Filter | None = None) -> StatusReport:
        return build_report(self.tracks, time.time(), monitor="r1", leader=True, only=only)

    def healthy(self) -> tuple[bool, str]:
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        return True, "ok"


async def listen(token: str) -> AsyncIterator[str]:
    runner = await serve(make_app(Source(), token=token), "127.0.0.1:0")
    try:
        yield f"http://127.0.0.1:{bound_port(runner)}/"
    finally:
        await runner.cleanup()


@pytest.fixture
async def guarded() -> AsyncIterator[str]:
    async for base in listen(TOKEN):
        yield base


@pytest.fixture
async def open_listener() -> AsyncIterator[str]:
    async for base in listen(""):
        yield base


def session() -> aiohttp.ClientSession:
    # unsafe: keep cookies for 127.0.0.1 (an IP address); no redirects followed here.
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def test_a_browser_signs_in_once_and_the_cookie_opens_the_json(guarded: str) -> None:
    async with session() as s:
        async with s.get(guarded + "ui") as r:  # no token: the sign-in form
            assert r.status == 401 and 'name="token"' in await r.text()
        async with s.get(guarded) as r:
            assert r.status == 401
        for path in ("ui/status.js", "ui/status.css"):  # no data in them: served to anyone
            async with s.get(guarded + path) as r:
                assert r.status == 200
        async with s.get(guarded + "ui?token=nope", allow_redirects=False) as r:
            assert r.status == 401 and "Wrong token." in await r.text()
            assert COOKIE not in r.cookies
        async with s.get(guarded + f"ui?token={TOKEN}", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "ui"  # token off the address bar
            cookie = r.cookies[COOKIE]
            assert cookie.value == session_value(TOKEN) and TOKEN not in cookie.value
            assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
            assert not cookie["secure"]  # plain HTTP here
        async with s.get(guarded + "ui") as r:
            assert r.status == 200
            html = await r.text()
            assert 'id="rows"' in html and 'id="logout"' in html
            csp = r.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "unsafe-inline" not in csp
            assert r.headers["Referrer-Policy"] == "no-referrer"
        async with s.get(guarded + "?limit=10&counts=1") as r:
            assert r.status == 200
            report = decode_status(await r.read())
            assert report.total == 250 and len(report.subjects) == 10
        async with s.get(guarded + "ui/logout", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "../ui"
            assert r.cookies[COOKIE].value == ""  # deleted
        async with s.get(guarded) as r:
            assert r.status == 401
        async with s.get(guarded + "ui/logout", allow_redirects=False) as r:
            assert r.status == 303  # signed out already (or with a stale cookie): still fine


async def test_the_sign_in_form_and_a_proxy_that_speaks_https(guarded: str) -> None:
    async with session() as s:
        async with s.post(guarded + "ui", data={"token": "wrong"}) as r:
            assert r.status == 401 and "Wrong token." in await r.text()
        async with s.post(guarded + "ui", data={"token": "x" * 20_000}) as r:
            assert r.status == 401
        headers = {"X-Forwarded-Proto": "https"}
        async with s.post(
            guarded + "ui", data={"token": TOKEN}, headers=headers, allow_redirects=False
        ) as r:
            assert r.status == 303 and r.cookies[COOKIE]["secure"]
    async with (
        aiohttp.ClientSession() as s,
        s.get(guarded, headers={"Cookie": f"{COOKIE}={session_value('another token')}"}) as r,
    ):
        assert r.status == 401  # a cookie of another token (or an old one) opens nothing
    async with (
        aiohttp.ClientSession() as s,
        s.get(guarded, headers={"Authorization": f"Bearer {TOKEN}"}) as r,
    ):
        assert r.status == 200  # the CLI's way still works


async def test_without_a_token_the_page_opens_and_offers_no_sign_out(open_listener: str) -> None:
    async with session() as s:
        async with s.get(open_listener + "ui") as r:
            assert r.status == 200
            html = await r.text()
            assert 'id="rows"' in html and "logout" not in html
        async with s.get(open_listener + "ui/", allow_redirects=False) as r:
            assert r.status == 303 and r.headers["Location"] == "../ui"
        async with s.get(open_listener + "?limit=100&offset=200") as r:
            report = decode_status(await r.read())
            assert report.total == 250 and [x.subject for x in report.subjects][:1] == ["hb.s200"]
            assert len(report.subjects) == 50
        async with s.get(open_listener + "?after=hb.s247") as r:
            assert [x.subject for x in decode_status(await r.read()).subjects] == [
                "hb.s248",
                "hb.s249",
            ]
        async with s.get(open_listener + "?offset=-3") as r:
            assert r.status == 400 and len((await r.text()).splitlines()) == 1
