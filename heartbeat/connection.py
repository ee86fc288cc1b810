"""Connecting to NATS the way a long-running monitor or agent needs.

nats-py's defaults suit short scripts: reconnects give up after ~2 minutes and a
hung server is noticed only after 120 s of silence.  ``connect`` tries every
server once (fast failure for one-shot commands); ``connect_with_retry`` backs off
and retries the first connect, then lets nats-py reconnect forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import nats
from nats.aio.client import Client as NATS

from heartbeat.aio import retry_until_stopped
from heartbeat.errors import ConnectError
from heartbeat.ratelog import RateLog
from heartbeat.text import for_log
from heartbeat.wire import Parser

log = logging.getLogger(__name__)

DEFAULT_URL = "nats://127.0.0.1:4222"
Callback = Callable[[], Awaitable[None]]


@dataclass(frozen=True)
class Auth:
    """Credentials and TLS, named as the ``nats`` CLI names them.

    ``creds`` and ``nkey`` are file paths (a JWT creds file, an nkey seed file);
    ``tls_ca``/``tls_cert``/``tls_key`` are PEM file paths.  Secrets never appear
    in ``repr`` or in errors.
    """

    user: str = ""
    password: str = field(default="", repr=False)
    token: str = field(default="", repr=False)
    creds: str = ""
    nkey: str = ""
    tls_ca: str = ""
    tls_cert: str = ""
    tls_key: str = ""

    def connect_kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.user:
            out["user"] = self.user
            out["password"] = self.password
        if self.token:
            out["token"] = self.token
        if self.creds:
            out["user_credentials"] = self.creds
        if self.nkey:
            out["nkeys_seed"] = self.nkey
        if self.tls_ca or self.tls_cert:
            out["tls"] = self.ssl_context()
        return out

    def ssl_context(self) -> ssl.SSLContext:
        try:
            ctx = ssl.create_default_context(cafile=self.tls_ca or None)
            if self.tls_cert:
                ctx.load_cert_chain(self.tls_cert, self.tls_key or None)
        except (OSError, ssl.SSLError) as e:
            raise ConnectError(f"cannot load TLS files: {e}") from e
        return ctx


@dataclass(frozen=True)
class ConnectOptions:
    """Everything needed to reach the NATS servers.

    ``servers`` is a list of URLs (a comma-separated string is split).
    """

    servers: tuple[str, ...] = (DEFAULT_URL,)
    name: str = "nats-heartbeat"
    connect_timeout_s: float = 2.0
    reconnect_wait_s: float = 1.0
    ping_interval_s: float = 5.0
    max_outstanding_pings: int = 2
    auth: Auth = field(default_factory=lambda: Auth())

    @staticmethod
    def split_servers(urls: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
        items = [urls] if isinstance(urls, str) else list(urls)
        out = tuple(u.strip() for item in items for u in item.split(",") if u.strip())
        return out or (DEFAULT_URL,)


class _Events:
    """nats-py callbacks that keep the last error and log outages once."""

    def __init__(
        self, on_disconnect: Callback | None = None, on_reconnect: Callback | None = None
    ) -> None:
        self.last_error: BaseException | None = None
        self._on_disconnect = on_disconnect
        self._on_reconnect = on_reconnect
        self.connected_once = False
        self.nc: NATS | None = None
        self.fatal = asyncio.Event()  # a first-connect error that retrying cannot fix
        self.denied = RateLog(log, every_s=60.0, what="permission errors")

    async def error(self, e: Exception) -> None:
        # Keep a credentials/certificate error over the connection resets that follow it.
        if self.last_error is None or not is_permanent(self.last_error):
            self.last_error = e
        if not self.connected_once and is_permanent(e):
            self.fatal.set()
        if self.connected_once:
            text = describe_error(e)
            if "permissions violation" in text.lower():
                # The server refused a subscribe or publish; the rest of the connection
                # works, so nothing else says what is missing.
                self.denied.log("denied", logging.WARNING, "%s", for_log(text, 300))
            else:
                log.debug("nats: %s", text)

    async def disconnected(self) -> None:
        # nats-py calls this on close() and drain() too: only an outage counts.
        if self.nc is not None and self.nc.is_closed:
            return
        if self.connected_once:
            log.warning("nats disconnected; reconnecting")
            if self._on_disconnect is not None:
                await self._on_disconnect()

    async def reconnected(self) -> None:
        log.info("nats reconnected")
        if self._on_reconnect is not None:
            await self._on_reconnect()

    async def closed(self) -> None:
        log.debug("nats connection closed")


def redact_url(url: str) -> str:
    """``url`` without any user:password@ part."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return url
    host = rest.rpartition("@")[2]
    return f"{scheme}://{host}"


