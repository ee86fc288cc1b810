"""``nats-heartbeat agent`` and ``beat`` as real processes against real nats-servers."""

from __future__ import annotations

import asyncio
import itertools
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import nats
import pytest
from nats.aio.client import Client as NATS

import heartbeat
from tests.harness import BeatRecorder, CliProcess, NatsServer, cli_env, free_port, run_cli

INTERVAL = "200ms"
INTERVAL_S = 0.2


@pytest.fixture
async def stream(nc: NATS, unique: str) -> AsyncIterator[tuple[str, str]]:
    """A JetStream stream of this test only: ``(name, subject_base)``, capturing ``base.>``."""
    name, base = f"HBE_{unique}", f"hbe{unique}"
    js = nc.jetstream()
    await js.add_stream(name=name, subjects=[f"{base}.>"])
    yield name, base
    await js.delete_stream(name)


def agent(subject: str, url: str, *extra: str) -> CliProcess:
    return CliProcess(
        "agent", "--subject", subject, "--interval", INTERVAL, "--nats-url", url, *extra
    )


async def subscribe(url: str, subject: str) -> tuple[NATS, BeatRecorder]:
    """A fresh connection recording ``subject`` (the caller closes it)."""
    nc = await nats.connect(url, allow_reconnect=False)
    recorder = BeatRecorder()
    await recorder.subscribe(nc, subject)
    return nc, recorder


async def stored(nc: NATS, stream: str, subject: str) -> tuple[str, heartbeat.Message]:
    """The NATS subject and decoded payload of the stream's last message on ``subject``."""
    raw = await nc.jetstream().get_last_msg(stream, subject)
    assert raw.subject is not None and raw.data is not None
    return raw.subject, heartbeat.decode(raw.data)


def problems(lines: list[str]) -> list[str]:
    return [line for line in lines if "WARNING" in line or "ERROR" in line or "Traceback" in line]


# --- agent ---------------------------------------------------------------------------------------


async def test_agent_publishes_well_formed_beats_and_stops_on_sigterm(
    nats_server: NatsServer, nc: NATS, unique: str
) -> None:
    subject = f"hbe{unique}.api"
    recorder = BeatRecorder()
    await recorder.subscribe(nc, subject)

    with agent(subject, nats_server.url) as proc:
        beats = await recorder.wait_for(3)
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = await proc.wait_exit(5)
        took = time.monotonic() - sent

    print(f"agent exited {took:.3f}s after SIGTERM")
    assert code == 0, proc.text()
    assert took < 2 * INTERVAL_S + 0.5
    for beat in beats:
        msg = heartbeat.decode(beat.data)
        assert beat.subject == msg.subject == subject
        assert msg.interval == timedelta(milliseconds=200)
        assert msg.grace_period is None
        assert msg.host == socket.gethostname()
        assert msg.generated_at is not None and msg.generated_at.utcoffset() == timedelta(0)
    arrivals = [b.at for b in beats]
    gaps = [b - a for a, b in itertools.pairwise(arrivals)]
    assert all(0.1 <= g <= 0.4 for g in gaps), gaps
    assert problems(proc.lines()) == []
    assert "stopped after" in proc.lines()[-1]


async def test_agent_stops_on_sigint(nats_server: NatsServer, nc: NATS, unique: str) -> None:
    subject = f"hbe{unique}.api"
    recorder = BeatRecorder()
    await recorder.subscribe(nc, subject)

    with agent(subject, nats_server.url) as proc:
        await recorder.wait_for(1)
        proc.send_signal(signal.SIGINT)
        code = await proc.wait_exit(2)

    assert code == 0, proc.text()
    assert problems(proc.lines()) == []


async def test_agent_takes_settings_from_env(
    nats_server: NatsServer, nc: NATS, unique: str
) -> None:
    subject = f"hbe{unique}.env"
    recorder = BeatRecorder()
    await recorder.subscribe(nc, subject)
    env = cli_env(
        NATS_URL=nats_server.url,
        SUBJECT=subject,
        INTERVAL="150ms",
        GRACE="1s",
        DESCRIPTION="from env",
        HEARTBEAT_HOST="env-host",
    )

    with CliProcess("agent", env=env) as proc:
        [beat, *_] = await recorder.wait_for(2)
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait_exit(5) == 0, proc.text()

    msg = heartbeat.decode(beat.data)
    assert msg.subject == subject
    assert msg.interval == timedelta(milliseconds=150)
    assert msg.grace_period == timedelta(seconds=1)
    assert (msg.description, msg.host) == ("from env", "env-host")


