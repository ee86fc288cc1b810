"""Hostile bytes against a real status listener: answered 400, counted, never a traceback."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest
from aiohttp import web

from heartbeat.status import bound_port, make_app, request_errors, serve
from heartbeat.status_schema import StatusReport


class Source:
    def report(self) -> StatusReport:
        return StatusReport(observed_at=datetime.now(UTC), subjects=[])

    def healthy(self) -> tuple[bool, str]:
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        return True, "ok"


HOSTILE = [
    pytest.param(b"\x00\xff\xfe\x1b[2J garbage\r\n\r\n", id="garbage"),
    pytest.param(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + bytes(64), id="tls-hello"),
    pytest.param(b"BREW / HTTP/1.1\r\nHost: x\r\n\r\n", id="bad-method"),
    pytest.param(b"GET / HTTP/9.9\r\n\r\n", id="bad-version"),
    pytest.param(b"GET /\x1b[31m\nFAKE HTTP/1.1\r\n\r\n", id="escape-in-path"),
    pytest.param(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", id="huge-header"),
    pytest.param(b"GET / HTTP/1.1\r\n" + b"H: v\r\n" * 5000 + b"\r\n", id="many-headers"),
    pytest.param(b"GET " + b"/a" * 10_000 + b" HTTP/1.1\r\n\r\n", id="huge-url"),
    pytest.param(b"POST / HTTP/1.1\r\nContent-Length: -1\r\n\r\n", id="negative-length"),
    pytest.param(
        b"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", id="bad-chunk"
    ),
    pytest.param(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", id="http2-preface"),
    pytest.param(
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nBad Header\r\n\r\n",
        id="bad-after-good",
    ),
]


@pytest.fixture
async def listener() -> AsyncIterator[tuple[web.Application, int]]:
    app = make_app(Source())
    runner = await serve(app, "127.0.0.1:0")
    yield app, bound_port(runner)
    await runner.cleanup()


async def _raw(port: int, data: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        return await asyncio.wait_for(reader.read(), 10)  # the server closes after a 400
    except ConnectionResetError:
        return b""
    finally:
        writer.close()


@pytest.mark.parametrize("data", HOSTILE)
async def test_malformed_request_is_a_400_and_one_short_line(
    listener: tuple[web.Application, int], data: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    app, port = listener
    answer = await _raw(port, data)
    assert b"400 Bad Request" in answer or answer == b"", answer[:200]
    assert sum(request_errors(app).counts.values()) == 1
    assert not [r for r in caplog.records if r.exc_info], "a traceback was logged"
    lines = [r.getMessage() for r in caplog.records if r.name.startswith(("heartbeat", "aiohttp"))]
    assert len(lines) == 1, lines
    assert len(lines[0]) < 400 and "\n" not in lines[0] and "\x1b" not in lines[0], lines[0]


async def test_a_flood_of_bad_requests_logs_one_line_and_the_listener_still_serves(
    listener: tuple[web.Application, int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    app, port = listener
    n = 200
    for i in range(n):
        await _raw(port, [p.values[0] for p in HOSTILE][i % len(HOSTILE)])  # type: ignore[index]
    assert sum(request_errors(app).counts.values()) == n
    assert len(request_errors(app).counts) >= 5  # several kinds of malformed request
    assert len([r for r in caplog.records if r.name.startswith("heartbeat")]) == 1
    assert not [r for r in caplog.records if r.exc_info]
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/healthz") as resp,
    ):
        assert resp.status == 200
