"""High availability as processes: replicated monitors under leader kills, stops and outages.

Real nats-server(s), real ``nats-heartbeat monitor`` subprocesses and a recording webhook
(``Idempotency-Key`` = notification id).  Every test prints what it measured; run with
``-s`` to see the figures.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import os
import random
import signal
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import nats
import nats.js.errors
import pytest
from nats.aio.client import Client as NATS

import heartbeat
from heartbeat.aio import wait_event
from heartbeat.connection import close_connection
from tests.harness import (
    MonitorProcess,
    NatsCluster,
    NatsServer,
    Receiver,
    eventually,
    free_port,
    names,
    notification_bodies,
    publish_when_ready,
)

MS = timedelta(milliseconds=1)
TTL_S = 1.0  # --lease-ttl on a single server
REPEAT_S = 1.0  # --repeat-every
POLL = "100ms"


# ----- waiting ---------------------------------------------------------------------------------


async def exited(proc: MonitorProcess, timeout: float = 10.0) -> int:
    """Wait (without blocking the event loop) for the process to exit; its status."""
    assert proc.proc is not None
    popen = proc.proc
    await eventually(lambda: popen.poll() is not None, timeout, f"exit of {proc.args[-3]}")
    return popen.returncode


# ----- what the receiver saw -------------------------------------------------------------------


@dataclass(frozen=True)
class Note:
    at: float  # arrival, epoch seconds
    event: str
    subject: str
    alert_id: str
    nid: str
    monitor: str

    @property
    def count(self) -> int:
        """The notification's place in its alert: ``<alert_id>-<n>``."""
        return int(self.nid.rpartition("-")[2])


def notes(receiver: Receiver, subject: str | None = None) -> list[Note]:
    out = []
    for r in list(receiver.requests):
        if r.method != "POST":
            continue
        body = r.json()
        assert r.headers.get("Idempotency-Key") == body["notification_id"]
        for b in notification_bodies(body):  # a group's members arrive with it
            if subject is None or b["subject"] == subject:
                out.append(
                    Note(r.at, b["event"], b["subject"], b["alert_id"], b["notification_id"],
                         b["monitor"])
                )  # fmt: skip
    return out


def duplicated(ns: Iterable[Note]) -> dict[str, list[float]]:
    """Notification ids that arrived more than once, with their arrival times."""
    times: dict[str, list[float]] = defaultdict(list)
    for n in ns:
        times[n.nid].append(n.at)
    return {nid: sorted(ts) for nid, ts in times.items() if len(ts) > 1}


def assert_nothing_lost(ns: Iterable[Note]) -> None:
    """Per alert, notification ids ``<alert>-1 .. <alert>-N`` all arrived: none skipped."""
    counts: dict[str, set[int]] = defaultdict(set)
    for n in ns:
        counts[n.alert_id].add(n.count)
    for alert_id, got in counts.items():
        assert got == set(range(1, max(got) + 1)), f"alert {alert_id}: got {sorted(got)}"


def gaps(ns: list[Note]) -> list[float]:
    return [b.at - a.at for a, b in itertools.pairwise(ns)]


def fmt(xs: Iterable[float]) -> str:
    return "[" + ", ".join(f"{x:.2f}" for x in xs) + "]"


# ----- monitor replicas ------------------------------------------------------------------------