async def test_agent_resumes_after_server_restart(
    nats_factory: Callable[..., NatsServer], unique: str
) -> None:
    server = nats_factory()
    subject = f"hbe{unique}.api"
    outage_s = 6 * INTERVAL_S  # how long NATS stays away (the scenario, not a wait for a result)

    with agent(subject, server.url) as proc:
        nc, recorder = await subscribe(server.url, subject)
        try:
            await recorder.wait_for(2)
        finally:
            await nc.close()

        down = time.monotonic()
        server.stop(kill=True)
        await proc.wait_for_line("not sent", since=down)
        await asyncio.sleep(outage_s)
        server.restart()  # same port, same store
        ready = time.monotonic()
        nc, recorder = await subscribe(server.url, subject)
        try:
            [beat] = await recorder.wait_for(1, timeout=10)
        finally:
            await nc.close()
        resumed_s = beat.at - ready
        print(f"agent resumed {resumed_s:.3f}s after the server was ready (interval {INTERVAL})")
        await proc.wait_for_line("flowing again", since=ready)

        proc.send_signal(signal.SIGTERM)
        assert await proc.wait_exit(5) == 0, proc.text()

    assert heartbeat.decode(beat.data).subject == subject
    assert resumed_s < 2 * INTERVAL_S, proc.text()
    # One line per layer for the whole outage, not one per missed beat.
    during = proc.lines(since=down, until=ready)
    assert len(during) <= 2, during
    assert sum("not sent" in line for line in during) == 1, during
    assert sum("nats disconnected" in line for line in during) <= 1, during
    flowing = next(line for line in proc.lines(since=ready) if "flowing again" in line)
    failed = int(flowing.split("after ")[1].split()[0])
    assert failed >= outage_s / INTERVAL_S - 1, flowing
    assert not any("Traceback" in line for line in proc.lines())


@pytest.mark.parametrize("into_outage_s", [0.0, 0.04, 0.08])
async def test_agent_stopped_during_outage_exits_cleanly(
    nats_factory: Callable[..., NatsServer], unique: str, into_outage_s: float
) -> None:
    # Regression: drain() raised while reconnecting (a traceback, exit 1), and a stop that
    # raced a failing reconnect attempt left nats-py retrying forever (the process hung).
    server = nats_factory()
    subject = f"hbe{unique}.api"

    with agent(subject, server.url) as proc:
        nc, recorder = await subscribe(server.url, subject)
        try:
            await recorder.wait_for(1)
        finally:
            await nc.close()
        down = time.monotonic()
        server.stop(kill=True)
        await proc.wait_for_line("not sent", since=down)
        await asyncio.sleep(into_outage_s)  # a different point of the reconnect cycle
        proc.send_signal(signal.SIGTERM)
        code = await proc.wait_exit(5)

    assert code == 0, proc.text()
    assert not any("Traceback" in line for line in proc.lines()), proc.text()


async def test_agent_started_before_server_waits_for_it(
    nats_factory: Callable[..., NatsServer], unique: str
) -> None:
    port = free_port()
    subject = f"hbe{unique}.api"

    with agent(subject, f"nats://127.0.0.1:{port}") as proc:
        await proc.wait_for_line("retrying")
        server = nats_factory(port=port)
        nc, recorder = await subscribe(server.url, subject)
        try:
            [beat, *_] = await recorder.wait_for(2, timeout=10)
        finally:
            await nc.close()
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait_exit(5) == 0, proc.text()

    assert heartbeat.decode(beat.data).subject == subject
    warnings = [line for line in proc.lines() if "WARNING" in line]
    assert len(warnings) == 1, warnings  # one line for all the failed connects
    assert any("connected to NATS after retrying" in line for line in proc.lines())


async def test_agent_stopped_before_server_appears_exits_0(unique: str) -> None:
    with agent(f"hbe{unique}.api", f"nats://127.0.0.1:{free_port()}") as proc:
        await proc.wait_for_line("retrying")
        proc.send_signal(signal.SIGTERM)
        assert await proc.wait_exit(5) == 0, proc.text()


async def test_agent_exit_on_flush_fail_without_stream(
    nats_server: NatsServer, unique: str
) -> None:
    with agent(f"nostream{unique}.api", nats_server.url, "--ack", "--exit-on-flush-fail") as proc:
        code = await proc.wait_exit(10)

    assert code == 1, proc.text()
    assert any("no JetStream stream" in line for line in proc.lines()), proc.text()


# --- beat ----------------------------------------------------------------------------------------


