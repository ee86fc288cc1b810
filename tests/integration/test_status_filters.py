"""GET / filters: by state, by subject pattern, and a limit; bad filters are a 400."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import aiohttp
from nats.aio.client import Client as NATS

import heartbeat
from heartbeat.status import bound_port, make_app, serve
from heartbeat.status_schema import decode_status
from tests.harness import (
    NatsServer,
    Receiver,
    cli_env,
    eventually,
    monitor_config,
    names,
    run_cli,
    webhook_monitor,
)

MS = timedelta(milliseconds=1)


async def test_status_filters_by_state_subject_and_limit(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str
) -> None:
    p = names(unique)["prefix"]
    cfg = monitor_config(unique, poll_s=0.05, tolerance_s=0.05)
    async with webhook_monitor(nats_server.url, cfg, receiver) as (mon, _):
        pub = heartbeat.Publisher(nc)
        await pub.publish(heartbeat.Message(subject=p + "db.gone", interval=100 * MS))
        for name in ("db.main", "web.api", "web.www"):
            await pub.publish(heartbeat.Message(subject=p + name, interval=timedelta(hours=1)))
        await eventually(
            lambda: any(s.alert_active for s in mon.report().subjects), 10, what="an alert"
        )
        runner = await serve(make_app(mon), "127.0.0.1:0")
        base = f"http://127.0.0.1:{bound_port(runner)}/"
        try:
            async with aiohttp.ClientSession() as session:

                async def listed(query: str) -> list[str]:
                    async with session.get(base + query) as r:
                        assert r.status == 200, await r.text()
                        return [s.subject for s in decode_status(await r.read()).subjects]

                assert await listed("?state=alert") == [p + "db.gone"]
                assert await listed("?state=ok") == [p + "db.main", p + "web.api", p + "web.www"]
                assert await listed("?state=late") == []
                assert await listed(f"?subject={p}web.*") == [p + "web.api", p + "web.www"]
                assert await listed(f"?subject={p}db.>&state=ok") == [p + "db.main"]
                assert await listed("?limit=2") == [p + "db.gone", p + "db.main"]
                assert await listed(f"?subject={p}web.api") == [p + "web.api"]  # a lookup
                assert await listed(f"?subject={p}web.api&state=alert") == []
                assert await listed(f"?subject={p}web.none") == []
                for bad in ("?state=down", "?subject=a..b", "?limit=0", "?limit=x", "?colour=1"):
                    async with session.get(base + bad) as r:
                        assert r.status == 400, bad
                        assert len((await r.text()).splitlines()) == 1
            url = base
            # In a thread: the status server answers from this test's event loop.
            out = await asyncio.to_thread(
                run_cli, "status", "--url", url, "--state", "alert", env=cli_env()
            )
            assert out.returncode == 1, out.stderr
            assert p + "db.gone" in out.stdout and p + "db.main" not in out.stdout
            out = await asyncio.to_thread(
                run_cli, "status", "--url", url, "--subject", p + "web.>", env=cli_env()
            )
            assert out.returncode == 0, out.stderr
            assert p + "web.api" in out.stdout and p + "db.gone" not in out.stdout
        finally:
            await runner.cleanup()
