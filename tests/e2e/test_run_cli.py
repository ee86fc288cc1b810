"""``nats-heartbeat run`` as a real process against a real nats-server."""

from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from nats.aio.client import Client as NATS

import heartbeat
from heartbeat.schema import Message
from tests.harness import NatsServer, cli_binary, cli_env, free_port, run_cli, stop_process


@pytest.fixture
async def stream(nc: NATS, unique: str) -> AsyncIterator[tuple[str, str]]:
    """A stream of this test only, keeping every message: ``(name, subject)``."""
    name, subject = f"HBR_{unique}", f"hbr{unique}.job"
    js = nc.jetstream()
    await js.add_stream(name=name, subjects=[f"hbr{unique}.>"])
    yield name, subject
    await js.delete_stream(name)


async def stored(nc: NATS, stream: str) -> list[Message]:
    js = nc.jetstream()
    info = await js.stream_info(stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        raw = await js.get_msg(stream, seq)
        assert raw.data is not None
        out.append(heartbeat.decode(raw.data))
    return out


def run_args(url: str, subject: str, *flags: str) -> list[str]:
    return ["run", "--nats-url", url, "--subject", subject, *flags]


def warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "WARNING" in line or "ERROR" in line]


def one_run(msgs: list[Message], kind: str, exit_code: int) -> tuple[Message, Message]:
    assert [m.kind for m in msgs] == ["start", kind]
    start, end = msgs
    assert start.run_id == end.run_id and len(start.run_id) == 32
    assert (start.exit_code, start.duration, start.output) == (None, None, "")
    assert end.exit_code == exit_code and end.duration is not None
    assert start.generated_at is not None and end.generated_at is not None
    assert start.generated_at <= end.generated_at
    return start, end


async def test_true_sends_start_then_success(
    nats_server: NatsServer, nc: NATS, stream: tuple[str, str]
) -> None:
    name, subject = stream
    flags = ("--interval", "1h", "--grace", "10m", "--max-runtime", "5m", "--host", "cron-1")
    done = await asyncio.to_thread(
        run_cli,
        *run_args(nats_server.url, subject, *flags, "--description", "nightly"),
        "--",
        "true",
    )
    assert (done.returncode, done.stdout, warnings(done.stderr)) == (0, "", [])
    start, end = one_run(await stored(nc, name), "success", 0)
    for msg in (start, end):
        assert (msg.subject, msg.host, msg.description) == (subject, "cron-1", "nightly")
        assert (msg.interval, msg.grace_period) == (timedelta(hours=1), timedelta(minutes=70))
        assert msg.max_runtime == timedelta(minutes=5)
        assert (msg.schedule, msg.timezone) == ("", "")
    assert end.output == "" and timedelta(0) <= (end.duration or timedelta(0)) < timedelta(
        seconds=5
    )


async def test_failing_command_sends_fail_with_code_and_output(
    nats_server: NatsServer, nc: NATS, stream: tuple[str, str]
) -> None:
    name, subject = stream
    script = "echo hi; echo oops >&2; exit 3"
    done = await asyncio.to_thread(
        run_cli, *run_args(nats_server.url, subject, "--interval", "1m"), "--", "sh", "-c", script
    )
    assert done.returncode == 3
    assert done.stdout == "hi\n"  # passed through, each stream to its own
    assert done.stderr == "oops\n"
    _, end = one_run(await stored(nc, name), "fail", 3)
    assert "hi\n" in end.output and "oops\n" in end.output


async def test_output_tail_is_the_last_4_kib(
    nats_server: NatsServer, nc: NATS, stream: tuple[str, str]
) -> None:
    name, subject = stream
    script = "seq 1 20000; exit 1"  # about 108 kB
    done = await asyncio.to_thread(
        run_cli, *run_args(nats_server.url, subject, "--interval", "1m"), "--", "sh", "-c", script
    )
    assert done.returncode == 1 and done.stdout.endswith("19999\n20000\n")
    assert len(done.stdout.splitlines()) == 20000  # all of it passed through
    _, end = one_run(await stored(nc, name), "fail", 1)
    assert len(end.output.encode()) <= 4096 and end.output.endswith("19999\n20000\n")
    assert len(end.output.encode()) > 4000


