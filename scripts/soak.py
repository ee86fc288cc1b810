"""The chaos soak behind ./scripts/soak: many faults at once, then the invariants and figures.

One run starts, all on loopback and in a temporary directory:

- a 3-node NATS JetStream cluster (``tests/harness.start_cluster``);
- 3 ``nats-heartbeat monitor`` replicas (``--replicas 3``, ``--lease-ttl 3s``, ``--poll 200ms``,
  ``--tolerance 1s``, ``--repeat-every 0s``, ``--blind-after 2s``), each listing all three
  servers, with its own ``--status-addr`` and ``--replica-id`` and one webhook: the ledger;
- a child process (``--agents-child``) driving ``--agents`` ``heartbeat.Publisher`` agents
  (interval 1s; every third has grace 2s) that stop and resume at random, plus junk
  publishers on ``heartbeat.soak.junk.*``: garbage bytes, oversized payloads (garbage up to
  500 KB, valid beats with a 20-200 KB description and a 1h interval), deep nesting, wrong
  types, and valid payloads naming an agent's subject published on another subject;
- the ledger: an aiohttp webhook receiver that records every POST (event, subject, alert_id,
  notification_id, last_seen, arrival, the status it answered; a group body
  ``{"event":"group","notifications":[...]}`` counts each member) and answers 500 (5%) or
  429 with ``Retry-After: 1`` (5%);
- faults, one every 3-8 s: kill -9, SIGTERM or SIGSTOP (then SIGCONT) of a monitor (never
  more than two down at once; restarted after 1-5 s), kill -9 or SIGTERM of a NATS node (one
  at a time, 40 s at least between one's restart and the next; restarted on the same ports
  and store after 2-8 s).

The ledger of truth is what the agents child writes: every publish attempt of every agent
(start time, and its acknowledgement time or none), every pause it chose, every junk
message; plus the faults (kind, target, when, when restored, whether the target led) and a
poller that asks every replica for ``/readyz`` and ``GET /`` (``leader``) every 0.25 s.

After ``--minutes`` the faults stop (everything restored), all agents resume, and the run
waits for quiet (every alert resolved, no replica showing an alert, no POST for 3 s).

Rules (what the monitor promises, docs/architecture.md), with w = the agent's window and
t = the tolerance:

- Times: a beat's server timestamp lies between its publish start and its acknowledgement
  (one clock, loopback).  A gap runs from an acknowledged beat A to the next acknowledged
  beat B; its length is at least ``start_B - ack_A`` and at most ``ack_B - start_A``.
- A gap is a **required alert** when: no unacknowledged attempt lies inside it (such a
  beat may have landed: the gap is uncertain), ``start_B - ack_A >= w + t + 1s``, and at
  some poll sample p with ``max(ack_A, ready_since) + w + t + 1s <= p <= start_B - 0.3s``
  exactly one replica reported leading and ready (ready continuously since ``ready_since``:
  after a blind period a replica measures a full window from when it sees again), and no
  NATS node was down or restarted within the 10 s before p (stream leaders are re-elected
  then, commits wait).  Other long stops (overlapping a period with no seeing leader) may
  alert, late, or not at all: not required.
- Every required alert must be delivered (answered 2xx); every delivered alert must get
  exactly one delivered ``resolved`` with the same ``alert_id`` once the agent resumes.
- An alert's ``last_seen`` names the beat it was missing after (the latest attempt started
  at or before it).  It is **false** when the next acknowledged beat was acknowledged
  within w of ``last_seen`` (the subject was beating by the wire rule), or when its subject
  is not an agent's; **early** (reported, not failed) when within ``w + t - 0.25 s``.
- **Duplicates**: the same ``notification_id`` accepted twice is the documented
  at-least-once kind (explained when a monitor or NATS fault fell within 3 s before the
  second arrival); two distinct alert ids for one gap, or two distinct resolved ids for
  one alert, is a bug.
- **Late**: delivered more than 2 s after ``last_seen + w + t``; the cause given is the
  faults overlapping ``[deadline - 1s, arrival]``, else refusals by the receiver, else none.

Exit status: 1 when an invariant fails (a required alert or a resolved never told, a false
alert, a distinct-id duplicate), 2 when the run itself broke, 0 otherwise.  A table is
printed and every figure, with details, written to ``--out`` (JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import nats
import nats.errors
import nats.js.errors
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.harness import (  # noqa: E402
    MonitorProcess,
    NatsCluster,
    cli_env,
    eventually,
    free_port,
    start_cluster,
    stop_process,
)

PREFIX = "heartbeat.soak."
STREAM = "HEARTBEATS"
BUCKET = "HEARTBEAT_STATE"
TOLERANCE_S = 1.0
LEASE_TTL = "3s"
POLL = "200ms"
MARGIN_REQ_S = 1.0  # past w + t before an alert is required
MARGIN_END_S = 0.3  # a sample must come this long before the agent resumed
NATS_SETTLE_S = 10.0  # after a node is killed, commits may wait this long (stream leaders move)
NATS_REJOIN_S = 5.0  # after it is restarted (it catches up, leaders may move again)
NATS_COOLDOWN_S = 40.0  # between a NATS node's restart and the next NATS fault
LATE_S = 2.0
EARLY_SLACK_S = 0.25
DUP_EXPLAIN_S = 3.0
POLL_EVERY_S = 0.25
ERROR_RATE = 0.05
TOO_MANY_RATE = 0.05


def agent_subject(i: int) -> str:
    return f"{PREFIX}a{i:02d}"


def agent_window(i: int) -> float:
    return 2.0 if i % 3 == 0 else 1.0


# ----- the agents child -------------------------------------------------------------------------


async def agents_child(cfg: dict[str, Any]) -> None:  # noqa: C901 (one closure per job)
    """Beat, pause and resume ``cfg["agents"]`` agents; publish junk; write the ledger."""
    import heartbeat
    from heartbeat.schema import encode

    rng = random.Random(cfg["seed"])
    urls: list[str] = cfg["urls"]
    out = open(cfg["out"], "a", buffering=1)  # noqa: ASYNC230, SIM115 (lives with the process)
    loop = asyncio.get_running_loop()
    end, stop = asyncio.Event(), asyncio.Event()

    def read_stdin() -> None:
        for line in sys.stdin:
            loop.call_soon_threadsafe((end if line.strip() == "end" else stop).set)
        loop.call_soon_threadsafe(stop.set)

    threading.Thread(target=read_stdin, daemon=True).start()
    loop.add_signal_handler(signal.SIGTERM, stop.set)

    def write(doc: dict[str, Any]) -> None:
        out.write(json.dumps(doc, separators=(",", ":")) + "\n")

    conns = []
    for k in range(3):
        conns.append(
            await nats.connect(
                servers=urls[k:] + urls[:k],
                dont_randomize=True,
                max_reconnect_attempts=-1,
                reconnect_time_wait=0.2,
                connect_timeout=2,
                ping_interval=2,
                max_outstanding_pings=2,
                error_cb=quiet_error,
            )
        )
    pubs = [heartbeat.Publisher(nc, ack=True, timeout_s=1.0) for nc in conns]

    async def agent(i: int, r: random.Random) -> None:
        w = agent_window(i)
        msg = heartbeat.Message(
            subject=agent_subject(i),
            interval=timedelta(seconds=1),
            grace_period=timedelta(seconds=2) if w == 2.0 else None,
            description=f"soak agent {i}",
            host="soak",
        )
        pub = pubs[i % 3]
        next_pause = time.time() + r.uniform(2, 15)
        while not stop.is_set():
            start = time.time()
            ack: float | None = None
            err = ""
            try:
                await pub.publish(msg)
                ack = time.time()
            except Exception as e:  # the ledger records every failure, whatever its kind
                err = type(e).__name__
            write({"a": i, "s": start, "k": ack, **({"e": err} if err else {})})
            if not end.is_set() and time.time() >= next_pause:
                short = r.random() < 0.35
                t = TOLERANCE_S
                pause = (
                    r.uniform(w + 0.05, w + t - 0.4) if short else r.uniform(w + t + 2, w + t + 9)
                )
                write({"a": i, "pause": pause, "at": time.time(), "short": short})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(end.wait(), pause)
                next_pause = time.time() + r.uniform(3, 15)
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, start + 1.0 - time.time()))

    async def junk(r: random.Random) -> None:
        nc = conns[0]
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), r.uniform(0.2, 0.8))
            kind = r.choice(["garbage", "oversized", "big_valid", "nested", "wrong_type",
                             "wrong_subject"])  # fmt: skip
            n = r.randrange(3)
            subject = f"{PREFIX}junk.{kind}{n}"
            if kind == "garbage":
                data = r.randbytes(r.randrange(1, 300))
            elif kind == "oversized":
                data = r.randbytes(r.randrange(50_000, 500_000))
            elif kind == "big_valid":
                data = encode(
                    heartbeat.Message(
                        subject=subject,
                        interval=timedelta(hours=1),
                        generated_at=datetime.now(UTC),
                        description="x" * r.randrange(20_000, 200_000),
                        host="junk",
                    )
                )
            elif kind == "nested":
                depth = r.randrange(100, 5000)
                data = b'{"subject":' + b"[" * depth + b"]" * depth + b"}"
            elif kind == "wrong_type":
                data = json.dumps(
                    {"subject": subject, "interval": r.choice([-5, "1x", None, 1e300]),
                     "generated_at": r.choice(["yesterday", 12, ""])}
                ).encode()  # fmt: skip
            else:
                data = encode(
                    heartbeat.Message(
                        subject=agent_subject(r.randrange(cfg["agents"])),
                        interval=timedelta(seconds=1),
                        generated_at=datetime.now(UTC),
                        host="junk",
                    )
                )
            try:
                await nc.publish(subject, data)
                write({"j": kind, "at": time.time(), "n": len(data)})
            except Exception as e:
                write({"j": kind, "at": time.time(), "e": type(e).__name__})

    tasks = [
        asyncio.create_task(agent(i, random.Random(rng.random()))) for i in range(cfg["agents"])
    ]
    tasks.append(asyncio.create_task(junk(random.Random(rng.random()))))
    await stop.wait()
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    for nc in conns:
        with contextlib.suppress(Exception):
            await nc.close()
    out.close()


# ----- the ledger: a webhook receiver --------------------------------------------------------


@dataclass
class Post:
    at: float
    status: int
    event: str
    subject: str
    alert_id: str
    nid: str
    last_seen: str | None
    monitor: str
    missed_for: str = ""  # at the decision: now - last_seen (Go duration)
    group: str = ""  # the group's notification_id, for members of a group


@dataclass
class Ledger:
    rng: random.Random
    posts: list[Post] = field(default_factory=list)
    bad_bodies: list[str] = field(default_factory=list)
    answered: Counter[int] = field(default_factory=Counter)
    last_post: float = 0.0

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        at = time.time()
        self.last_post = at
        roll = self.rng.random()
        status = 500 if roll < ERROR_RATE else 429 if roll < ERROR_RATE + TOO_MANY_RATE else 200
        self.answered[status] += 1
        try:
            doc = json.loads(body)
            members = doc["notifications"] if doc.get("event") == "group" else [doc]
            group = doc["notification_id"] if doc.get("event") == "group" else ""
            for m in members:
                self.posts.append(
                    Post(at, status, m["event"], m.get("subject", ""), m.get("alert_id", ""),
                         m["notification_id"], m.get("last_seen"), m.get("monitor", ""),
                         m.get("missed_for", ""), group)
                )  # fmt: skip
        except (ValueError, KeyError, TypeError) as e:
            self.bad_bodies.append(f"{e!r}: {body[:200]!r}")
        if status == 429:
            return web.Response(status=429, text="slow down", headers={"Retry-After": "1"})
        return web.Response(status=status, text="{}" if status == 200 else "nope")

    def accepted(self) -> list[Post]:
        return [p for p in self.posts if p.status < 300]


# ----- monitors, faults, poller ------------------------------------------------------------


@dataclass
class Slot:
    index: int
    port: int = 0
    gen: int = 0
    proc: MonitorProcess | None = None
    replica_id: str = ""
    faulted: bool = False  # a fault of ours holds it down or stopped
    ready_since: float | None = None
    leader: bool = False
    unexpected_exits: list[str] = field(default_factory=list)


@dataclass
class Fault:
    kind: str
    target: str
    at: float
    restored: float | None = None
    was_leader: bool | None = None


@dataclass
class Sample:
    at: float
    leaders: int  # replicas answering leader=true
    leader_ready_since: float | None  # the sole ready leader's ready_since, if exactly one


class Soak:
    def __init__(self, args: argparse.Namespace, work: Path) -> None:
        self.args = args
        self.work = work
        self.rng = random.Random(args.seed)
        self.ledger = Ledger(random.Random(self.rng.random()))
        self.slots = [Slot(i) for i in range(3)]
        self.faults: list[Fault] = []
        self.samples: list[Sample] = []
        self.cluster: NatsCluster | None = None
        self.nats_down: str | None = None
        self.nats_next = 0.0  # no NATS fault before this time
        self.hook_url = ""
        self.agents_proc: subprocess.Popen[bytes] | None = None
        self.truth_path = work / "truth.jsonl"
        self.session: aiohttp.ClientSession | None = None
        self.monitoring = True
        self.phase_times: dict[str, float] = {}

    # -- monitors --

    def monitor_args(self, slot: Slot) -> list[str]:
        assert self.cluster is not None
        urls = [n.url for n in self.cluster.nodes]
        k = slot.index
        return [
            "--nats-url", ",".join(urls[k:] + urls[:k]),
            "--replicas", "3",
            "--status-addr", f"127.0.0.1:{slot.port}",
            "--replica-id", slot.replica_id,
            "--lease-ttl", LEASE_TTL,
            "--poll", POLL,
            "--tolerance", f"{TOLERANCE_S:g}s",
            "--repeat-every", "0s",
            "--blind-after", "2s",
            "--webhook-url", self.hook_url,
        ]  # fmt: skip

    def spawn(self, slot: Slot) -> None:
        slot.gen += 1
        slot.port = free_port()
        slot.replica_id = f"m{slot.index}.{slot.gen}"
        slot.ready_since, slot.leader = None, False
        slot.proc = MonitorProcess(
            self.monitor_args(slot), self.work / f"monitor-{slot.index}.log", env=cli_env()
        )
        with slot.proc.log.open("a") as f:
            f.write(f"===== {time.strftime('%H:%M:%S')} start {slot.replica_id} =====\n")
        slot.proc.start()

    # -- poller --

    async def poll_one(self, slot: Slot) -> tuple[bool, bool]:
        assert self.session is not None
        if slot.proc is None or not slot.proc.running:
            return False, False
        base = f"http://127.0.0.1:{slot.port}"
        timeout = aiohttp.ClientTimeout(total=0.4)
        try:
            async with self.session.get(base + "/readyz", timeout=timeout) as r:
                ready = r.status == 200
            async with self.session.get(base + "/", timeout=timeout) as r:
                leader = r.status == 200 and bool((await r.json()).get("leader"))
        except (aiohttp.ClientError, TimeoutError, ValueError):
            return False, False
        return ready, leader

    async def poller(self) -> None:
        while self.monitoring:
            started = time.time()
            got = await asyncio.gather(*(self.poll_one(s) for s in self.slots))
            now = time.time()
            for s, (ready, leader) in zip(self.slots, got, strict=True):
                if ready and s.ready_since is None:
                    s.ready_since = started
                elif not ready:
                    s.ready_since = None
                s.leader = leader
                if s.proc is not None and not s.faulted and s.proc.proc is not None:
                    code = s.proc.proc.poll()
                    if code is not None:  # died without a fault of ours: say so, restart
                        s.unexpected_exits.append(f"{s.replica_id} exit {code} at {now:.1f}")
                        self.spawn(s)
            leading = [s for s in self.slots if s.leader]
            sole = leading[0] if len(leading) == 1 and leading[0].ready_since else None
            self.samples.append(Sample(now, len(leading), sole.ready_since if sole else None))
            await asyncio.sleep(max(0.0, started + POLL_EVERY_S - time.time()))

    # -- faults --

    async def monitor_fault(self, kind: str) -> None:
        up = [s for s in self.slots if not s.faulted and s.proc is not None and s.proc.running]
        if len(up) < 2:
            return
        leaders = [s for s in up if s.leader]
        slot = leaders[0] if leaders and self.rng.random() < 0.5 else self.rng.choice(up)
        assert slot.proc is not None and slot.proc.proc is not None
        fault = Fault(kind, slot.replica_id, time.time(), was_leader=slot.leader)
        self.faults.append(fault)
        slot.faulted = True
        hold = self.rng.uniform(1, 5)
        try:
            if kind == "monitor_sigstop":
                slot.proc.send_signal(signal.SIGSTOP)
                await asyncio.sleep(hold)
                slot.proc.send_signal(signal.SIGCONT)
            else:
                sig = signal.SIGKILL if kind == "monitor_kill9" else signal.SIGTERM
                popen = slot.proc.proc
                popen.send_signal(sig)
                await eventually(lambda: popen.poll() is not None, 15, "monitor exit", 0.05)
                await asyncio.sleep(hold)
                self.spawn(slot)
        finally:
            slot.faulted = False
            fault.restored = time.time()

    async def nats_fault(self, kind: str) -> None:
        assert self.cluster is not None
        if self.nats_down is not None or time.time() < self.nats_next:
            return
        node = self.rng.choice(self.cluster.nodes)
        self.nats_down = node.name
        fault = Fault(kind, node.name, time.time())
        self.faults.append(fault)
        try:
            await asyncio.to_thread(node.stop, kind == "nats_kill9")
            await asyncio.sleep(self.rng.uniform(2, 8))
            await asyncio.to_thread(node.start, 30.0)
        finally:
            self.nats_down = None
            fault.restored = time.time()
            self.nats_next = fault.restored + NATS_COOLDOWN_S

    async def chaos(self, until: float) -> None:
        kinds = ["monitor_kill9", "monitor_sigterm", "monitor_sigstop", "nats_kill9",
                 "nats_sigterm"]  # fmt: skip
        weights = [3, 2, 2, 2, 1]
        running: set[asyncio.Task[None]] = set()
        while time.time() < until:
            await asyncio.sleep(self.rng.uniform(3, 8))
            if time.time() >= until:
                break
            kind = self.rng.choices(kinds, weights)[0]
            coro = self.monitor_fault(kind) if kind.startswith("monitor") else self.nats_fault(kind)
            task = asyncio.create_task(coro)
            running.add(task)
            task.add_done_callback(running.discard)
        if running:
            await asyncio.gather(*running)

    # -- the run --

    async def wait_jetstream(self) -> None:
        assert self.cluster is not None
        nc = await nats.connect(
            servers=[n.url for n in self.cluster.nodes],
            error_cb=quiet_error,
            max_reconnect_attempts=-1,
        )
        try:

            async def answers() -> bool:
                try:
                    await nc.jetstream(timeout=1).account_info()
                except (nats.errors.Error, TimeoutError):
                    return False
                return True

            await eventually(answers, 30, "JetStream in the cluster", every=0.2)

            async def stream_exists() -> bool:
                try:
                    await nc.jetstream(timeout=1).stream_info(STREAM)
                except (nats.errors.Error, TimeoutError):
                    return False
                return True

            self.stream_check = stream_exists
        except BaseException:
            await nc.close()
            raise
        self._nc = nc

    def all_ready(self) -> bool:
        return all(s.ready_since is not None for s in self.slots) and any(
            s.leader for s in self.slots
        )

    async def quiet(self) -> bool:
        acc = self.ledger.accepted()
        alerted = {p.alert_id for p in acc if p.event == "alert"}
        resolved = {p.alert_id for p in acc if p.event == "resolved"}
        if not alerted <= resolved or time.time() - self.ledger.last_post < 3:
            return False
        return self.all_ready()

    async def run(self) -> dict[str, Any]:
        t0 = time.time()
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.ledger.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        hook_port = free_port()
        await web.TCPSite(runner, "127.0.0.1", hook_port).start()
        self.hook_url = f"http://127.0.0.1:{hook_port}/hook"
        self.session = aiohttp.ClientSession()
        poller: asyncio.Task[None] | None = None
        try:
            self.cluster = await asyncio.to_thread(start_cluster, self.work / "nats", 3, "soak")
            await self.wait_jetstream()
            for s in self.slots:
                self.spawn(s)
            poller = asyncio.create_task(self.poller())
            await eventually(self.stream_check, 30, "the monitors to create the stream", 0.1)
            await eventually(self.all_ready, 30, "three ready replicas and a leader", 0.1)
            self.phase_times["setup_s"] = time.time() - t0
            self.start_agents()
            await eventually(self.agents_beating, 20, "every agent's first beat", 0.1)
            chaos_start = time.time()
            await self.chaos(chaos_start + self.args.minutes * 60)
            for s in self.slots:  # belt and braces: nothing left stopped
                if s.proc is not None and s.proc.running:
                    s.proc.send_signal(signal.SIGCONT)
            self.phase_times["chaos_s"] = time.time() - chaos_start
            end_at = time.time()
            assert self.agents_proc is not None and self.agents_proc.stdin is not None
            self.agents_proc.stdin.write(b"end\n")
            self.agents_proc.stdin.flush()
            try:
                await eventually(self.quiet, self.args.quiet_timeout, "quiet", 0.2)
                quiet_ok = True
            except TimeoutError:
                quiet_ok = False
            self.phase_times["quiet_wait_s"] = time.time() - end_at
            self.monitoring = False
            await poller
            poller = None
        finally:
            self.monitoring = False
            if poller is not None:
                poller.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await poller
            for s in self.slots:
                if s.proc is not None and s.proc.proc is not None:
                    await asyncio.to_thread(s.proc.stop, signal.SIGTERM, 10.0)
            if self.agents_proc is not None:
                await asyncio.to_thread(stop_process, self.agents_proc, signal.SIGTERM)
            if getattr(self, "_nc", None) is not None:
                with contextlib.suppress(Exception):
                    await self._nc.close()
            if self.cluster is not None:
                await asyncio.to_thread(self.cluster.stop)
            await self.session.close()
            await runner.cleanup()
        return self.analyse(end_at, quiet_ok)

    def start_agents(self) -> None:
        assert self.cluster is not None
        cfg = {
            "urls": [n.url for n in self.cluster.nodes],
            "agents": self.args.agents,
            "seed": self.rng.random(),
            "out": str(self.truth_path),
        }
        self.agents_proc = subprocess.Popen(
            [sys.executable, __file__, "--agents-child", json.dumps(cfg)],
            stdin=subprocess.PIPE,
            stdout=(self.work / "agents.log").open("ab"),
            stderr=subprocess.STDOUT,
            env=cli_env(),
        )

    def agents_beating(self) -> bool:
        if not self.truth_path.exists():
            return False
        seen = set()
        for line in self.truth_path.read_text().splitlines():
            doc = json.loads(line)
            if "a" in doc and doc.get("k"):
                seen.add(doc["a"])
        return len(seen) == self.args.agents

    # ----- the checks ------------------------------------------------------------------------

    def analyse(self, end_at: float, quiet_ok: bool) -> dict[str, Any]:  # noqa: C901 (one pass per rule)
        attempts: dict[int, list[tuple[float, float | None]]] = defaultdict(list)
        pauses: list[dict[str, Any]] = []
        junk: Counter[str] = Counter()
        for line in self.truth_path.read_text().splitlines():
            doc = json.loads(line)
            if "j" in doc:
                junk[doc["j"]] += 1
            elif "pause" in doc:
                pauses.append(doc)
            else:
                attempts[doc["a"]].append((doc["s"], doc["k"]))
        for a in attempts.values():
            a.sort()
        nats_marks: list[tuple[float, float]] = []  # (from, to): commits may wait
        for f in self.faults:
            if f.kind.startswith("nats"):
                nats_marks.append((f.at, f.at + NATS_SETTLE_S))
                if f.restored is not None:
                    nats_marks.append((f.restored, f.restored + NATS_REJOIN_S))

        def nats_disturbed(t: float) -> bool:
            return any(a <= t <= b for a, b in nats_marks)

        sample_times = [s.at for s in self.samples]

        def seeing_leader_between(a: float, lo: float, hi: float, need: float) -> bool:
            i = bisect.bisect_left(sample_times, lo)
            while i < len(self.samples) and self.samples[i].at <= hi:
                s = self.samples[i]
                if (
                    s.leaders == 1
                    and s.leader_ready_since is not None
                    and max(a, s.leader_ready_since) + need <= s.at
                    and not nats_disturbed(s.at)
                ):
                    return True
                i += 1
            return False

        def faults_over(lo: float, hi: float) -> list[str]:
            out = []
            for f in self.faults:
                f_end = (f.restored or hi) + (NATS_SETTLE_S if f.kind.startswith("nats") else 3.0)
                if f.at <= hi and f_end >= lo:
                    out.append(f"{f.kind}:{f.target}" + (" (leader)" if f.was_leader else ""))
            return out

        # Gaps between acknowledged beats.
        required: dict[tuple[int, int], dict[str, Any]] = {}
        optional_long = 0
        uncertain = 0
        for i, att in attempts.items():
            w = agent_window(i)
            acked = [j for j, (_, k) in enumerate(att) if k is not None]
            for ja, jb in itertools.pairwise(acked):
                a_ack, b_start = att[ja][1], att[jb][0]
                assert a_ack is not None
                lower = b_start - a_ack
                if lower < w + TOLERANCE_S + MARGIN_REQ_S:
                    continue
                if jb != ja + 1:
                    uncertain += 1
                    continue
                need = w + TOLERANCE_S + MARGIN_REQ_S
                if seeing_leader_between(a_ack, a_ack + need, b_start - MARGIN_END_S, need):
                    required[(i, ja)] = {"agent": i, "from": a_ack, "to": b_start, "gap": lower}
                else:
                    optional_long += 1

        acc = self.ledger.accepted()
        subjects = {agent_subject(i): i for i in range(self.args.agents)}
        by_nid: dict[str, list[Post]] = defaultdict(list)
        first_try: dict[str, Post] = {}
        for p in self.ledger.posts:
            first_try.setdefault(p.nid, p)
        for p in acc:
            by_nid[p.nid].append(p)
        alerts = {nid: ps[0] for nid, ps in by_nid.items() if ps[0].event == "alert"}
        resolveds = {nid: ps[0] for nid, ps in by_nid.items() if ps[0].event == "resolved"}
        notices = Counter(ps[0].event for ps in by_nid.values() if ps[0].subject == "")

        false_alerts: list[dict[str, Any]] = []
        early: list[dict[str, Any]] = []
        late: list[dict[str, Any]] = []
        gap_alerts: dict[tuple[int, int], set[str]] = defaultdict(set)
        lateness: list[float] = []
        decided: list[float] = []  # decision time past the deadline, from missed_for
        told: list[tuple[str, float, str, bool]] = []
        for nid, p in alerts.items():
            i = subjects.get(p.subject)
            if i is None:
                false_alerts.append({"nid": nid, "subject": p.subject, "why": "not an agent"})
                continue
            ls = parse_time(p.last_seen)
            att = attempts[i]
            starts = [s for s, _ in att]
            j = bisect.bisect_right(starts, ls + 0.002) - 1
            nxt = next((k for _, k in att[j + 1 :] if k is not None), None) if j >= 0 else None
            w = agent_window(i)
            if j < 0:
                false_alerts.append({"nid": nid, "subject": p.subject, "why": "before any beat"})
                continue
            gap_alerts[(i, j)].add(p.alert_id)
            if j >= 0 and att[j][1] is None:  # the beat it names was an unacknowledged one
                ja = max((k for k in range(j) if att[k][1] is not None), default=j)
                gap_alerts[(i, ja)].add(p.alert_id)
            upper = (nxt - ls) if nxt is not None else float("inf")
            info = {"nid": nid, "subject": p.subject, "last_seen": ls, "next_ack_after_s": upper,
                    "window": w, "arrived": p.at, "monitor": p.monitor}  # fmt: skip
            if upper <= w:
                false_alerts.append({**info, "why": "beating within its window"})
            elif upper < w + TOLERANCE_S - EARLY_SLACK_S:
                early.append(info)
            deadline = ls + w + TOLERANCE_S
            lateness.append(p.at - deadline)
            if p.missed_for:
                decided.append(parse_duration_ns(p.missed_for) / 1e9 - w - TOLERANCE_S)
            told.append((p.subject, round(p.at - deadline, 3), p.monitor, bool(p.group)))
            if p.at - deadline > LATE_S:
                cause = faults_over(deadline - 1, p.at)
                refused = sum(1 for q in self.ledger.posts if q.nid == nid and q.status >= 300)
                if not cause and refused:
                    cause = [f"receiver refused {refused}x"]
                late.append({**info, "late_s": p.at - deadline, "cause": cause or ["none"]})

        missing_alerts = []
        for key, g in required.items():
            if not gap_alerts.get(key):
                i = g["agent"]
                missing_alerts.append(
                    {**g, "subject": agent_subject(i),
                     "faults": faults_over(g["from"], g["to"])}
                )  # fmt: skip
        distinct_dups = [
            {"agent": k[0], "alert_ids": sorted(v)} for k, v in gap_alerts.items() if len(v) > 1
        ]
        resolved_by_alert: dict[str, set[str]] = defaultdict(set)
        for nid, p in resolveds.items():
            resolved_by_alert[p.alert_id].add(nid)
        alert_ids = {p.alert_id: p for p in alerts.values()}
        missing_resolved = [
            {"alert_id": a, "subject": p.subject} for a, p in alert_ids.items()
            if not resolved_by_alert.get(a)
        ]  # fmt: skip
        distinct_dups += [
            {"alert_id": a, "resolved_ids": sorted(v)}
            for a, v in resolved_by_alert.items()
            if len(v) > 1
        ]
        orphan_resolved = [a for a in resolved_by_alert if a not in alert_ids]
        same_id_dups = []
        for nid, ps in by_nid.items():
            if len(ps) > 1:
                cause = faults_over(ps[0].at - DUP_EXPLAIN_S, ps[-1].at)
                same_id_dups.append({"nid": nid, "event": ps[0].event, "times": [q.at for q in ps],
                                     "explained_by": cause})  # fmt: skip
        fault_counts = Counter(f.kind for f in self.faults)
        exits = [e for s in self.slots for e in s.unexpected_exits]
        refused = sum(1 for p in self.ledger.posts if p.status >= 300)
        sorted_late = sorted(lateness)

        def pct(q: float, xs: list[float] = sorted_late) -> float | None:
            if not xs:
                return None
            return xs[min(len(xs) - 1, int(q * len(xs)))]

        decided.sort()

        required_told = sum(1 for k in required if gap_alerts.get(k))
        told_resolved = sum(1 for a in alert_ids if resolved_by_alert.get(a))
        figures: dict[str, Any] = {
            "agents": self.args.agents,
            "beats_acked": sum(1 for a in attempts.values() for _, k in a if k is not None),
            "beats_failed": sum(1 for a in attempts.values() for _, k in a if k is None),
            "pauses_short": sum(1 for p in pauses if p["short"]),
            "pauses_long": sum(1 for p in pauses if not p["short"]),
            "required_alerts": len(required),
            "required_alerts_told": required_told,
            "long_gaps_not_required": optional_long,
            "long_gaps_uncertain": uncertain,
            "alerts_delivered": len(alert_ids),
            "resolved_expected": len(alert_ids),
            "resolved_delivered": told_resolved,
            "transitions_expected": len(required) + len(alert_ids),
            "transitions_delivered": len(alert_ids) + told_resolved,
            "missing_alerts": len(missing_alerts),
            "missing_resolved": len(missing_resolved),
            "missing": len(missing_alerts) + len(missing_resolved),
            "false_alerts": len(false_alerts),
            "early_alerts": len(early),
            "late_alerts": len(late),
            "late_unexplained": sum(1 for x in late if x["cause"] == ["none"]),
            "alert_lateness_p50_s": pct(0.5),
            "alert_lateness_p99_s": pct(0.99),
            "alert_lateness_max_s": sorted_late[-1] if sorted_late else None,
            "decision_lateness_p50_s": pct(0.5, decided),
            "decision_lateness_max_s": decided[-1] if decided else None,
            "duplicates_same_id": len(same_id_dups),
            "duplicates_same_id_unexplained": sum(1 for d in same_id_dups if not d["explained_by"]),
            "duplicates_distinct_id": len(distinct_dups),
            "orphan_resolved": len(orphan_resolved),
            "posts": len({(p.at, p.nid) for p in self.ledger.posts}),
            "posts_refused": refused,
            "groups": len({p.group for p in self.ledger.posts if p.group}),
            "notices": dict(notices),
            "bad_bodies": len(self.ledger.bad_bodies),
            "faults": dict(fault_counts),
            "faults_total": len(self.faults),
            "faults_on_leader": sum(1 for f in self.faults if f.was_leader),
            "poll_samples": len(self.samples),
            "samples_no_seeing_leader": sum(
                1 for s in self.samples if s.leader_ready_since is None
            ),
            "samples_two_leaders": sum(1 for s in self.samples if s.leaders > 1),
            "junk_messages": dict(junk),
            "monitor_unexpected_exits": len(exits),
            "quiet_reached": quiet_ok,
            **{k: round(v, 1) for k, v in self.phase_times.items()},
        }
        failures = []
        if missing_alerts:
            failures.append(f"{len(missing_alerts)} required alert(s) never told")
        if missing_resolved:
            failures.append(f"{len(missing_resolved)} alert(s) never resolved")
        if false_alerts:
            failures.append(f"{len(false_alerts)} false alert(s)")
        if distinct_dups:
            failures.append(f"{len(distinct_dups)} distinct-id duplicate(s)")
        return {
            "seed": self.args.seed,
            "minutes": self.args.minutes,
            "passed": not failures,
            "failures": failures,
            "figures": figures,
            "details": {
                "missing_alerts": missing_alerts,
                "missing_resolved": missing_resolved,
                "false_alerts": false_alerts,
                "early_alerts": early,
                "late_alerts": late,
                "alerts_told": told,
                "duplicates_same_id": same_id_dups,
                "duplicates_distinct_id": distinct_dups,
                "orphan_resolved": orphan_resolved,
                "monitor_unexpected_exits": exits,
                "bad_bodies": self.ledger.bad_bodies[:20],
                "faults": [asdict(f) for f in self.faults],
            },
            "work_dir": str(self.work),
        }


async def quiet_error(e: Exception) -> None:
    """nats-py's error callback: node kills are the point here, not news."""