@dataclass(eq=False)
class Replica:
    slot: int
    replica_id: str
    port: int
    proc: MonitorProcess

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@dataclass(eq=False)
class Fleet:
    """Monitor replicas sharing one stream and bucket; a slot's replica can be replaced."""

    session: aiohttp.ClientSession
    logs: Path
    args: list[str]
    tag: str
    current: dict[int, Replica] = field(default_factory=dict)
    every: list[Replica] = field(default_factory=list)

    def spawn(self, slot: int) -> Replica:
        generation = sum(1 for r in self.every if r.slot == slot)
        rid = f"{self.tag}-m{slot}.{generation}"
        port = free_port()
        proc = MonitorProcess(
            [*self.args, "--replica-id", rid, "--status-addr", f"127.0.0.1:{port}"],
            self.logs / f"{self.tag}-m{slot}.log",
        )
        replica = Replica(slot, rid, port, proc)
        self.every.append(replica)
        self.current[slot] = replica
        proc.start()
        return replica

    def start(self, n: int) -> list[Replica]:
        return [self.spawn(slot) for slot in range(n)]

    @property
    def replicas(self) -> list[Replica]:
        return list(self.current.values())

    async def status(self, r: Replica, timeout: float = 0.5) -> dict[str, Any] | None:
        """The replica's status JSON, or None when it does not answer."""
        if not r.proc.running:
            return None
        try:
            async with self.session.get(
                r.url + "/", timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp:
                if resp.status != 200:
                    return None
                got: dict[str, Any] = await resp.json()
                return got
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def ready(self, r: Replica) -> bool:
        if not r.proc.running:
            return False
        try:
            async with self.session.get(
                r.url + "/readyz", timeout=aiohttp.ClientTimeout(total=0.5)
            ) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, TimeoutError):
            return False

    async def leaders(self, among: Iterable[Replica] | None = None) -> list[Replica]:
        """Replicas whose own status says they lead."""
        rs = [r for r in (among if among is not None else self.replicas) if r.proc.running]
        got = await asyncio.gather(*(self.status(r) for r in rs))
        return [r for r, s in zip(rs, got, strict=True) if s is not None and s.get("leader")]

    async def wait_leader(
        self, timeout: float, exclude: Iterable[Replica] = (), every: float = 0.02
    ) -> Replica:
        """The first replica outside ``exclude`` whose status says it leads."""
        skip = set(map(id, exclude))

        async def found() -> Replica | None:
            rs = [r for r in self.replicas if id(r) not in skip]
            leading = await self.leaders(rs)
            return leading[0] if leading else None

        leader: Replica = await eventually(found, timeout, "a leader", every)
        return leader

    async def wait_sole_leader(self, timeout: float, stable_for: float = 0.0) -> Replica:
        """Exactly one running replica leads (and keeps leading for ``stable_for`` s)."""
        deadline = time.monotonic() + timeout
        while True:
            leading = await self.leaders(self.every)
            if len(leading) == 1:
                held_until = time.monotonic() + stable_for
                while time.monotonic() < held_until and await self.leaders(self.every) == leading:
                    await asyncio.sleep(0.05)
                if time.monotonic() >= held_until:
                    return leading[0]
            if time.monotonic() > deadline:
                raise TimeoutError(f"leaders: {[r.replica_id for r in leading]}")
            await asyncio.sleep(0.05)

    async def wait_ready(self, rs: Iterable[Replica], timeout: float = 15.0) -> None:
        for r in rs:
            await eventually(lambda r=r: self.ready(r), timeout, f"{r.replica_id} ready", 0.05)

    async def terminate_all(self, grace_s: float = 5.0) -> None:
        """Teardown: SIGTERM (then SIGCONT, for a stopped one) every process still
        running, wait up to ``grace_s`` for all, kill what is left."""
        procs = [r.proc.proc for r in self.every if r.proc.proc is not None]
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                p.send_signal(signal.SIGCONT)
        deadline = time.monotonic() + grace_s
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            await asyncio.sleep(0.05)  # the receiver keeps answering meanwhile
        for p in procs:
            if p.poll() is None:
                p.kill()
            p.wait(10)


FleetFactory = Callable[..., Fleet]


