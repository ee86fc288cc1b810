"""The status page in a real browser: Debian's chromium, driven by Playwright.

Two monitor replicas on a real nats-server; the page is loaded from the follower
(any replica answers the same), signed in with the status token, and checked for its
rows, an alerting subject, hostile text shown as text, filters, a live update when a
subject stops, and the history panel.  A screenshot is left in ``$HEARTBEAT_ARTIFACTS``
(or the test's tmp dir) and its path printed.

Without chromium or playwright the test fails in CI (``CI`` set) and skips locally;
``scripts/test`` installs chromium with apt-get when it can.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import msgspec
import pytest
from aiohttp import web
from nats.aio.client import Client as NATS

import heartbeat
from heartbeat.durations import SECOND
from heartbeat.engine import Record
from heartbeat.history import Event, HistoryConfig, HistoryQuery
from heartbeat.notify import WebhookNotifier
from heartbeat.quiet import LOUD, Hush, Quiet, QuietKind
from heartbeat.status import Filter, bound_port, build_report, make_app, serve
from heartbeat.status_schema import SilenceStatus, StatusReport
from heartbeat.subjects import Track
from tests.harness import NatsServer, Receiver, eventually, monitor_config, names, running_monitor

CHROMIUM = Path("/usr/bin/chromium")
TOKEN = "page-test-token"
MS = timedelta(milliseconds=1)
HOSTILE = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=1</script>' + "x" * 5000
pytestmark = pytest.mark.timeout(120)


def _browser_missing() -> str | None:
    try:
        import playwright.async_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing: pip install -e '.[test]'"
    if not CHROMIUM.exists():
        return (
            f"{CHROMIUM} is missing: apt-get install chromium "
            "(./scripts/test installs it when run as root)"
        )
    return None


@pytest.fixture
def artifacts(tmp_path: Path) -> Path:
    where = Path(os.environ.get("HEARTBEAT_ARTIFACTS") or tmp_path)
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture
async def browser() -> AsyncIterator[Any]:
    missing = _browser_missing()
    if missing is not None:
        if os.environ.get("CI"):
            pytest.fail(f"the browser test cannot run in CI: {missing}", pytrace=False)
        pytest.skip(missing)
    from playwright.async_api import async_playwright, expect

    expect.set_options(timeout=15_000)  # a loaded CI machine is slow; a broken page still fails
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=str(CHROMIUM))
        try:
            yield chromium
        finally:
            await chromium.close()


@contextlib.asynccontextmanager
async def replica(url: str, unique: str, name: str, receiver: Receiver) -> AsyncIterator[Any]:
    cfg = monitor_config(unique, poll_s=0.05, tolerance_s=0.2, replica_id=name)
    cfg = dataclasses.replace(
        cfg, history=HistoryConfig(stream=f"EV_{unique}", prefix=f"ev{unique}")
    )
    async with (
        aiohttp.ClientSession() as session,
        running_monitor(url, cfg, [WebhookNotifier(session, receiver.url)]) as mon,
    ):
        yield mon


async def test_the_status_page_in_chromium(
    nats_server: NatsServer,
    nc: NATS,
    receiver: Receiver,
    unique: str,
    browser: Any,
    artifacts: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from playwright.async_api import expect

    p = names(unique)["prefix"]
    async with (
        replica(nats_server.url, unique, "page-a", receiver) as leader,
        replica(nats_server.url, unique, "page-b", receiver) as follower,
        contextlib.AsyncExitStack() as api,
    ):
        await api.enter_async_context(
            heartbeat.beating(
                nc,
                p + "svc.api",
                interval=300 * MS,
                grace_period=1500 * MS,  # a loaded machine's late beat is no alert
                description="API service",
            )
        )
        await eventually(leader.judging, 10, what="page-a leading")
        pub = heartbeat.Publisher(nc)
        await pub.publish(heartbeat.Message(subject=p + "db.gone", interval=100 * MS))
        await pub.publish(heartbeat.Message(subject=p + "web.www", interval=timedelta(hours=1)))
        await pub.publish(
            heartbeat.Message(
                subject=p + "web.evil", interval=timedelta(hours=1), description=HOSTILE
            )
        )

        def follower_sees_the_alert() -> bool:
            rows = {s.subject: s for s in follower.report().subjects}
            return len(rows) == 4 and rows[p + "db.gone"].alert_active

        await eventually(follower_sees_the_alert, 15, what="the follower mirroring the alert")
        app = make_app(follower, token=TOKEN, history=follower.read_history)  # from a follower
        runner = await serve(app, "127.0.0.1:0")
        page = await browser.new_page(viewport={"width": 1280, "height": 720})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
        page.on(
            "console",
            lambda m: (
                errors.append(f"console: {m.text}")
                if m.type == "error" and "Failed to load resource" not in m.text
                else None
            ),
        )
        try:
            base = f"http://127.0.0.1:{bound_port(runner)}/"
            # Signing in: the token once, then an HttpOnly cookie.
            await page.goto(base + "ui")
            await page.fill("#token", "wrong")
            await page.click("#login button")
            await expect(page.locator("#login .error")).to_have_text("Wrong token.")
            await page.fill("#token", TOKEN)
            await page.click("#login button")
            rows = page.locator("#rows tr")
            await expect(rows).to_have_count(4)
            cookies = await page.context.cookies()
            assert [c["httpOnly"] for c in cookies] == [True]
            assert TOKEN not in cookies[0]["value"] and TOKEN not in page.url

            def row(subject: str) -> Any:
                return page.locator(f'#rows tr[data-subject="{p + subject}"]')

            await expect(page.locator("#replica")).to_have_text(
                "Answered by page-b; leader: page-a"
            )
            await expect(row("db.gone").locator(".badge")).to_have_text("ALERT")
            await expect(row("db.gone")).to_have_class(re.compile(r"\bst-alert\b"))
            await expect(row("db.gone").locator("td.details")).to_contain_text("missed for")
            await expect(row("svc.api").locator(".badge")).to_have_text("OK")
            await expect(row("svc.api").locator("td.seen")).to_have_text(re.compile(r"^\d+ s ago$"))
            await expect(page.locator("#count-alert")).to_have_text("1")
            await expect(page.locator("#count-ok")).to_have_text("3")
            await expect(page.locator("#range")).to_have_text("1–4 of 4")

            # Hostile text is text: shown (cut), never run or parsed.
            evil = row("web.evil").locator("td.description")
            await expect(evil).to_contain_text("<script>window.__pwned=1</script>")
            assert await page.evaluate("window.__pwned") is None
            assert await page.locator("#rows script, #rows img").count() == 0
            assert len(await evil.text_content() or "") <= 200

            # Filters go to the server and into the address bar.
            await page.select_option("#state", "alert")
            await expect(rows).to_have_count(1)
            await expect(rows.first).to_have_attribute("data-subject", p + "db.gone")
            assert "state=alert" in page.url
            await page.select_option("#state", "")
            await page.fill("#subject", p + "web.*")
            await page.click("#filters button[type=submit]")
            await expect(rows).to_have_count(2)
            await expect(page.locator("#range")).to_have_text("1–2 of 2")
            await page.fill("#subject", "a..b")
            await page.click("#filters button[type=submit]")
            await expect(page.locator("#error")).to_contain_text("400")
            await page.fill("#subject", "")
            await page.click("#filters button[type=submit]")
            await expect(rows).to_have_count(4)
            await expect(page.locator("#error")).to_be_hidden()

            # History, from the events stream the leader wrote: the alert that was sent.
            await row("db.gone").click()
            await expect(page.locator("#history-box")).to_be_visible()
            await expect(page.locator("#history-subject")).to_have_text(p + "db.gone")
            events = page.locator("#history tbody tr")
            await expect(events.filter(has_text="alert").first).to_be_visible()

            # Live: the API stops beating; its row turns without a reload.
            await page.evaluate("window.__same_page = true")
            await api.aclose()
            await expect(row("svc.api").locator(".badge")).to_have_text(
                re.compile("^(LATE|ALERT)$")
            )
            assert await page.evaluate("window.__same_page") is True
            await expect(row("svc.api").locator("td.details")).to_contain_text("missed for")
            await expect(page.locator("#updated")).to_have_text(re.compile(r"^updated \d+ s ago$"))

            shot = artifacts / "status-page.png"
            await page.screenshot(path=str(shot), full_page=True)
            with capsys.disabled():  # shown even when output is captured
                print(f"\nstatus page screenshot: {shot}")
            assert not errors, errors

            # Signed out behind its back (a changed token, say): it says so, and a reload
            # asks for the token again.
            await page.context.clear_cookies()
            await expect(page.locator("#error")).to_contain_text("reload the page to sign in")
            await page.reload()
            await expect(page.locator("#token")).to_be_visible()
        finally:
            await page.close()
            await runner.cleanup()


class QuietSource:
    """A status source with what the quiet features add (quiet sources, silences), for
    the page's rendering of them; the report is built by the real code."""

    def __init__(self) -> None:
        now = time.time()
        hour = 3600 * SECOND
        self.tracks = [
            Track(
                subject=f"hb.fleet.n{i:03d}",
                record=Record(subject=f"hb.fleet.n{i:03d}", interval_ns=hour, last_seen=now - 3),
            )
            for i in range(250)
        ]
        until = datetime.fromtimestamp(now + 600, UTC)
        self.hushes = {
            "hb.fleet.n000": Hush(Quiet(QuietKind.SILENCED, now + 600, "s-1")),
            "hb.fleet.n001": Hush(Quiet(QuietKind.PAUSED, None, "p-1")),
            "hb.fleet.n002": Hush(Quiet(QuietKind.MAINT, now + 600, "nightly")),
            "hb.fleet.n003": Hush(Quiet(QuietKind.SUPPRESSED, None, "hb.fleet.n250")),
        }
        self.silences = [
            SilenceStatus(
                id="s-1",
                kind="silence",
                subjects=["hb.fleet.n000"],
                starts=datetime.fromtimestamp(now - 60, UTC),
                ends=until,
                reason="<b>disk swap</b>",
                by="ops",
            ),
            SilenceStatus(
                id="p-1",
                kind="pause",
                subjects=["hb.fleet.n001"],
                starts=datetime.fromtimestamp(now - 60, UTC),
            ),
        ]

    def hush_for(self, subject: str, now: float) -> Hush:
        return self.hushes.get(subject, LOUD)

    def report(self, only: Filter | None = None) -> StatusReport:
        now = time.time()
        report = build_report(
            self.tracks, now, monitor="r2", leader=False, only=only, hush_for=self.hush_for
        )
        return msgspec.structs.replace(report, silences=self.silences)

    def healthy(self) -> tuple[bool, str]:
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        return True, "ok"