def redact(text: str, options: ConnectOptions) -> str:
    """``text`` with every secret of ``options`` replaced."""
    secrets = [options.auth.password, options.auth.token]
    for url in options.servers:
        userinfo = url.partition("://")[2].rpartition("@")[0]
        secrets.extend(p for p in userinfo.split(":") if p)
    for secret in secrets:
        if secret:
            text = text.replace(secret, "<redacted>")
    return text


async def _first_connect(
    nc: NATS, kwargs: dict[str, Any], events: _Events, budget_s: float
) -> None:
    attempt = asyncio.ensure_future(nc.connect(**kwargs))
    fatal = asyncio.ensure_future(events.fatal.wait())
    try:
        done, _ = await asyncio.wait(
            {attempt, fatal}, timeout=budget_s, return_when=asyncio.FIRST_COMPLETED
        )
    except BaseException:  # cancelled (a caller's time limit): leave no attempt behind
        attempt.cancel()
        raise
    finally:
        fatal.cancel()
    if attempt in done:
        attempt.result()
        return
    attempt.cancel()
    with contextlib.suppress(BaseException):
        await attempt
    raise TimeoutError("first connect did not complete")


def is_permanent(e: BaseException) -> bool:
    """Errors that retrying will not fix: credentials and certificates."""
    if isinstance(e, nats.errors.AuthorizationError | ssl.SSLCertVerificationError):
        return True
    return "authorization violation" in str(e).lower()


def describe_error(e: BaseException) -> str:
    """A one-line description of a connection error, without a traceback."""
    text = str(e).strip()
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, asyncio.TimeoutError | TimeoutError):
        return "timed out"
    if isinstance(e, nats.errors.AuthorizationError) or "authorization violation" in text.lower():
        return "authorization violation (wrong or missing credentials)"
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"TLS certificate not trusted ({e.verify_message})"
    if isinstance(e, ssl.SSLError):
        return f"TLS error ({e.reason or text})"
    return text or type(e).__name__


Headers = dict[str, str] | None
DirectHandler = Callable[[str, bytes, Headers, int, int, bool], None]
"""Called with a JetStream message's subject, data and headers, its stream sequence,
server time (ns) and whether nothing more is pending (no ``Msg`` is built: ~1.5 µs)."""
_HEADER_LINE = b"NATS/1.0\r\n"  # headers with no status


CoreHandler = Callable[[str, bytes, Headers], None]
"""Called with a core message's subject, data and headers."""


def tap_directly(sub: object, handler: CoreHandler) -> bool:
    """Hand ``sub``'s messages (a core subscription) to ``handler`` as they are read,
    when the connection is ours; whether it is.  Nothing queues, so nats-py's
    pending limits never drop one; a slow handler slows the whole connection."""
    if not isinstance(getattr(sub, "_conn", None), _Client):
        return False
    sub._hb_tap = handler  # type: ignore[attr-defined]
    return True


def deliver_directly(sub: object, handler: DirectHandler) -> bool:
    """Hand ``sub``'s data messages (a push subscription of an ordered consumer) to
    ``handler`` as they are read, when the connection is ours; whether it is."""
    core = getattr(sub, "_sub", None)
    if core is None or not isinstance(getattr(core, "_conn", None), _Client):
        return False
    core._hb_direct = handler
    return True