@pytest.fixture
async def fleets(tmp_path: Path) -> AsyncIterator[FleetFactory]:
    """Make fleets of monitor replicas; every process is ended at teardown."""
    made: list[Fleet] = []
    async with aiohttp.ClientSession() as session:

        def make(url: str, unique: str, receiver: Receiver, **flags: str) -> Fleet:
            n = names(unique)
            opts = {
                "--nats-url": url,
                "--subject-prefix": n["prefix"],
                "--stream": n["stream"],
                "--state-bucket": n["bucket"],
                "--poll": POLL,
                "--tolerance": "200ms",
                "--repeat-every": f"{REPEAT_S:g}s",
                "--lease-ttl": f"{TTL_S:g}s",
                "--webhook-url": receiver.url,
            }
            opts.update({"--" + k.replace("_", "-"): v for k, v in flags.items()})
            args = [x for kv in opts.items() for x in kv]
            fleet = Fleet(session, tmp_path, args, tag=unique[:4])
            made.append(fleet)
            return fleet

        try:
            yield make
        finally:
            for fleet in made:
                await fleet.terminate_all()
            if made:
                print(f"(monitor logs in {tmp_path})")


# ----- heartbeats and state ------------------------------------------------------------------


async def record(nc: NATS, unique: str, subject: str) -> dict[str, Any] | None:
    kv = await nc.jetstream().key_value(names(unique)["bucket"])
    try:
        entry = await kv.get(subject, validate_keys=False)
    except nats.js.errors.KeyNotFoundError:
        return None
    got: dict[str, Any] | None = json.loads(entry.value) if entry.value else None
    return got


async def settled(nc: NATS, unique: str, subject: str) -> None:
    """Wait until the subject's record owes no delivery (so a kill now is not mid-send)."""

    async def check() -> bool:
        rec = await record(nc, unique, subject)
        return rec is not None and not rec.get("pending")

    await eventually(check, 5, f"{subject} settled")


def kinds(receiver: Receiver, subject: str, *events: str) -> list[Note]:
    return [n for n in notes(receiver, subject) if n.event in events]


# ----- 1. a killed or stopped leader ------------------------------------------------------------


def check_repeats(ns: list[Note], gap_max: float) -> tuple[float, float]:
    """One alert's notifications: each id once, none skipped, no burst, no long gap."""
    assert ns and ns[0].event == "alert", ns
    assert {n.event for n in ns[1:]} == {"repeat"}, ns
    assert not duplicated(ns), duplicated(ns)
    assert_nothing_lost(ns)
    g = gaps(ns)
    assert min(g) > 0.5, f"burst: gaps {fmt(g)}"
    assert max(g) <= gap_max, f"gap: {fmt(g)} (max allowed {gap_max:g}s)"
    return min(g), max(g)


async def alerting_fleet(
    server: NatsServer, nc: NATS, receiver: Receiver, unique: str, fleets: FleetFactory
) -> tuple[Fleet, str, Replica]:
    """Three replicas; one subject beat once and alerts, repeating every second."""
    fleet = fleets(server.url, unique, receiver)
    fleet.start(3)
    subject = names(unique)["prefix"] + "gone"
    await publish_when_ready(nc, subject)
    await fleet.wait_ready(fleet.replicas)
    await eventually(lambda: len(kinds(receiver, subject, "repeat")) >= 2, 15, "two repeats")
    leader = await fleet.wait_sole_leader(5)
    await settled(nc, unique, subject)
    # Strike just before the next repeat is due (and well after the last was recorded).
    last = notes(receiver, subject)[-1].at
    await asyncio.sleep(last + 0.85 * REPEAT_S - time.time())
    await settled(nc, unique, subject)
    return fleet, subject, leader


