"""The least-privilege permissions in docs/operations.md are enough, and no more."""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from pathlib import Path

import nats
import pytest

from tests.harness import (
    NatsServer,
    cli_binary,
    cli_env,
    free_port,
    recording_receiver,
    run_cli,
    webhook_events,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "operations.md"


def documented_authorization() -> str:
    text = DOC.read_text()
    block = re.search(r"```\n(authorization \{.*?\n\})\n```", text, re.S)
    assert block is not None, "docs/operations.md lost its authorization block"
    return block.group(1)


@pytest.fixture
def secured(tmp_path: Path) -> NatsServer:
    port = free_port()
    auth = (
        documented_authorization()
        .replace("$API_AGENT_PASSWORD", "agentpw")
        .replace("$MONITOR_PASSWORD", "monitorpw")
    )
    conf = f"""
listen: 127.0.0.1:{port}
jetstream {{ store_dir: "{tmp_path / "js"}" }}
{auth}
"""
    server = NatsServer(tmp_path / "js", port=port, config=conf, name="secured").start()
    yield server
    server.stop()


async def test_documented_permissions_run_agent_and_monitor(secured: NatsServer) -> None:
    status_port = free_port()
    async with recording_receiver() as receiver:
        monitor = subprocess.Popen(  # noqa: ASYNC220 (a long-running child, not awaited)
            [cli_binary(), "monitor", "--nats-url", secured.url, "--user", "monitor",
             "--password", "monitorpw", "--webhook-url", receiver.url, "--poll", "100ms",
             "--tolerance", "100ms", "--lease-ttl", "2s",
             "--status-addr", f"127.0.0.1:{status_port}"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=cli_env(),
        )  # fmt: skip
        try:
            beat = ["beat", "--nats-url", secured.url, "--user", "api-agent",
                    "--password", "agentpw", "--interval", "300ms"]  # fmt: skip
            deadline = time.monotonic() + 20
            while True:  # until the monitor has created the stream
                done = await asyncio.to_thread(
                    run_cli, *beat, "--subject", "heartbeat.service.api", timeout=20
                )
                if done.returncode == 0:
                    break
                assert monitor.poll() is None, monitor.stdout.read() if monitor.stdout else ""
                assert time.monotonic() < deadline, done.stderr
                await asyncio.sleep(0.2)
            await receiver.wait_for(1, timeout=15)
            alert = webhook_events(receiver)[0]
            assert alert["event"] == "alert"
            assert alert["subject"] == "heartbeat.service.api"
            # The agent may not publish anyone else's subject.
            other = await asyncio.to_thread(
                run_cli, *beat, "--subject", "heartbeat.service.other", timeout=20
            )
            assert other.returncode == 1
        finally:
            monitor.terminate()
            out, _ = monitor.communicate(timeout=15)
        assert monitor.returncode == 0, out
        assert "permissions violation" not in out.lower(), out


async def test_agent_cannot_read_state(secured: NatsServer) -> None:
    nc = await nats.connect(secured.url, user="api-agent", password="agentpw")
    errors: list[Exception] = []
    try:
        js = nc.jetstream()
        with pytest.raises(Exception) as caught:
            await js.key_value("HEARTBEAT_STATE")
        errors.append(caught.value)
    finally:
        await nc.close()
    assert errors
