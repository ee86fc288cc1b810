"""Take the README's screenshot of the status page (docs/status-page.png).

Starts a private nats-server and a monitor with a few subjects in various states
(ok, late, a failed job, a missing service, one in a maintenance window), loads /ui
in Debian's chromium and saves a PNG.  Usage: .venv/bin/python scripts/screenshot.py [--out PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp

import heartbeat
from heartbeat.connection import ConnectOptions, close_connection, connect
from heartbeat.engine import EngineConfig
from heartbeat.maintenance import Window
from heartbeat.monitor import MonitorConfig
from heartbeat.notify import WebhookNotifier
from heartbeat.status import bound_port, make_app, serve
from heartbeat.store import StoreConfig

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.harness import NatsServer, eventually, recording_receiver, running_monitor  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
S = timedelta(seconds=1)


async def scene(nc: Any) -> None:
    """Subjects in the states the page shows (what a small fleet looks like)."""
    pub = heartbeat.Publisher(nc)
    steady = [
        ("heartbeat.api.orders", "Orders API", "api-1", 15 * S),
        ("heartbeat.api.payments", "Payments API", "api-2", 15 * S),
        ("heartbeat.db.main", "Primary database", "db-1", 30 * S),
        ("heartbeat.web.www", "Public website", "web-1", 60 * S),
    ]
    for subject, description, host, interval in steady:
        await pub.publish(
            heartbeat.Message(
                subject=subject, interval=interval, description=description, host=host
            )
        )
    await pub.publish(
        heartbeat.Message(
            subject="heartbeat.backup.nightly", interval=24 * 3600 * S,
            description="Nightly backup", host="db-1", kind="fail", run_id="r1", exit_code=1,
            duration=192 * S, output="pg_dump: error: no space left on device",
            schedule="0 3 * * *",
        )
    )  # fmt: skip
    # Gone: a short interval, published once; later one that is late, not yet alerting
    # (a subject alerts at window + tolerance: 1 s + 4 s here).
    worker = "heartbeat.queue.worker-{}"
    await pub.publish(heartbeat.Message(subject=worker.format(3), interval=S, host="q-3"))
    await pub.publish(  # stopped too, but inside its maintenance window: MAINT, not told
        heartbeat.Message(
            subject="heartbeat.batch.reports", interval=S, description="Report batch", host="b-1"
        )
    )
    await asyncio.sleep(4)
    await pub.publish(heartbeat.Message(subject=worker.format(4), interval=S, host="q-4"))
    await asyncio.sleep(1.5)


async def main(out: Path) -> None:
    from playwright.async_api import async_playwright

    with tempfile.TemporaryDirectory(prefix="nats-heartbeat-shot-") as tmp:
        server = NatsServer(Path(tmp) / "js").start()
        try:
            cfg = MonitorConfig(
                store=StoreConfig(stream="HEARTBEATS", bucket="HEARTBEAT_STATE"),
                engine=EngineConfig(repeat_every_s=3600, tolerance_s=4),
                poll_s=0.2,
                lease_ttl_s=2,
                replica_id="monitor-0",
                # A window that began this hour and lasts two.
                maintenance=(
                    Window(
                        "nightly-batch",
                        ("heartbeat.batch.>",),
                        f"0 {datetime.now(UTC).hour} * * *",
                        7200,
                    ),
                ),
            )
            async with (
                recording_receiver() as receiver,
                aiohttp.ClientSession() as session,
                running_monitor(server.url, cfg, [WebhookNotifier(session, receiver.url)]) as mon,
            ):
                nc = await connect(ConnectOptions(servers=(server.url,)))
                try:
                    await eventually(mon.judging, 10, what="the monitor leading")
                    await scene(nc)
                finally:
                    await close_connection(nc)
                runner = await serve(make_app(mon), "127.0.0.1:0")
                try:
                    async with async_playwright() as pw:
                        browser = await pw.chromium.launch(executable_path=CHROMIUM)
                        page = await browser.new_page(viewport={"width": 1100, "height": 560})
                        await page.goto(f"http://127.0.0.1:{bound_port(runner)}/ui")
                        await page.wait_for_function(
                            "document.querySelectorAll('#rows tr').length >= 8"
                        )
                        await page.click('#rows tr[data-subject="heartbeat.backup.nightly"]')
                        await page.wait_for_function(
                            "document.getElementById('history-note').textContent !== 'Loading…'"
                        )
                        await page.screenshot(path=str(out), full_page=True)
                        await browser.close()
                finally:
                    await runner.cleanup()
        finally:
            server.stop()
    print(f"screenshot: {out}")


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=ROOT / "docs" / "status-page.png")
    asyncio.run(main(p.parse_args().out))