def parse_time(text: str | None) -> float:
    if not text:
        return 0.0
    from heartbeat.schema import parse_time as parse

    return parse(text).timestamp()


def parse_duration_ns(text: str) -> int:
    from heartbeat.durations import parse_duration_ns as parse

    return parse(text)


def table(doc: dict[str, Any]) -> str:
    rows = [(k, v) for k, v in doc["figures"].items()]
    width = max(len(k) for k, _ in rows)
    lines = [f"{'figure':<{width}}  value", f"{'-' * width}  -----"]
    for k, v in rows:
        if isinstance(v, float):
            v = f"{v:.2f}"
        elif isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in sorted(v.items())) or "-"
        lines.append(f"{k:<{width}}  {v}")
    lines.append("")
    lines.append("PASS" if doc["passed"] else "FAIL: " + "; ".join(doc["failures"]))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--minutes", type=float, default=10.0, help="minutes of chaos (default 10)")
    p.add_argument("--seed", type=int, default=None, help="random seed (printed; to replay)")
    p.add_argument("--agents", type=int, default=30, help="heartbeat agents (default 30)")
    p.add_argument("--out", default="soak-results.json", help="JSON results file")
    p.add_argument("--work-dir", default="", help="keep logs here (default: a temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the temp dir even when passing")
    p.add_argument("--quiet-timeout", type=float, default=60.0, help="seconds to wait for quiet")
    p.add_argument("--agents-child", default="", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.agents_child:
        asyncio.run(agents_child(json.loads(args.agents_child)))
        return 0
    if args.seed is None:
        args.seed = random.randrange(1 << 30)
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="soak-"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"soak: seed {args.seed}, {args.minutes:g} min, {args.agents} agents, logs in {work}",
          flush=True)  # fmt: skip
    try:
        doc = asyncio.run(Soak(args, work).run())
    except Exception as e:
        print(f"soak: the run broke: {type(e).__name__}: {e} (logs in {work})", file=sys.stderr)
        return 2
    Path(args.out).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(table(doc))
    print(f"results in {os.path.abspath(args.out)}")
    if doc["passed"] and not args.keep and not args.work_dir:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"logs in {work}")
    return 0 if doc["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