async def test_schedule_and_zone_ride_on_every_beat(
    nats_server: NatsServer, nc: NATS, stream: tuple[str, str]
) -> None:
    name, subject = stream
    flags = ("--schedule", "0 3 * * *", "--timezone", "Asia/Kolkata", "--grace", "30m")
    done = await asyncio.to_thread(
        run_cli,
        *run_args(nats_server.url, subject, *flags),
        "true",  # no "--" needed
    )
    assert done.returncode == 0, done.stderr
    for msg in one_run(await stored(nc, name), "success", 0):
        assert (msg.schedule, msg.timezone) == ("0 3 * * *", "Asia/Kolkata")
        assert msg.interval == timedelta(hours=24)  # no DST in India
        assert msg.grace_period == timedelta(hours=24, minutes=30)


async def test_missing_command_is_127_and_a_fail(
    nats_server: NatsServer, nc: NATS, stream: tuple[str, str]
) -> None:
    name, subject = stream
    done = await asyncio.to_thread(
        run_cli, *run_args(nats_server.url, subject, "--interval", "1m"), "--", "no-such-cmd-x"
    )
    assert done.returncode == 127
    assert "cannot run 'no-such-cmd-x'" in done.stderr
    _, end = one_run(await stored(nc, name), "fail", 127)
    assert "no-such-cmd-x" in end.output


@pytest.fixture
def ready_job(
    nats_server: NatsServer, unique: str, tmp_path: Path
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """``run`` with a child that says "ready", then reports and exits 7 on SIGTERM."""
    script = 'trap "echo child-got-TERM; exit 7" TERM; echo ready; while :; do sleep 0.1; done'
    subject = f"hbr{unique}.job"
    proc = subprocess.Popen(
        [cli_binary(), *run_args(nats_server.url, subject, "--interval", "1m"), "--", "sh", "-c",
         script],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=cli_env(),
    )  # fmt: skip
    yield proc, subject
    stop_process(proc, signal.SIGKILL)
    for pipe in (proc.stdout, proc.stderr):
        if pipe is not None:
            pipe.close()


async def read_line(proc: subprocess.Popen[bytes], timeout: float = 10.0) -> bytes:
    assert proc.stdout is not None
    return await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout)


async def test_sigterm_reaches_the_command_whose_exit_code_is_ours(
    nc: NATS, stream: tuple[str, str], ready_job: tuple[subprocess.Popen[bytes], str]
) -> None:
    name, _ = stream
    proc, _ = ready_job
    assert await read_line(proc) == b"ready\n"
    proc.send_signal(signal.SIGTERM)
    assert await read_line(proc) == b"child-got-TERM\n"  # the child handled it
    assert await asyncio.to_thread(proc.wait, 10) == 7
    _, end = one_run(await stored(nc, name), "fail", 7)
    # (sh may also say "Terminated" on stderr: its sleep got the signal too)
    assert end.output.startswith("ready\n") and "child-got-TERM\n" in end.output


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)]
)
async def test_a_command_killed_by_a_signal_exits_128_plus_n(
    nats_server: NatsServer, nc: NATS, stream: tuple[str, str], sig: int, code: int
) -> None:
    name, subject = stream
    proc = subprocess.Popen(  # noqa: ASYNC220 (started once; the waits go to threads)
        [cli_binary(), *run_args(nats_server.url, subject, "--interval", "1m"), "--", "sh", "-c",
         "echo ready; exec sleep 30"],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=cli_env(),
    )  # fmt: skip
    try:
        assert await read_line(proc) == b"ready\n"
        began = time.monotonic()
        proc.send_signal(sig)
        assert await asyncio.to_thread(proc.wait, 10) == code
        assert time.monotonic() - began < 5  # sleep 30 did not run out
    finally:
        stop_process(proc, signal.SIGKILL)
        assert proc.stdout is not None
        proc.stdout.close()
    one_run(await stored(nc, name), "fail", code)