async def test_kill9_leader_is_replaced_within_ttl_without_duplicates_bursts_or_gaps(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str, fleets: FleetFactory
) -> None:
    fleet, subject, leader = await alerting_fleet(nats_server, nc, receiver, unique, fleets)
    before = len(notes(receiver, subject))
    started = time.monotonic()
    leader.proc.send_signal(signal.SIGKILL)
    successor = await fleet.wait_leader(TTL_S + 5, exclude=[leader])
    takeover = time.monotonic() - started
    await exited(leader.proc)
    await eventually(
        lambda: len(notes(receiver, subject)) >= before + 3, 10, "three repeats after the kill"
    )
    ns = notes(receiver, subject)
    low, high = check_repeats(ns, gap_max=REPEAT_S + TTL_S + 1)
    around = ns[before].at - ns[before - 1].at
    print(
        f"\n[failover kill -9] takeover {takeover:.3f}s (lease ttl {TTL_S:g}s, "
        f"{leader.replica_id} -> {successor.replica_id}); repeat gap across the kill "
        f"{around:.2f}s; gaps min {low:.2f}s max {high:.2f}s; duplicates 0"
    )
    assert takeover <= TTL_S + 1, takeover


async def test_sigterm_leader_hands_over_in_under_a_second(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str, fleets: FleetFactory
) -> None:
    fleet, subject, leader = await alerting_fleet(nats_server, nc, receiver, unique, fleets)
    before = len(notes(receiver, subject))
    started = time.monotonic()
    leader.proc.send_signal(signal.SIGTERM)
    successor = await fleet.wait_leader(TTL_S + 5, exclude=[leader], every=0.01)
    takeover = time.monotonic() - started
    assert await exited(leader.proc) == 0, leader.proc.text()
    await eventually(
        lambda: len(notes(receiver, subject)) >= before + 3, 10, "three repeats after SIGTERM"
    )
    ns = notes(receiver, subject)
    low, high = check_repeats(ns, gap_max=REPEAT_S + 0.5)
    print(
        f"\n[failover SIGTERM] takeover {takeover * 1000:.0f}ms "
        f"({leader.replica_id} -> {successor.replica_id}); gaps min {low:.2f}s max {high:.2f}s"
    )
    assert takeover < 1.0, takeover


async def test_sigstopped_leader_steps_back_and_nothing_is_sent_twice(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str, fleets: FleetFactory
) -> None:
    fleet, subject, leader = await alerting_fleet(nats_server, nc, receiver, unique, fleets)
    before = len(notes(receiver, subject))
    frozen_at = time.time()
    started = time.monotonic()
    leader.proc.send_signal(signal.SIGSTOP)
    try:
        successor = await fleet.wait_leader(TTL_S + 5, exclude=[leader])
        takeover = time.monotonic() - started
        await asyncio.sleep(max(0.0, started + 3 * TTL_S - time.monotonic()))  # the freeze
    finally:
        leader.proc.send_signal(signal.SIGCONT)
    resumed = time.monotonic()

    async def stepped_back() -> bool:
        s = await fleet.status(leader)
        return s is not None and s["leader"] is False and s.get("leader_id") != leader.replica_id

    await eventually(stepped_back, 5, "the old leader to step back")
    step_back = time.monotonic() - resumed
    sole = await fleet.wait_sole_leader(5, stable_for=1.0)
    assert sole is not leader
    await eventually(
        lambda: len(notes(receiver, subject)) >= before + 4, 10, "repeats after the freeze"
    )
    ns = notes(receiver, subject)
    low, high = check_repeats(ns, gap_max=REPEAT_S + TTL_S + 1)
    around = ns[before].at - ns[before - 1].at
    late = [n for n in ns if n.at > frozen_at and n.monitor == leader.replica_id]
    assert not late, f"the frozen leader decided {late}"
    print(
        f"\n[failover SIGSTOP {3 * TTL_S:g}s] successor {successor.replica_id} after "
        f"{takeover:.3f}s; old leader answered leader=false {step_back:.3f}s after SIGCONT; "
        f"sole leader {sole.replica_id}; repeat gap across the freeze {around:.2f}s; "
        f"gaps min {low:.2f}s max {high:.2f}s; duplicates 0"
    )


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["kill-9", "sigterm"])
async def test_delivery_still_pending_at_the_kill_is_completed_by_the_successor(
    nats_server: NatsServer,
    nc: NATS,
    receiver: Receiver,
    unique: str,
    fleets: FleetFactory,
    sig: int,
) -> None:
    """The channel fails while the leader dies: the successor delivers, same id, once."""
    receiver.default_status = 503
    fleet = fleets(nats_server.url, unique, receiver, repeat_every="1h")
    fleet.start(3)
    subject = names(unique)["prefix"] + "pending"
    await publish_when_ready(nc, subject)
    await fleet.wait_ready(fleet.replicas)
    await receiver.wait_for(2)  # the alert, committed, failing and being retried
    leader = await fleet.wait_sole_leader(5)
    rec = await record(nc, unique, subject)
    assert rec is not None and rec.get("pending"), rec
    nid = rec["pending"][0]["notification"]["notification_id"]
    leader.proc.send_signal(sig)
    await exited(leader.proc)
    failed = len(receiver.requests)
    receiver.default_status = 200
    started = time.monotonic()
    await fleet.wait_leader(TTL_S + 5, exclude=[leader])
    await eventually(lambda: len(receiver.requests) > failed, 10, "delivery by the successor")
    delay = time.monotonic() - started
    await settled(nc, unique, subject)
    await asyncio.sleep(1.0)  # nothing more may come
    delivered = receiver.requests[failed:]
    assert [r.headers["Idempotency-Key"] for r in delivered] == [nid], delivered
    assert {r.headers["Idempotency-Key"] for r in receiver.requests[:failed]} == {nid}
    print(
        f"\n[pending at {signal.Signals(sig).name}] {failed} failed attempt(s) by "
        f"{leader.replica_id}, then delivered once by the successor {delay:.2f}s after the "
        f"channel recovered"
    )


