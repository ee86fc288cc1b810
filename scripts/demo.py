"""The demo behind ./scripts/demo: watch an alert and its resolution within a minute."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nats
import nats.errors

import heartbeat
from cli.common import run_to_end
from heartbeat.aio import wait_event

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.harness import NatsServer, cli_binary, free_port, stop_process  # noqa: E402


def spawn(*args: str, prefix: str) -> subprocess.Popen[str]:
    """A nats-heartbeat process whose output is printed with a prefix."""
    env = {k: v for k, v in os.environ.items() if k not in ("NATS_URL", "SUBJECT", "STATUS_URL")}
    proc = subprocess.Popen(
        [cli_binary(), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
    )

    async def pump() -> None:
        assert proc.stdout is not None
        while line := await asyncio.to_thread(proc.stdout.readline):
            text = line.rstrip()
            if "notification event=" in text or prefix != "monitor" or "WARNING" in text:
                print(f"  [{prefix}] {text.split(': ', 1)[-1]}", flush=True)

    asyncio.get_running_loop().create_task(pump())
    return proc


STOP_BUDGET_S = 4.0  # SIGTERM or Ctrl-C to everything gone, children included


async def main(duration: float, forever: bool) -> None:
    """Run the demo; a signal (SIGINT, SIGTERM) at any point stops it and every child
    within STOP_BUDGET_S, whether the signal reached only this process (kill, an
    orchestrator) or its whole process group (Ctrl-C, timeout)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    children: list[subprocess.Popen[str]] = []
    server: NatsServer | None = None
    nc: nats.aio.client.Client | None = None
    try:
        store = Path(tempfile.mkdtemp(prefix="nats-heartbeat-demo-"))
        server = await asyncio.to_thread(NatsServer(store / "js").start)
        if stop.is_set():
            return
        nc = await _run(server, children, stop, duration, forever)
    finally:
        if nc is not None:
            await _quietly_close(nc)
        await asyncio.to_thread(stop_all, children, server, STOP_BUDGET_S)
    print("==> stopped" if stop.is_set() else "==> done", flush=True)


async def _run(
    server: NatsServer,
    children: list[subprocess.Popen[str]],
    stop: asyncio.Event,
    duration: float,
    forever: bool,
) -> nats.aio.client.Client | None:
    status_port = free_port()
    url = server.url
    print(f"==> embedded nats-server on {url} (store {server.store_dir.parent})")
    monitor = spawn(
        "monitor",
        "--nats-url",
        url,
        "--notify-log",
        "--poll",
        "200ms",
        "--tolerance",
        "500ms",
        "--repeat-every",
        "10s",
        "--status-addr",
        f"127.0.0.1:{status_port}",
        "--replica-id",
        "demo-monitor",
        prefix="monitor",
    )
    children.append(monitor)
    print(
        f"==> monitor status: http://127.0.0.1:{status_port}/  "
        f"(try: .venv/bin/nats-heartbeat status --url http://127.0.0.1:{status_port}/)"
    )
    print(f"==> status page: http://127.0.0.1:{status_port}/ui")
    if await wait_event(stop, 1.5):
        return None
    agents = {
        "heartbeat.demo.api": ("1s", "0s", "API service"),
        "heartbeat.demo.worker": ("2s", "5s", "Queue worker"),
        "heartbeat.demo.flaky": ("1s", "0s", "Flaky service (stops at 8s, back at 25s)"),
    }
    running: dict[str, subprocess.Popen[str]] = {}
    for subject, (interval, grace, desc) in agents.items():
        running[subject] = spawn(
            "agent",
            "--nats-url",
            url,
            "--subject",
            subject,
            "--interval",
            interval,
            "--grace",
            grace,
            "--description",
            desc,
            prefix=subject.rsplit(".", 1)[-1],
        )
        children.append(running[subject])

    async def quiet(_e: Exception) -> None:  # the server may stop first (Ctrl-C reaches all)
        return None

    nc = await nats.connect(url, error_cb=quiet, max_reconnect_attempts=3)
    seen: dict[str, int] = {}

    async def on_beat(msg: nats.aio.msg.Msg) -> None:
        beat = heartbeat.decode(msg.data)
        seen[beat.subject] = seen.get(beat.subject, 0) + 1
        if seen[beat.subject] <= 2:
            print(f"  [nats] {msg.subject}: {msg.data.decode()}", flush=True)

    await nc.subscribe("heartbeat.>", cb=on_beat)
    start = time.monotonic()
    stopped = restarted = False
    while not stop.is_set() and (forever or time.monotonic() - start < duration):
        elapsed = time.monotonic() - start
        if elapsed > 8 and not stopped:
            print("==> stopping the flaky agent: expect an alert in ~1.5s", flush=True)
            running["heartbeat.demo.flaky"].send_signal(signal.SIGTERM)
            stopped = True
        if elapsed > 25 and not restarted:
            print("==> restarting the flaky agent: expect a resolved notice", flush=True)
            children.append(
                spawn(
                    "agent",
                    "--nats-url",
                    url,
                    "--subject",
                    "heartbeat.demo.flaky",
                    "--interval",
                    "1s",
                    "--description",
                    agents["heartbeat.demo.flaky"][2],
                    prefix="flaky",
                )
            )
            restarted = True
        await wait_event(stop, 0.25)
    if not stop.is_set() and monitor.poll() is None:  # a signal skips the table: stop first
        print("==> status table:", flush=True)
        status_url = f"http://127.0.0.1:{status_port}/"
        await asyncio.to_thread(
            subprocess.run, [cli_binary(), "status", "--url", status_url], check=False, timeout=10
        )
    print(f"==> beats received: {seen}")
    return nc


async def _quietly_close(nc: nats.aio.client.Client) -> None:
    # asyncio.timeout, not wait_for: Python 3.11's wait_for can raise the closing task's
    # CancelledError instead of TimeoutError when the close outlasts it.
    with contextlib.suppress(TimeoutError, nats.errors.Error, OSError):
        async with asyncio.timeout(1.0):
            await nc.close()


def stop_all(
    children: list[subprocess.Popen[str]], server: NatsServer | None, budget_s: float
) -> None:
    """SIGTERM every child at once, SIGKILL what still runs when the budget is nearly
    spent, then stop the server (last: the children's clean stops need it)."""
    deadline = time.monotonic() + budget_s
    for p in children:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in children:
        stop_process(p, signal.SIGTERM, timeout=max(0.1, deadline - 1.0 - time.monotonic()))
    if server is not None:
        server.stop(timeout=max(0.1, deadline - time.monotonic()))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=35.0, help="seconds to run")
    parser.add_argument("--forever", action="store_true", help="run until Ctrl-C")
    ns = parser.parse_args()
    run_to_end(main(ns.duration, ns.forever))