def test_unreachable_nats_still_runs_the_command(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    url = f"nats://127.0.0.1:{free_port()}"  # refused at once
    began = time.monotonic()
    done = run_cli(
        *run_args(url, "hb.x", "--interval", "1m"), "--", "sh", "-c", f"touch {marker}; exit 5"
    )
    assert done.returncode == 5
    assert marker.exists()
    assert time.monotonic() - began < 5
    lines = warnings(done.stderr)
    assert len(lines) == 1 and "start not sent" in lines[0] and "connection refused" in lines[0]


@pytest.fixture
def silent_server() -> Iterator[str]:
    """A TCP port that accepts connections and never speaks: NATS that hangs."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(16)
        yield f"nats://127.0.0.1:{s.getsockname()[1]}"


def test_hanging_nats_delays_neither_start_nor_exit_much(silent_server: str) -> None:
    script = 'echo "$(date +%s.%N)"; exit 4'
    began = time.time()
    done = run_cli(*run_args(silent_server, "hb.x", "--interval", "1m"), "--", "sh", "-c", script)
    ended = time.time()
    assert done.returncode == 4
    child_started = float(done.stdout.strip())
    assert child_started - began < 2.0  # the command started without waiting for NATS
    assert ended - child_started < 6.0  # the end beat gave up within its budget
    lines = warnings(done.stderr)
    assert len(lines) == 1 and "start not sent" in lines[0], done.stderr


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--subject", "hb.x"], "give one of --interval and --schedule"),
        (["--subject", "hb.x", "--interval", "1m", "--schedule", "* * * * *"], "give one of"),
        (["--subject", "hb.x", "--interval", "1m", "--timezone", "UTC"], "needs --schedule"),
        (["--subject", "hb.x", "--schedule", "61 * * * *"], "is not a cron expression"),
        (["--subject", "hb.x", "--schedule", "0 3 * * *", "--timezone", "X/Y"], "time zone"),
        (["--subject", "hb.*", "--interval", "1m"], "wildcard"),
        (["--subject", "hb.x", "--interval", "0s"], "must be greater than 0"),
        (["--subject", "hb.x", "--interval", "1m", "--grace", "-1s"], "must not be negative"),
    ],
)
def test_bad_flags_exit_2_before_anything_runs(
    tmp_path: Path, flags: list[str], message: str
) -> None:
    marker = tmp_path / "ran"
    done = run_cli("run", "--nats-url", "nats://127.0.0.1:1", *flags, "--", "touch", str(marker))
    assert done.returncode == 2
    assert message in done.stderr and len(done.stderr.splitlines()) == 1, done.stderr
    assert not marker.exists()


def test_missing_command_is_a_usage_error() -> None:
    done = run_cli("run", "--subject", "hb.x", "--interval", "1m")
    assert done.returncode == 2 and "COMMAND" in done.stderr


def test_help_shows_a_crontab_line() -> None:
    done = run_cli("run", "--help")
    assert done.returncode == 0
    assert "0 3 * * *  nats-heartbeat run --subject heartbeat.backup" in done.stdout


@pytest.mark.parametrize(
    ("tz", "sent"), [("America/St_Johns", "America/St_Johns"), ("Nowhere/X", "")]
)
async def test_schedule_zone_defaults_to_this_machines(
    nats_server: NatsServer, nc: NATS, stream: tuple[str, str], tz: str, sent: str
) -> None:
    name, subject = stream
    args = run_args(nats_server.url, subject, "--schedule", "*/30 * * * *")
    done = await asyncio.to_thread(run_cli, *args, "--", "true", env=cli_env(TZ=tz))
    assert done.returncode == 0, done.stderr
    start, end = one_run(await stored(nc, name), "success", 0)
    assert start.timezone == end.timezone == sent  # an unknown zone: the schedule is in UTC
    assert start.interval == timedelta(minutes=30)


def test_no_stream_for_the_subject_is_one_line(nats_server: NatsServer, unique: str) -> None:
    done = run_cli(
        *run_args(nats_server.url, f"nostream{unique}.job", "--interval", "1m"), "--", "false"
    )
    assert done.returncode == 1
    lines = warnings(done.stderr)
    assert len(lines) == 1 and "no JetStream stream captures" in lines[0], done.stderr