class _Client(NATS):
    """nats-py's client, except that a subject that is not UTF-8 cannot stop it.

    nats-py decodes every delivered subject strictly; one message published on
    ``heartbeat.\\xff`` (nats-server takes any bytes) raised inside its read loop,
    which then stopped for good: the connection looked up but delivered nothing
    more, and the beat stayed in the stream for the next start.  Here undecodable
    bytes become lone surrogates, which no valid subject contains, so the message is
    rejected like any other bad one.
    """

    def __init__(self) -> None:
        super().__init__()
        self._ps = Parser(self)

    def deliver_now(
        self, sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None
    ) -> bool:
        """Hand a message to its subscription's handler now, if it has one; whether it did.

        For a subscription marked with :func:`tap_directly` (every message) or
        :func:`deliver_directly` (the data messages of an ordered consumer).  nats-py
        puts every message in a queue that a task empties into an async callback:
        three coroutines and a queue round trip per message, about half the cost of a
        beat, and with a callback it answers flow control at once, so a catch-up of a
        million piles up in that queue.  Here messages are handed over in order as
        they are read (TCP then paces the server).  What nats-py tracks for an ordered
        consumer (delivered and stream sequences, activity, the last reply for the
        idle-heartbeat check) is kept as it keeps it.  Anything else (control messages
        and other status lines, a sequence gap, which nats-py answers by recreating the
        consumer, the reply forms with a domain) is declined: nats-py's path takes it.
        """
        sub = self._subs.get(sid)
        if sub is None:
            return False
        tap: CoreHandler | None = getattr(sub, "_hb_tap", None)
        direct: DirectHandler | None = getattr(sub, "_hb_direct", None)
        if tap is None and direct is None:
            return False
        hdr: dict[str, str] | None = None
        if headers:
            if not headers.startswith(_HEADER_LINE):
                return False  # a status line ("NATS/1.0 100 Idle Heartbeat" and others)
            hdr = self._parse_header_lines(headers[len(_HEADER_LINE) :])
        if tap is not None:
            text = subject.decode(errors="surrogateescape")
            self._count_in(data)
            try:
                tap(text, data, hdr)
            except Exception:  # one bad message never stops the connection
                log.exception("handling %s failed", for_log(text))
            return True
        if direct is None or not reply:
            return False
        tokens = reply.split(b".")
        jsi = sub._jsi
        if (
            jsi is None
            or len(tokens) != 9
            or tokens[1] != b"ACK"
            or tokens[0] != b"$JS"
            or int(tokens[6]) != jsi._dseq
        ):
            return False
        self._count_in(data)
        sub._received += 1
        sseq = int(tokens[5])
        jsi._active = True
        jsi._dseq += 1
        jsi._sseq = sseq
        jsi._fciseq += 1
        jsi._cmeta = reply.decode(errors="surrogateescape")
        text = subject.decode(errors="surrogateescape")
        try:
            direct(text, data, hdr, sseq, int(tokens[7]), tokens[8] == b"0")
        except Exception:  # one bad message never stops the connection
            log.exception("handling %s failed", for_log(text))
        return True

    def _count_in(self, data: bytes) -> None:
        stats = self.stats
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)

    def _build_message(
        self,
        sid: int,
        subject: bytes,
        reply: bytes,
        data: bytes,
        headers: dict[str, str] | None,
    ) -> Any:
        return self.msg_class(
            subject=subject.decode(errors="surrogateescape"),
            reply=reply.decode(errors="surrogateescape"),
            data=data,
            headers=headers,
            _client=self,
            _sid=sid,
        )


