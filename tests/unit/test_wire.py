"""heartbeat.wire's parser against nats-py's own, on the same bytes cut anywhere."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from nats.errors import ProtocolError
from nats.protocol.parser import Parser as NatsParser

from heartbeat.wire import YIELD_EVERY, Parser, message_at


def msg(subject: str, sid: int, payload: bytes, reply: str = "") -> bytes:
    args = f"{subject} {sid} {reply + ' ' if reply else ''}{len(payload)}"
    return b"MSG " + args.encode() + b"\r\n" + payload + b"\r\n"


def hmsg(subject: str, sid: int, headers: bytes, payload: bytes, reply: str = "") -> bytes:
    sizes = f"{len(headers)} {len(headers) + len(payload)}"
    args = f"{subject} {sid} {reply + ' ' if reply else ''}{sizes}"
    return b"HMSG " + args.encode() + b"\r\n" + headers + payload + b"\r\n"


STREAM = b"".join(
    [
        b'INFO {"server_id":"x","max_payload":1048576}\r\n',
        msg("heartbeat.a", 1, b"hello"),
        b"PING\r\n",
        msg("heartbeat.b", 2, b"hi", "$JS.ACK.S.C.1.7.1.1700000000000000000.0"),
        b"+OK\r\n",
        hmsg("heartbeat.c", 3, b"NATS/1.0\r\nKV-Operation: DEL\r\n\r\n", b"value"),
        hmsg("_INBOX.x", 4, b"NATS/1.0 100 FlowControl Request\r\n\r\n", b"", "$JS.FC.S.C.1"),
        msg("empty", 5, b""),
        b"PONG\r\n",
        msg("heartbeat.d", 6, b"\r\n\r\n", "reply.to"),  # a payload that looks like line ends
        b"-ERR 'Permissions Violation for Subscription to \"x\"'\r\n",
    ]
)


class Recorder:
    """The client side of a parser: records what it is handed, in order."""

    def __init__(self, take: set[int] = frozenset()) -> None:  # type: ignore[assignment]
        self.calls: list[tuple[Any, ...]] = []
        self.take = take  # sids that deliver_now takes

    def deliver_now(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> bool:
        if sid not in self.take:
            return False
        self.calls.append(("msg", sid, subject, reply, data, headers))
        return True

    async def _process_msg(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> None:
        self.calls.append(("msg", sid, bytes(subject), bytes(reply), data, headers))

    async def _process_err(self, err: str) -> None:
        self.calls.append(("err", err))

    async def _process_ping(self) -> None:
        self.calls.append(("ping",))

    async def _process_pong(self) -> None:
        self.calls.append(("pong",))

    async def _process_info(self, info: dict[str, Any]) -> None:
        self.calls.append(("info", info))


async def feed(parser: Any, chunks: list[bytes]) -> None:
    for c in chunks:
        await parser.parse(c)


def reference() -> list[tuple[Any, ...]]:
    nc = Recorder()
    asyncio.run(feed(NatsParser(nc), [STREAM]))
    return nc.calls


def test_the_reference_sees_every_op() -> None:
    kinds = [c[0] for c in reference()]
    assert kinds.count("msg") == 6 and {"info", "ping", "pong", "err"} <= set(kinds)


@pytest.mark.parametrize("take", [set(), {1, 2, 3, 6}, {1, 2, 3, 4, 5, 6}])
def test_any_two_cuts_give_nats_pys_calls(take: set[int]) -> None:
    # Every pair of cut points over the whole stream: a line, a header or a payload
    # split anywhere, across three reads.
    want = reference()
    n = len(STREAM)
    for i in range(0, n + 1):
        for j in range(i, n + 1, 7):
            nc = Recorder(take)
            parser = Parser(nc)  # type: ignore[arg-type]
            asyncio.run(feed(parser, [STREAM[:i], STREAM[i:j], STREAM[j:]]))
            assert nc.calls == want, (i, j)
            assert not parser.buf


def test_a_partial_message_waits_and_nothing_is_lost_byte_by_byte() -> None:
    nc = Recorder({1, 2, 3, 6})
    parser = Parser(nc)  # type: ignore[arg-type]
    asyncio.run(feed(parser, [STREAM[k : k + 1] for k in range(len(STREAM))]))
    assert nc.calls == reference()


def test_many_messages_in_one_read_yield_to_the_loop() -> None:
    msgs = b"".join(b"MSG s.%d 1 1\r\nx\r\n" % i for i in range(3 * YIELD_EVERY + 5))
    nc = Recorder({1})
    ticks = 0

    async def run() -> None:
        nonlocal ticks

        async def count() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        task = asyncio.ensure_future(count())
        await asyncio.sleep(0)
        before = ticks
        await Parser(nc).parse(msgs)  # type: ignore[arg-type]
        ticks -= before
        task.cancel()

    asyncio.run(run())
    assert len(nc.calls) == 3 * YIELD_EVERY + 5
    assert ticks >= 3  # the other task ran while one read was parsed


@pytest.mark.parametrize(
    "line",
    [
        b"MSG a b 1\r\nx\r\n",  # a sid that is no number
        b"MSG a 1 -1\r\n\r\n",
        b"HMSG a 1 9 3\r\nNATS/1.0\r\n\r\n",  # headers longer than the whole
        b"MSG a\r\n",
        b"BOGUS\r\n",
    ],
)
def test_a_malformed_line_is_a_protocol_error(line: bytes) -> None:
    with pytest.raises(ProtocolError):
        asyncio.run(Parser(Recorder()).parse(line))  # type: ignore[arg-type]


def test_message_at_waits_for_the_trailing_line_end() -> None:
    buf = bytearray(b"MSG a 1 2\r\nhi")
    assert message_at(buf, 0) is None
    buf += b"\r\n"
    assert message_at(buf, 0) == (len(buf), 1, b"a", b"", None, b"hi")
