"""``heartbeat.job`` against a real nats-server: start, then success or fail, in the stream."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from nats.aio.client import Client as NATS

import heartbeat
from heartbeat.schema import Message
from tests.harness import NatsServer, free_port


@pytest.fixture
async def stream(nc: NATS, unique: str) -> AsyncIterator[tuple[str, str]]:
    """A stream of this test only, keeping every message: ``(name, subject)``."""
    name, subject = f"HBJ_{unique}", f"hbj{unique}.job"
    js = nc.jetstream()
    await js.add_stream(name=name, subjects=[f"hbj{unique}.>"])
    yield name, subject
    await js.delete_stream(name)


async def stored(nc: NATS, stream: str) -> list[Message]:
    """Every message of ``stream``, decoded, in order."""
    js = nc.jetstream()
    info = await js.stream_info(stream)
    out = []
    for seq in range(info.state.first_seq, info.state.last_seq + 1):
        raw = await js.get_msg(stream, seq)
        assert raw.data is not None
        out.append(heartbeat.decode(raw.data))
    return out


def check_run(msgs: list[Message], run: heartbeat.Run, kind: str, exit_code: int) -> Message:
    """``msgs`` are this run's start and end, with the same run id; return the end."""
    assert [m.kind for m in msgs] == ["start", kind]
    start, end = msgs
    assert start.run_id == end.run_id == run.run_id and len(run.run_id) == 32
    assert (start.exit_code, start.duration, start.output) == (None, None, "")
    assert end.exit_code == exit_code
    assert end.duration is not None and end.duration >= timedelta(0)
    assert start.generated_at is not None and end.generated_at is not None
    assert start.generated_at <= end.generated_at
    assert run.errors == []
    assert run.end == end  # what was sent is what the stream holds
    return end


async def test_async_with_sends_start_then_success(nc: NATS, stream: tuple[str, str]) -> None:
    name, subject = stream
    async with heartbeat.job(
        nc, subject=subject, interval=timedelta(hours=1), max_runtime=timedelta(minutes=5)
    ) as run:
        assert [m.kind for m in await stored(nc, name)] == ["start"]  # sent on entry
        await asyncio.sleep(0.05)  # the run takes a measurable time
    end = check_run(await stored(nc, name), run, "success", 0)
    assert end.duration is not None and end.duration >= timedelta(milliseconds=50)
    assert end.max_runtime == timedelta(minutes=5) and end.interval == timedelta(hours=1)
    assert end.host == heartbeat.publisher.local_hostname()
    assert nc.is_connected  # the caller's connection is left open


async def test_async_with_exception_is_a_fail_and_re_raised(
    nc: NATS, stream: tuple[str, str]
) -> None:
    name, subject = stream
    with pytest.raises(ValueError, match="disk full"):
        async with heartbeat.job(nc, subject=subject, interval=timedelta(hours=1)) as run:
            raise ValueError("disk full\nat /var/backups")
    end = check_run(await stored(nc, name), run, "fail", 1)
    assert end.output == "ValueError: disk full"


async def test_sync_with_a_url(nats_server: NatsServer, nc: NATS, stream: tuple[str, str]) -> None:
    name, subject = stream
    with heartbeat.job(
        nats_server.url,
        subject=subject,
        schedule="0 3 * * *",
        timezone="Europe/Berlin",
        grace=timedelta(hours=1),
    ) as run:
        pass
    end = check_run(await stored(nc, name), run, "success", 0)
    assert (end.schedule, end.timezone) == ("0 3 * * *", "Europe/Berlin")
    assert end.interval >= timedelta(hours=23) and end.grace_period == end.interval + timedelta(
        hours=1
    )


async def test_sync_with_failing_block(
    nats_server: NatsServer, nc: NATS, stream: tuple[str, str]
) -> None:
    name, subject = stream
    with (
        pytest.raises(KeyError),
        heartbeat.job([nats_server.url], subject=subject, interval=timedelta(minutes=1)) as run,
    ):
        raise KeyError("missing")
    end = check_run(await stored(nc, name), run, "fail", 1)
    assert end.output == "KeyError: 'missing'"