# ----- 2. many leader kills while subjects flap -------------------------------------------------


async def flap(
    nc: NATS, subject: str, interval: timedelta, rng: random.Random, stop: asyncio.Event,
    done: asyncio.Event,
) -> None:  # fmt: skip
    """Beat and fall silent by turns until ``stop``; then beat until ``done``."""
    await asyncio.sleep(rng.uniform(0, 1.5))  # phase
    while not stop.is_set():
        async with heartbeat.beating(nc, subject, interval=interval):
            await wait_event(stop, rng.uniform(0.8, 2.0))
        if stop.is_set():
            break
        await wait_event(stop, rng.uniform(0.8, 2.5))
    async with heartbeat.beating(nc, subject, interval=interval):
        await done.wait()


def explaining_kill(a: float, b: float, kills: list[float]) -> float | None:
    """The kill -9 that explains arrivals ``a`` then ``b`` of one id: it came while ``a``
    was in flight (sent at most ``IN_FLIGHT_S`` before, or arriving just after) and
    before ``b``."""
    for k in kills:
        if k - IN_FLIGHT_S <= a <= k + 0.2 and k <= b:
            return k
    return None


IN_FLIGHT_S = 1.0  # the receiver's delay plus the cross-off write, with room for a busy box


@pytest.mark.timeout(150)
async def test_twenty_leader_kills_while_subjects_flap(
    nats_server: NatsServer, nc: NATS, receiver: Receiver, unique: str, fleets: FleetFactory
) -> None:
    seed = int(os.environ.get("FAILOVER_SEED") or random.randrange(1 << 30))  # to replay a run
    rng = random.Random(seed)
    # Slow answers widen the window between a send and its record: a kill -9 can land there.
    receiver.delay_s = 0.15
    fleet = fleets(nats_server.url, unique, receiver, tolerance="150ms")
    fleet.start(3)
    prefix = names(unique)["prefix"]
    subjects = [f"{prefix}s{i}" for i in range(10)]
    await publish_when_ready(nc, subjects[0])  # once the monitors made the stream
    await fleet.wait_ready(fleet.replicas)
    stop, done = asyncio.Event(), asyncio.Event()
    flappers = [
        asyncio.create_task(
            flap(nc, s, (200 + 10 * i) * MS, random.Random(rng.random()), stop, done)
        )
        for i, s in enumerate(subjects)
    ]
    kills: list[float] = []  # epoch times of kill -9
    takeovers: dict[str, list[float]] = {"kill -9": [], "SIGTERM": []}
    began = time.monotonic()
    try:
        for _ in range(20):
            await asyncio.sleep(rng.uniform(0.0, 0.8))  # land at different phases
            leader = await fleet.wait_sole_leader(TTL_S + 5)
            sig = rng.choice([signal.SIGKILL, signal.SIGTERM])
            if sig == signal.SIGKILL:
                kills.append(time.time())
            started = time.monotonic()
            leader.proc.send_signal(sig)
            replacement = fleet.spawn(leader.slot)
            await fleet.wait_leader(TTL_S + 5, exclude=[leader])
            takeovers["kill -9" if sig == signal.SIGKILL else "SIGTERM"].append(
                time.monotonic() - started
            )
            code = await exited(leader.proc)
            assert code == (-signal.SIGKILL if sig == signal.SIGKILL else 0), leader.proc.text()
            await fleet.wait_ready([replacement])
        chaos = time.monotonic() - began
        stop.set()

        async def quiet() -> bool:
            ns = notes(receiver)
            alerts = {n.alert_id for n in ns}
            resolved = {n.alert_id for n in ns if n.event == "resolved"}
            if alerts != resolved or (ns and time.time() - ns[-1].at < 1.5):
                return False
            states = await asyncio.gather(*(fleet.status(r) for r in fleet.replicas))
            return all(
                s is not None and not any(x["alert_active"] for x in s["subjects"]) for s in states
            )

        await eventually(quiet, 30, "every alert resolved and quiet", every=0.1)
    finally:
        stop.set()
        done.set()
        await asyncio.gather(*flappers)

    ns = notes(receiver)
    assert {n.subject for n in ns} <= set(subjects)
    per_alert: dict[str, list[Note]] = defaultdict(list)
    for n in ns:
        per_alert[n.alert_id].append(n)
    for alert_id, its in per_alert.items():
        events = Counter(n.event for n in {n.nid: n for n in its}.values())
        assert events["alert"] == 1, (alert_id, its)
        assert events["resolved"] == 1, (alert_id, its)
    assert_nothing_lost(ns)
    dups = duplicated(ns)
    unexplained, lead = {}, []  # how long before its kill -9 each first copy arrived
    for nid, ts in dups.items():
        for a, b in itertools.pairwise(ts):
            k = explaining_kill(a, b, kills)
            if k is None:
                unexplained[nid] = ts
            else:
                lead.append(k - a)
    k9, term = takeovers["kill -9"], takeovers["SIGTERM"]
    print(
        f"\n[chaos seed={seed}] {len(k9) + len(term)} leader kills in {chaos:.1f}s: "
        f"{len(k9)} kill -9 (takeover median {statistics.median(k9 or [0]):.2f}s, "
        f"max {max(k9 or [0]):.2f}s), {len(term)} SIGTERM (median "
        f"{statistics.median(term or [0]) * 1000:.0f}ms, max {max(term or [0]) * 1000:.0f}ms); "
        f"{len(per_alert)} alerts, {len(ns)} notifications, "
        f"{sum(len(t) - 1 for t in dups.values())} duplicate arrival(s) of {len(dups)} id(s) "
        f"(receiver answers after {receiver.delay_s:g}s), each sent at most "
        f"{max(lead, default=0) * 1000:.0f}ms before a kill -9 and again after it; "
        f"unexplained: {len(unexplained)}"
    )
    assert not unexplained, f"duplicates not explained by a kill -9: {unexplained}, {kills}"
    assert per_alert, "the flapping subjects never alerted: the test tested nothing"
    assert max(k9 or [0]) <= TTL_S + 2, k9
    assert max(term or [0]) < 1.0, term