async def connect(
    options: ConnectOptions,
    *,
    on_disconnect: Callback | None = None,
    on_reconnect: Callback | None = None,
    reconnect_forever: bool = True,
) -> NATS:
    """Connect once (each server tried once); raise :class:`ConnectError` on failure.

    With ``reconnect_forever`` the connection, once made, reconnects without limit.
    """
    events = _Events(on_disconnect, on_reconnect)
    nc = _Client()
    events.nc = nc
    # nats-py annotates these timeouts as int but accepts float seconds.
    kwargs: dict[str, Any] = {
        **options.auth.connect_kwargs(),
        "servers": list(options.servers),
        "name": options.name,
        "connect_timeout": options.connect_timeout_s,
        "reconnect_time_wait": 0.05,
        "max_reconnect_attempts": 1,
        "ping_interval": options.ping_interval_s,
        "max_outstanding_pings": options.max_outstanding_pings,
        "error_cb": events.error,
        "disconnected_cb": events.disconnected,
        "reconnected_cb": events.reconnected,
        "closed_cb": events.closed,
    }
    # nats-py can hang after a TLS handshake failure, and retries bad credentials:
    # bound the first connect, and stop at the first error that retrying cannot fix.
    budget_s = 2 * len(options.servers) * (options.connect_timeout_s + 0.5) + 1.0
    try:
        await _first_connect(nc, kwargs, events, budget_s)
    except (TimeoutError, OSError, nats.errors.Error) as e:
        vague = isinstance(e, nats.errors.NoServersError | TimeoutError)
        cause = events.last_error if vague and events.last_error is not None else e
        with contextlib.suppress(Exception):  # tidying up a connection that failed
            await nc.close()
        where = ",".join(redact_url(u) for u in options.servers)
        raise ConnectError(
            f"cannot connect to {where}: {redact(describe_error(cause), options)}",
            permanent=is_permanent(cause),
        ) from e
    events.connected_once = True
    # The first connect tried each server once; from now on never give up.
    nc.options["max_reconnect_attempts"] = -1 if reconnect_forever else 0
    nc.options["allow_reconnect"] = reconnect_forever
    nc.options["reconnect_time_wait"] = options.reconnect_wait_s
    return nc


async def connect_with_retry(
    options: ConnectOptions,
    stop: asyncio.Event,
    *,
    on_disconnect: Callback | None = None,
    on_reconnect: Callback | None = None,
    max_backoff_s: float = 30.0,
) -> NATS | None:
    """Retry the first connect with exponential backoff until it works or ``stop`` is set.

    Logs one warning when the first attempt fails and one line when it succeeds.
    Returns ``None`` if stopped before connecting.
    """
    return await retry_until_stopped(
        lambda: connect(options, on_disconnect=on_disconnect, on_reconnect=on_reconnect),
        stop,
        retry=lambda e: isinstance(e, ConnectError) and not e.permanent,
        log=log,
        warning="%s; retrying with backoff",
        recovered="connected to NATS after retrying",
        max_backoff_s=max_backoff_s,
    )


async def close_connection(nc: NATS) -> None:
    """Drain ``nc`` when connected, else close it; return only once nats-py has stopped.

    ``drain()`` raises while nats-py is reconnecting (a shutdown during an outage), so
    then the connection is closed instead.  ``close()`` cancels the reconnect task, but
    on Python 3.11 ``asyncio.wait_for`` swallows that cancellation when a connect
    attempt fails at the same moment: nats-py then keeps retrying on the closed client
    and ``asyncio.run()`` waits for the task forever.  Cancel it until it is done.
    """
    task: asyncio.Task[None] | None = getattr(nc, "_reconnection_task", None)
    if nc.is_connected:
        await nc.drain()
    else:
        # Mid-reconnect, nats-py's close flushes a transport that is already gone, and
        # may wait on a close that its own cancelled reconnect attempt ends with a
        # CancelledError: ours only if this task was asked to stop.
        try:
            await nc.close()
        except OSError:
            pass
        except asyncio.CancelledError:
            me = asyncio.current_task()
            if me is not None and me.cancelling():
                raise
    while task is not None and not task.done():
        task.cancel()
        await asyncio.wait([task], timeout=0.1)