async def test_decorators_on_def_and_async_def(
    nats_server: NatsServer, nc: NATS, stream: tuple[str, str]
) -> None:
    name, subject = stream

    @heartbeat.job(nats_server.url, subject=subject, interval=timedelta(minutes=1))
    def double(x: int) -> int:
        return 2 * x

    @heartbeat.job(nc, subject=subject, interval=timedelta(minutes=1))
    async def fail_after(x: int) -> int:
        await asyncio.sleep(0)
        raise RuntimeError(f"no {x}")

    assert double(21) == 42
    assert double.__name__ == "double"
    with pytest.raises(RuntimeError, match="no 7"):
        await fail_after(7)
    msgs = await stored(nc, name)
    assert [(m.kind, m.exit_code, m.output) for m in msgs] == [
        ("start", None, ""),
        ("success", 0, ""),
        ("start", None, ""),
        ("fail", 1, "RuntimeError: no 7"),
    ]
    assert msgs[0].run_id == msgs[1].run_id != msgs[2].run_id == msgs[3].run_id


async def test_a_decorated_coroutine_may_run_concurrently(
    nc: NATS, stream: tuple[str, str]
) -> None:
    name, subject = stream
    both = asyncio.Barrier(2)

    @heartbeat.job(nc, subject=subject, interval=timedelta(minutes=1))
    async def meet() -> None:
        await asyncio.wait_for(both.wait(), 5)  # both runs are inside at once

    await asyncio.gather(meet(), meet())
    msgs = await stored(nc, name)
    assert sorted(m.kind for m in msgs) == ["start", "start", "success", "success"]
    assert len({m.run_id for m in msgs}) == 2


async def test_one_job_object_runs_one_block_at_a_time(nc: NATS, stream: tuple[str, str]) -> None:
    _, subject = stream
    j = heartbeat.job(nc, subject=subject, interval=timedelta(minutes=1))
    async with j:
        with pytest.raises(RuntimeError, match="already running"):
            await j.__aenter__()
    async with j:  # done: it may run again
        pass


async def test_sync_with_a_client_is_refused(nc: NATS, stream: tuple[str, str]) -> None:
    with (
        pytest.raises(TypeError, match="async with"),
        heartbeat.job(nc, subject=stream[1], interval=timedelta(minutes=1)),
    ):
        pass


def test_bad_input_fails_before_anything_runs() -> None:
    with pytest.raises(heartbeat.InvalidHeartbeat) as e:
        heartbeat.job("nats://127.0.0.1:1", subject="hb.x", schedule="61 * * * *")
    assert e.value.reason == "bad_schedule"
    with pytest.raises(heartbeat.InvalidSubject):
        heartbeat.job("nats://127.0.0.1:1", subject="hb.>", interval=timedelta(minutes=1))


def test_unreachable_nats_never_stops_the_block(caplog: pytest.LogCaptureFixture) -> None:
    url = f"nats://127.0.0.1:{free_port()}"  # nothing listens there
    ran = []
    began = time.monotonic()
    with heartbeat.job(url, subject="hb.x", interval=timedelta(minutes=1), timeout_s=0.5) as run:
        ran.append(True)
    elapsed = time.monotonic() - began
    assert ran == [True]
    assert len(run.errors) == 2 and all("cannot connect" in e for e in run.errors)
    assert run.end is not None and run.end.kind == "success"
    assert elapsed < 2 * (2 * 0.5 + 1.0)  # each beat gives up within its budget
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("start not sent" in w for w in warnings)
    assert any("success not sent" in w for w in warnings)


async def test_no_stream_is_reported_not_raised(nc: NATS, unique: str) -> None:
    async with heartbeat.job(
        nc, subject=f"nostream{unique}.x", interval=timedelta(minutes=1)
    ) as run:
        pass
    assert len(run.errors) == 2 and "no JetStream stream" in run.errors[0]


async def test_prefix_is_prepended_like_the_publishers(nc: NATS, unique: str) -> None:
    name = f"HBJP_{unique}"
    js = nc.jetstream()
    await js.add_stream(name=name, subjects=[f"hbjp{unique}.>"])
    try:
        async with heartbeat.job(
            nc, subject="nightly", prefix=f"hbjp{unique}", interval=timedelta(hours=24)
        ) as run:
            pass
        msgs = await stored(nc, name)
        check_run(msgs, run, "success", 0)
        assert {m.subject for m in msgs} == {f"hbjp{unique}.nightly"}
    finally:
        await js.delete_stream(name)