# ----- 3. NATS itself goes away -----------------------------------------------------------------


async def test_nats_outage_sends_one_blind_notice_and_no_false_alerts(
    nats_factory: Callable[..., NatsServer], receiver: Receiver, unique: str, fleets: FleetFactory
) -> None:
    window = timedelta(seconds=1)  # grace; beats every 500 ms
    server = nats_factory(port=free_port())
    fleet = fleets(server.url, unique, receiver, blind_after="1s", repeat_every="1h")
    fleet.start(2)
    agents = await heartbeat.connect(heartbeat.ConnectOptions(servers=(server.url,)))
    prefix = names(unique)["prefix"]
    steady, stops = [prefix + "a", prefix + "b"], prefix + "stops"
    try:
        await publish_when_ready(agents, stops)
        async with (
            heartbeat.beating(agents, steady[0], interval=500 * MS, grace_period=window),
            heartbeat.beating(agents, steady[1], interval=500 * MS, grace_period=window),
            contextlib.AsyncExitStack() as stopping,
        ):
            await stopping.enter_async_context(
                heartbeat.beating(agents, stops, interval=500 * MS, grace_period=window)
            )
            await fleet.wait_ready(fleet.replicas)
            leader = await fleet.wait_sole_leader(5)

            async def all_seen() -> bool:
                s = await fleet.status(leader)
                return s is not None and len(s["subjects"]) == 3

            await eventually(all_seen, 5, "three subjects")
            await asyncio.sleep(2 * window.total_seconds())  # healthy for a while
            assert notes(receiver) == []
            # The outage: twice the window, agents and monitors reconnecting on their own.
            down = time.time()
            await asyncio.to_thread(server.stop)
            await asyncio.sleep(2 * window.total_seconds())
            await asyncio.to_thread(server.start)
            up = time.time()
            await eventually(lambda: kinds(receiver, "", "sight_restored"), 20, "sight_restored")
            await fleet.wait_ready(fleet.replicas)
            # A window (+ tolerance) after sight returned, healthy subjects still do not alert.
            await asyncio.sleep(window.total_seconds() + 1.0)
            ns = notes(receiver)
            assert [n.event for n in ns] == ["blind", "sight_restored"], ns
            blind, sight = ns
            assert blind.subject == sight.subject == ""
            assert blind.monitor == sight.monitor == leader.replica_id
            # A subject that really stops after recovery still alerts.
            await stopping.aclose()
            stopped = time.time()
            alert = (await eventually(lambda: kinds(receiver, stops, "alert"), 5, "alert"))[0]
            await asyncio.sleep(1.5)
        ns = notes(receiver)
        assert [n.event for n in ns] == ["blind", "sight_restored", "alert"], ns
        print(
            f"\n[NATS outage {up - down:.2f}s, blind-after 1s] blind notice {blind.at - down:.2f}s "
            f"after the stop, sight_restored {sight.at - up:.2f}s after the restart, by "
            f"{blind.monitor}; false alerts 0; a subject stopped after recovery alerted "
            f"{alert.at - stopped:.2f}s later"
        )
    finally:
        await close_connection(agents)