async def test_beat_stores_and_prints_one_line(
    nats_server: NatsServer, nc: NATS, stream: tuple[str, str]
) -> None:
    name, base = stream
    subject = f"{base}.backup"

    result = await asyncio.to_thread(
        run_cli,
        "beat",
        "--subject",
        subject,
        "--interval",
        "24h",
        "--grace",
        "2h",
        "--description",
        "nightly backup",
        "--nats-url",
        nats_server.url,
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"heartbeat {subject} stored"]
    assert result.stderr == ""
    nats_subject, msg = await stored(nc, name, subject)
    assert nats_subject == msg.subject == subject
    assert (msg.interval, msg.grace_period) == (timedelta(hours=24), timedelta(hours=2))
    assert msg.description == "nightly backup"
    assert msg.host == socket.gethostname()


async def test_beat_takes_settings_from_env(
    nats_server: NatsServer, nc: NATS, stream: tuple[str, str]
) -> None:
    name, base = stream
    subject = f"{base}.env"
    env = cli_env(
        NATS_URL=nats_server.url,
        SUBJECT=subject,
        INTERVAL="1m30s",
        GRACE="5m",
        DESCRIPTION="from env",
        HEARTBEAT_HOST="env-host",
        FLUSH_TIMEOUT="3s",
    )

    result = await asyncio.to_thread(run_cli, "beat", env=env)

    assert result.returncode == 0, result.stderr
    _, msg = await stored(nc, name, subject)
    assert msg.subject == subject
    assert (msg.interval, msg.grace_period) == (timedelta(seconds=90), timedelta(minutes=5))
    assert (msg.description, msg.host) == ("from env", "env-host")


async def test_beat_flags_override_env(
    nats_server: NatsServer, nc: NATS, stream: tuple[str, str]
) -> None:
    name, base = stream
    env = cli_env(NATS_URL=nats_server.url, SUBJECT=f"{base}.env", INTERVAL="1m")

    result = await asyncio.to_thread(
        run_cli, "beat", "--subject", f"{base}.flag", "--interval", "2m", env=env
    )

    assert result.returncode == 0, result.stderr
    _, msg = await stored(nc, name, f"{base}.flag")
    assert msg.interval == timedelta(minutes=2)


async def test_beat_without_stream_exits_1_with_one_line(
    nats_server: NatsServer, unique: str
) -> None:
    subject = f"nostream{unique}.backup"

    result = await asyncio.to_thread(
        run_cli, "beat", "--subject", subject, "--interval", "1h", "--nats-url", nats_server.url
    )

    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("nats-heartbeat: ") and "no JetStream stream" in line
    assert subject in line


async def test_beat_unreachable_server_exits_1_with_one_line() -> None:
    url = f"nats://127.0.0.1:{free_port()}"

    result = await asyncio.to_thread(
        run_cli, "beat", "--subject", "hb.backup", "--interval", "1h", "--nats-url", url
    )

    assert result.returncode == 1
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("nats-heartbeat: ") and "cannot connect" in line


@pytest.mark.parametrize(
    ("args", "env", "expect"),
    [
        pytest.param([], {}, "Missing option '--subject'", id="missing-subject"),
        pytest.param(["--subject", "hb.*"], {}, "wildcard", id="star"),
        pytest.param(["--subject", "hb.>"], {}, "wildcard", id="gt"),
        pytest.param(["--subject", "hb..b"], {}, "empty token", id="empty-token"),
        pytest.param(["--subject", "hb.a b"], {}, "whitespace", id="space"),
        pytest.param(["--subject", "hb.x", "--interval", "0s"], {}, "greater than 0", id="zero"),
        pytest.param(["--subject", "hb.x", "--interval", "abc"], {}, "not a duration", id="abc"),
        pytest.param(["--subject", "hb.x", "--grace=-1s"], {}, "negative", id="neg-grace"),
        pytest.param(["--subject", "hb.x", "--grace", "-1s"], {}, "negative", id="neg-grace-sp"),
        pytest.param([], {"SUBJECT": "hb.*"}, "wildcard", id="env-subject"),
        pytest.param(["--subject", "hb.x"], {"INTERVAL": "0s"}, "INTERVAL", id="env-interval"),
        pytest.param(["--subject", "hb.x"], {"GRACE": "soon"}, "GRACE", id="env-grace"),
    ],
)
@pytest.mark.parametrize("command", ["beat", "agent"])
async def test_bad_input_exits_2_with_one_line_before_connecting(
    command: str, args: list[str], env: dict[str, str], expect: str
) -> None:
    # Nothing listens on the URL: had the command tried to connect, it would say so (exit 1).
    url = f"nats://127.0.0.1:{free_port()}"

    result = await asyncio.to_thread(
        run_cli, command, *args, env=cli_env(NATS_URL=url, **env), timeout=10
    )

    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    [line] = result.stderr.splitlines()
    assert line.startswith("nats-heartbeat: ")
    assert expect in line
    assert "connect" not in line