async def history(query: HistoryQuery) -> list[Event]:
    """What the monitor's history reader answers, for the page's rendering of it."""
    subject = query.pattern
    return [
        Event(time="2026-12-01T10:00:00Z", subject=subject, kind="alert", alert_id="a1",
              monitor="r1"),
        Event(time="2026-12-01T10:00:01Z", subject=subject, kind="delivery",
              channel="oncall", result="failed", attempt=2,
              detail="<script>window.__pwned=1</script>",
              notification_id="a1-1", monitor="r1"),
    ]  # fmt: skip


async def test_quiet_states_silences_paging_and_history_render(browser: Any) -> None:
    from playwright.async_api import expect

    older = asyncio.Event()

    @web.middleware
    async def as_older_replica(request: web.Request, handler: Any) -> web.StreamResponse:
        if older.is_set() and request.query.get("state") in set(QuietKind):
            return web.Response(status=400, text="state must be one of ok, late, alert\n")
        return await handler(request)

    app = make_app(QuietSource(), history=history)
    app.middlewares.append(as_older_replica)
    runner = await serve(app, "127.0.0.1:0")
    page = await browser.new_page()
    try:
        await page.goto(f"http://127.0.0.1:{bound_port(runner)}/ui")
        rows = page.locator("#rows tr")
        await expect(rows).to_have_count(100)
        await expect(page.locator("#replica")).to_have_text("Answered by r2; no replica leads")
        for n, word, cls in [
            (0, "SILENCED", "st-silenced"),
            (1, "PAUSED", "st-paused"),
            (2, "MAINT", "st-maint"),
            (3, "SUPPRESSED", "st-suppressed"),
            (4, "OK", "st-ok"),
        ]:
            row = rows.nth(n)
            await expect(row.locator(".badge")).to_have_text(word)
            await expect(row).to_have_class(re.compile(rf"\b{cls}\b"))
        await expect(rows.nth(3).locator("td.details")).to_contain_text(
            "suppressed: hb.fleet.n250 is missing"
        )
        silences = page.locator("#silences tbody tr")
        await expect(silences).to_have_count(2)
        await expect(silences.first).to_contain_text("<b>disk swap</b>")  # text, not markup
        await expect(silences.nth(1)).to_contain_text("until resumed")

        # Paging.
        await expect(page.locator("#range")).to_have_text("1–100 of 250")
        await page.click("#next")
        await expect(page.locator("#range")).to_have_text("101–200 of 250")
        await expect(rows.first).to_have_attribute("data-subject", "hb.fleet.n100")
        await page.click("#next")
        await expect(rows).to_have_count(50)
        await expect(page.locator("#next")).to_be_disabled()
        await page.click("#prev")
        await page.click("#prev")
        await expect(page.locator("#prev")).to_be_disabled()

        # Quiet kinds: counted apart, and filtered by the monitor.
        await expect(page.locator("#count-silenced")).to_have_text("1")
        await expect(page.locator("#count-maint")).to_be_visible()
        await page.click('#summary .count[data-state="paused"]')
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-subject", "hb.fleet.n001")
        await expect(page.locator("#range")).to_have_text("1–1 of 1")
        await expect(page.locator("#filter-note")).to_have_text("")

        # An older replica without the quiet filters (it answers 400): the page filters the
        # rows it was sent, and says so.
        older.set()
        await page.select_option("#state", "maint")
        await expect(rows).to_have_count(1)
        await expect(rows.first).to_have_attribute("data-subject", "hb.fleet.n002")
        await expect(page.locator("#filter-note")).to_contain_text("cannot filter by MAINT")
        older.clear()

        # History, as the history helper's /history serves it.
        await page.select_option("#state", "")
        await rows.nth(2).click()
        events = page.locator("#history tbody tr")
        await expect(events).to_have_count(2)
        await expect(events.nth(0)).to_contain_text("oncall")  # newest first
        await expect(events.nth(0)).to_contain_text("<script>window.__pwned=1</script>")
        await expect(events.nth(1)).to_contain_text("alert")
        assert await page.evaluate("window.__pwned") is None

        # The replica goes away: the page says so and keeps what it showed.
        await runner.cleanup()
        await expect(page.locator("#error")).to_contain_text("Cannot reach the monitor")
        await expect(rows).to_have_count(100)
    finally:
        await page.close()
        await runner.cleanup()