# ----- 4. a cluster node dies ------------------------------------------------------------------


async def jetstream_answers(nc: NATS, stream: str, timeout: float = 30.0) -> None:
    """Wait until the cluster's JetStream answers (its meta leader is elected)."""

    async def answers() -> bool:
        try:
            await nc.jetstream(timeout=1).stream_info(stream)
        except nats.js.errors.NotFoundError:
            return True
        except (nats.errors.Error, TimeoutError):
            return False
        return True

    await eventually(answers, timeout, "JetStream in the cluster", every=0.2)


async def stream_leader(nc: NATS, stream: str) -> str | None:
    try:
        info = await nc.jetstream(timeout=0.5).stream_info(stream)
    except (nats.errors.Error, TimeoutError):
        return None
    return info.cluster.leader if info.cluster is not None else None


@pytest.mark.timeout(150)
async def test_cluster_node_loss_loses_nothing_and_monitoring_resumes(
    cluster_factory: Callable[[], NatsCluster],
    receiver: Receiver,
    unique: str,
    fleets: FleetFactory,
) -> None:
    cluster = cluster_factory()
    kv_stream = f"KV_{names(unique)['bucket']}"
    nc = await nats.connect(
        servers=[n.url for n in cluster.nodes], max_reconnect_attempts=-1, reconnect_time_wait=0.2
    )
    prefix = names(unique)["prefix"]
    subjects = [prefix + "x", prefix + "y", prefix + "z"]
    try:
        # A monitor exits when JetStream does not answer at startup: start on a formed cluster.
        await jetstream_answers(nc, kv_stream)
        fleet = fleets(cluster.urls, unique, receiver, replicas="3", lease_ttl="2s")
        fleet.start(3)
        for s in subjects:
            await publish_when_ready(nc, s)
        await fleet.wait_ready(fleet.replicas, timeout=30)
        for s in subjects:
            await eventually(lambda s=s: len(kinds(receiver, s, "repeat")) >= 2, 20, "repeats")
        info = await nc.jetstream().stream_info(kv_stream)
        assert info.config.num_replicas == 3 and info.cluster is not None
        victim_name = info.cluster.leader
        victim = next(n for n in cluster.nodes if n.name == victim_name)
        leader = await fleet.wait_sole_leader(10)
        killed = time.time()
        await asyncio.to_thread(victim.stop, True)

        async def new_stream_leader() -> bool:
            return await stream_leader(nc, kv_stream) not in (None, victim_name)

        await eventually(new_stream_leader, 30, f"a new leader of {kv_stream}", every=0.05)
        elected = time.time()
        for s in subjects:
            await eventually(
                lambda s=s: len([n for n in notes(receiver, s) if n.at > killed]) >= 4,
                40,
                f"four notifications for {s} after the kill",
                every=0.1,
            )
        after = await fleet.wait_sole_leader(15)
    finally:
        await nc.close()
    worst, first_after = 0.0, killed
    for s in subjects:
        ns = notes(receiver, s)
        assert not duplicated(ns), duplicated(ns)
        assert_nothing_lost(ns)
        assert ns[0].event == "alert" and {n.event for n in ns[1:]} == {"repeat"}, ns
        spanning = [b.at - a.at for a, b in itertools.pairwise(ns) if b.at > killed]
        worst = max(worst, max(spanning))
        first_after = max(first_after, next(n.at for n in ns if n.at > killed))
    blinds = kinds(receiver, "", "blind", "sight_restored")
    print(
        f"\n[cluster] killed {victim_name} (leader of {kv_stream}) while {leader.replica_id} "
        f"led; NATS elected a new stream leader after {elected - killed:.2f}s; every subject "
        f"notified again {first_after - killed:.2f}s after the kill ({first_after - elected:.2f}s "
        f"after the election); longest gap between notifications {worst:.2f}s (repeat "
        f"{REPEAT_S:g}s, lease ttl 2s); leader afterwards {after.replica_id}; duplicates 0; "
        f"blind notices {len(blinds)}"
    )
    # NATS's own stream-leader election takes 4-8 s here (its raft timeouts allow ~10 s).
    # Ours comes on top (measured -0.35 to 2.19 s in 14 runs): the lease renewed or taken
    # over (one ttl at most) while nats-py recreates ordered consumers that lived on the
    # dead node (it checks every two 1 s idle heartbeats; an attempt before the election
    # fails), and the other streams elect their own leaders.  Requests sent before then
    # are never answered: with nats-py's 5 s timeout on the lease read and the catch-up
    # probes this took up to 6.4 s (9 of 53 runs over 4.4 s); see test_unanswered.py.
    assert first_after - elected <= 5, (first_after - elected, elected - killed)
    assert first_after - killed <= 15, first_after - killed
