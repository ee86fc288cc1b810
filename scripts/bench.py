"""The performance figures behind ./scripts/bench, measured against a real nats-server.

One run starts a private nats-server (temporary store) and measures:

  1. ingest    drain rate of a bare ordered push consumer vs the monitor's Ingestor + on_beat
  2. detect    alert decision / webhook arrival delay past each deadline, 100k subjects watched
  3. evaluate  CPU time per poll tick with 100k healthy, not-due subjects
  4. memory    RSS per monitored subject (measured in a subprocess)
  5. kv        KV writes per heartbeat at steady state (10k subjects beating every second)
  6. startup   Monitor.start() to ready with 100k records and 100k beats
  7. failover  takeover after kill -9 / SIGTERM of the leading `nats-heartbeat monitor`
  8. page      the status page at 100k subjects: its JSON queries, and its load in chromium
 10. fresh     100k new subjects published twice at a `nats-heartbeat monitor`: listed, busy
               after, RSS, idle CPU, GET / and ?state=alert times (against the Go tool's)
  side         (only with --go-monitor PATH, or --only side) 100k new subjects, each published
               twice, into a `nats-heartbeat monitor` process and then into the Go tool's
               monitor, measured alike: until listed (the median of 5 bursts each, the
               tools taking turns), busy after, RSS per subject, idle CPU, one GET /

With --subjects N it measures instead, on one replica watching N beating subjects (9.):
RSS per subject, start-up to ready, a standby's takeover, steady-state KV writes per
second and the alert delay among them (1,000,000 takes several minutes).

It prints a table (figure, value, target, pass/fail) and writes every figure, with its
details, to a JSON file.  Exit status: 0; 2 when a figure could not be measured; with
--strict, 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gc
import json
import logging
import math
import os
import platform
import random
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import DeliverPolicy

from heartbeat.aio import wait_event
from heartbeat.connection import ConnectOptions, close_connection, connect
from heartbeat.election import Election
from heartbeat.engine import EngineConfig, Health, Record
from heartbeat.ingest import Ingestor
from heartbeat.monitor import Monitor, MonitorConfig
from heartbeat.notify import WebhookNotifier, make_session
from heartbeat.notify.base import Notifier
from heartbeat.schema import Message, encode, format_time
from heartbeat.status import Filter
from heartbeat.status_schema import encode_status
from heartbeat.store import StateStore, StoreConfig, encode_record, ensure_stream
from heartbeat.subjects import CREATES_PER_S, Subjects, checkpoint_period

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.harness import (  # noqa: E402
    MonitorProcess,
    NatsServer,
    Receiver,
    cli_binary,
    cli_env,
    eventually,
    free_port,
    names,
    recording_receiver,
    stop_process,
)

log = logging.getLogger("bench")
HOUR_NS = 3600 * 10**9
SECOND_NS = 10**9


# ----- results ---------------------------------------------------------------------------------


@dataclass
class Result:
    """One row of the table: a figure, its target and whether it was met."""

    key: str
    figure: str
    value: float | None
    unit: str
    target: str  # "<= 1100", ">= 0.6", "" for an informational row
    passed: bool | None  # None: informational, or not measured
    notes: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    error: str = ""


def at_most(key: str, figure: str, value: float, limit: float, unit: str, **kw: Any) -> Result:
    return Result(key, figure, value, unit, f"<= {limit:g}", value <= limit, **kw)


def at_least(key: str, figure: str, value: float, limit: float, unit: str, **kw: Any) -> Result:
    return Result(key, figure, value, unit, f">= {limit:g}", value >= limit, **kw)


def info(key: str, figure: str, value: float, unit: str, **kw: Any) -> Result:
    return Result(key, figure, value, unit, "", None, **kw)


# Every key a run reports (the smoke test checks the JSON has them all).
FIGURES: dict[str, list[str]] = {
    "ingest": ["ingest_raw_rate", "ingest_monitor_rate", "ingest_ratio"],
    "detect": ["detect_decision_p99_ms", "detect_arrival_p99_ms"],
    "evaluate": ["eval_tick_cpu_ms", "eval_reconcile_tick_cpu_ms"],
    "memory": ["rss_per_subject_bytes"],
    "kv": ["kv_writes_per_beat"],
    "startup": ["startup_ready_s"],
    "failover": ["failover_kill_s", "failover_term_s"],
    "integrity": ["wrongly_retired"],
    "page": ["page_query_ms", "page_deep_query_ms", "page_load_ms"],
    "side": [  # not in a default run: --go-monitor (or --only side) asks for it
        f"side_{k}"
        for k in ("listed_s", "busy_after_s", "rss_per_subject_bytes", "idle_cpu", "get_s")
    ],
    "fresh": ["fresh_listed_s", "fresh_busy_after_s", "fresh_recorded_s",
              "fresh_rss_per_subject_bytes", "fresh_idle_cpu_s_per_s", "fresh_get_all_s",
              "fresh_get_alert_ms"],
    "scale": ["scale_rss_per_subject_bytes", "scale_startup_ready_s", "scale_takeover_s",
              "scale_metrics_ms", "scale_get_alert_ms", "scale_kv_writes_per_s",
              "scale_decision_p99_ms", "scale_alert_delay_p99_ms"],
}  # fmt: skip
SCALE_ONLY = {"scale", "side"}  # scale: with --subjects N only; side: --go-monitor


@dataclass(frozen=True)
class Sizes:
    """How big each figure's run is (full, or --quick)."""

    subjects: int = 100_000  # figures 1, 2, 3, 4, 6
    missing: int = 200  # figure 2: subjects made to go missing
    missing_interval_s: float = 2.0
    poll_s: float = 1.0
    tolerance_s: float = 0.2
    ingest_repeats: int = 5
    eval_ticks: int = 10
    steady_subjects: int = 10_000  # figure 5
    steady_warmup_s: float = 5.0
    steady_measure_s: float = 30.0
    lease_ttl_s: float = 10.0  # figure 7 (the CLI default)
    kill_trials: int = 2
    term_trials: int = 3
    fresh_subjects: int = 100_000  # figure 8
    # Idle CPU is averaged over a whole period of the monitor's slowest routine work
    # (the janitor compares the stream's subjects with the records every 30 s, ~55 ms
    # at 100k): a 10 s window caught that round in some runs, not in others.
    fresh_idle_s: float = 30.0
    side_poll_s: float = 0.2  # figure side (issue 12's side-by-side setting)
    side_idle_s: float = 30.0
    side_bursts: int = 4  # figure side: listings beyond the first, for each tool
    side_quiet_s: float = 120.0  # at most this long for an idle machine before a burst


FULL = Sizes()
QUICK = Sizes(
    subjects=5_000,
    missing=20,
    missing_interval_s=1.0,
    poll_s=0.5,
    ingest_repeats=1,
    eval_ticks=4,
    steady_subjects=1_000,
    steady_warmup_s=1.5,
    steady_measure_s=3.0,
    lease_ttl_s=1.0,
    kill_trials=1,
    term_trials=1,
    fresh_subjects=3_000,
    fresh_idle_s=2.0,
    side_idle_s=2.0,
    side_bursts=1,
    side_quiet_s=5.0,
)


def pct(xs: Sequence[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..1)."""
    s = sorted(xs)
    return s[max(0, math.ceil(q * len(s)) - 1)]


def spread(xs: Sequence[float], scale: float = 1.0) -> dict[str, float]:
    return {
        "n": len(xs),
        "p50": round(pct(xs, 0.5) * scale, 3),
        "p99": round(pct(xs, 0.99) * scale, 3),
        "max": round(max(xs) * scale, 3),
        "min": round(min(xs) * scale, 3),
    }


async def wait_set(event: asyncio.Event, within: float, what: str) -> None:
    try:
        await asyncio.wait_for(event.wait(), within)
    except TimeoutError:
        raise TimeoutError(f"timed out after {within:g}s waiting for {what}") from None


# ----- a world of subjects: stream, bucket, beats, records ---------------------------------


@dataclass
class World:
    """A stream and bucket private to one figure, filled with beats (and maybe records)."""

    url: str
    unique: str
    store: StoreConfig
    subjects: list[str] = field(default_factory=list)
    added: list[str] = field(default_factory=list)  # published later by a figure

    @classmethod
    def new(cls, url: str, tag: str) -> World:
        unique = f"{tag}{uuid.uuid4().hex[:6]}"
        n = names(unique)
        store = StoreConfig(stream=n["stream"], bucket=n["bucket"], subject_prefix=n["prefix"])
        return cls(url, unique, store)

    def subject(self, group: str, i: int) -> str:
        return f"{self.store.subject_prefix}{group}.{i:06d}"

    def monitor_config(self, sizes: Sizes, **kw: Any) -> MonitorConfig:
        engine = EngineConfig(
            repeat_every_s=kw.pop("repeat_every_s", 3600.0),
            tolerance_s=kw.pop("tolerance_s", sizes.tolerance_s),
            checkpoint_every_s=kw.pop("checkpoint_every_s", 60.0),
        )
        return MonitorConfig(
            store=self.store,
            engine=engine,
            poll_s=kw.pop("poll_s", sizes.poll_s),
            replica_id=kw.pop("replica_id", f"bench-{self.unique}"),
            lease_ttl_s=kw.pop("lease_ttl_s", 10.0),
            **kw,
        )

    async def create(self, js: JetStreamContext) -> StateStore:
        await ensure_stream(js, self.store)
        return await StateStore.open(js, self.store)


def beat_payload(subject: str, interval_ns: int, at: datetime) -> bytes:
    """A heartbeat as the Go agent sends it (through the project's own encoder)."""
    return encode(
        Message(
            subject=subject,
            interval=timedelta(microseconds=interval_ns // 1000),
            generated_at=at,
            host="bench",
        )
    )


def healthy_record(subject: str, interval_ns: int, last_seen: float) -> Record:
    """The record a monitor would have written for a subject beating like beat_payload."""
    return Record(
        subject=subject,
        host="bench",
        interval_ns=interval_ns,
        last_seen=last_seen,
        generated_at=format_time(datetime.fromtimestamp(last_seen, UTC)),
        updated_by="bench",
    )


async def publish_pipelined(js: JetStreamContext, items: Iterable[tuple[str, bytes]]) -> int:
    """JetStream publishes with up to 4000 acks outstanding; raises if any failed."""
    futures = [await js.publish_async(subject, data) for subject, data in items]
    if futures:
        await asyncio.wait(futures)
    failed = [f.exception() for f in futures if f.exception() is not None]
    if failed:
        raise RuntimeError(f"{len(failed)} publish(es) failed, first: {failed[0]!r}")
    return len(futures)


async def stream_count(js: JetStreamContext, stream: str) -> int:
    return int((await js.stream_info(stream)).state.messages or 0)


async def fill_world(
    js: JetStreamContext, world: World, n: int, interval_ns: int, *, records: bool
) -> None:
    """Publish one beat on each of ``n`` subjects and (``records``) a matching KV record."""
    now = datetime.now(UTC)
    world.subjects = [world.subject("svc", i) for i in range(n)]
    started = time.time()
    await publish_pipelined(js, ((s, beat_payload(s, interval_ns, now)) for s in world.subjects))
    if records:
        prefix = f"$KV.{world.store.bucket}."
        await publish_pipelined(
            js,
            (
                (prefix + s, encode_record(healthy_record(s, interval_ns, started - 1.0)))
                for s in world.subjects
            ),
        )
    assert await stream_count(js, world.store.stream) == n


# ----- an in-process monitor -------------------------------------------------------------------


@dataclass
class TickSample:
    at: float
    cpu_s: float
    wall_s: float
    evaluations: int
    kv_writes: int
    retired: int
    leading: bool


class MonitorRun:
    """A Monitor running in this event loop on its own connection; ticks are instrumented."""

    def __init__(self, url: str, cfg: MonitorConfig, notifiers: Sequence[Notifier] = ()) -> None:
        self.url = url
        self.cfg = cfg
        self.notifiers = list(notifiers)
        self.ticks: list[TickSample] = []
        self.stop = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.nc: NATS | None = None
        self.mon: Monitor | None = None
        self.marks: dict[str, float] = {}  # perf_counter of start, ready, ...
        self.committed_at: dict[str, float] = {}  # subject -> when an alert record was seen
        self._marking: list[asyncio.Future[None]] = []

    async def start(self) -> Monitor:
        mon = self.mon = Monitor(self.cfg, self.notifiers)
        self.nc = await connect(
            ConnectOptions(servers=(self.url,), reconnect_wait_s=0.1, name="bench-monitor"),
            on_disconnect=mon.on_disconnect,
            on_reconnect=mon.on_reconnect,
        )
        self._instrument(mon)
        gc.collect()
        self.marks["start"] = time.perf_counter()
        await mon.start(self.nc)
        self.marks["started"] = time.perf_counter()
        watch = mon.parts.watch
        self._marking = [
            asyncio.ensure_future(self._mark_when(name, event))
            for name, event in (("bucket", watch.caught_up), ("stream", mon.ingestor.caught_up))
        ]
        self.task = asyncio.create_task(mon.run(self.stop))
        await wait_set(mon.ready_event, 120, "monitor ready")
        self.marks["ready"] = time.perf_counter()
        return mon

    async def _mark_when(self, name: str, event: asyncio.Event) -> None:
        await event.wait()
        self.marks[name] = time.perf_counter()

    def _instrument(self, mon: Monitor) -> None:
        """Wrap tick (CPU and wall time) and set_record (when alerts are committed)."""
        tick, set_record = mon.tick, mon.subjects.set_record

        async def timed_tick() -> None:
            ev, writes, retired = mon.counters.evaluations, mon.kv_writes(), mon.subjects.retired
            cpu, wall = time.process_time(), time.perf_counter()
            await tick()
            self.ticks.append(
                TickSample(
                    at=time.time(),
                    cpu_s=time.process_time() - cpu,
                    wall_s=time.perf_counter() - wall,
                    evaluations=mon.counters.evaluations - ev,
                    kv_writes=mon.kv_writes() - writes,
                    retired=mon.subjects.retired - retired,
                    leading=mon.leading(),
                )
            )

        def noting_set_record(subject: str, rec: Record, rev: int) -> None:
            if rec.alert_active and subject not in self.committed_at:
                self.committed_at[subject] = time.time()
            set_record(subject, rec, rev)

        mon.tick = timed_tick  # type: ignore[method-assign]
        mon.subjects.set_record = noting_set_record  # type: ignore[method-assign]

    async def judging(self, within: float = 120.0, *, quiet: bool = True) -> float:
        """Wait until the monitor leads, judges, and (``quiet``) a tick evaluated nothing."""
        assert self.mon is not None
        mon = self.mon

        def settled() -> bool:
            last = self.ticks[-1] if self.ticks else None
            return bool(
                last is not None
                and last.leading
                and (last.evaluations == 0 or not quiet)
                and not mon.subjects.dirty
                and not mon.subjects.pending
                and mon.judging()
            )

        await eventually(settled, within, "the monitor to lead and settle", every=0.05)
        self.marks["judging"] = time.perf_counter()
        return self.marks["judging"]

    async def next_ticks(self, n: int, within: float) -> list[TickSample]:
        first = len(self.ticks)
        await eventually(lambda: len(self.ticks) >= first + n, within, f"{n} ticks", every=0.02)
        return self.ticks[first : first + n]

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            await self.task
        for marking in self._marking:
            marking.cancel()
        if self.nc is not None:
            await close_connection(self.nc)


@contextlib.asynccontextmanager
async def running(run: MonitorRun) -> AsyncIterator[Monitor]:
    try:
        yield await run.start()
    finally:
        await run.close()


# ----- figure 1: ingest ------------------------------------------------------------------------


async def drain_raw(js: JetStreamContext, world: World) -> float:
    """Seconds for a bare ordered push consumer (callback only counts) to drain the stream."""
    n = len(world.subjects)
    count = 0
    done = asyncio.Event()

    async def counted(msg: Msg) -> None:
        nonlocal count
        count += 1
        if count == n:
            done.set()

    gc.collect()
    started = time.perf_counter()
    sub = await js.subscribe(
        world.store.filter_subject,
        stream=world.store.stream,
        cb=counted,
        ordered_consumer=True,
        deliver_policy=DeliverPolicy.LAST_PER_SUBJECT,
        idle_heartbeat=1.0,
        pending_msgs_limit=-1,
        pending_bytes_limit=-1,
    )
    await wait_set(done, 120, "the raw consumer to drain the stream")
    elapsed = time.perf_counter() - started
    await sub.unsubscribe()
    return elapsed


async def drain_monitor(nc: NATS, world: World, cfg: MonitorConfig) -> float:
    """Seconds for the monitor's Ingestor (validation + Monitor._on_beat) to drain the stream.

    The monitor already holds a matching record for every subject, as after mirroring
    the bucket (keys interned as heartbeat.store's watch does, deadlines scheduled), so
    each beat takes the steady-state path.
    """
    subjects = Subjects(cfg.engine)
    ingestor = Ingestor(
        nc.jetstream(), cfg.store.stream, cfg.store.filter_subject, subjects.on_beat, subjects.known
    )
    started_at = time.time()
    for rev, s in enumerate(world.subjects, 1):
        key = sys.intern(s)
        subjects.set_record(key, healthy_record(key, HOUR_NS, started_at - 1.0), rev)
    gc.collect()
    started = time.perf_counter()
    await ingestor.start()
    await wait_set(ingestor.caught_up, 120, "the Ingestor to drain the stream")
    elapsed = time.perf_counter() - started
    await ingestor.stop()
    n = len(world.subjects)
    if ingestor.accepted != n:
        raise RuntimeError(f"Ingestor accepted {ingestor.accepted} of {n} beats")
    return elapsed


async def bench_ingest(nc: NATS, world: World, sizes: Sizes) -> list[Result]:
    js = nc.jetstream()
    cfg = world.monitor_config(sizes)
    raw, ours = [], []
    for _ in range(sizes.ingest_repeats):  # alternate, so drift hits both alike
        raw.append(await drain_raw(js, world))
        ours.append(await drain_monitor(nc, world, cfg))
    n = len(world.subjects)
    raw_rate, our_rate = n / sorted(raw)[len(raw) // 2], n / sorted(ours)[len(ours) // 2]
    runs = {"raw_s": [round(x, 3) for x in raw], "monitor_s": [round(x, 3) for x in ours]}
    return [
        info("ingest_raw_rate", "1. ingest: bare ordered consumer", raw_rate, "msg/s",
             notes=f"N={n}, median of {len(raw)}", details=runs),
        info("ingest_monitor_rate", "1. ingest: Ingestor + on_beat", our_rate, "msg/s",
             notes=f"N={n}, median of {len(ours)}", details=runs),
        at_least("ingest_ratio", "1. ingest: monitor / raw", our_rate / raw_rate, 0.6, "x"),
    ]  # fmt: skip


# ----- figures 6, 2, 3: one monitor watching the big world ---------------------------------------


def startup_result(run: MonitorRun, world: World) -> Result:
    m = run.marks
    since = {k: round(v - m["start"], 3) for k, v in m.items() if k != "start"}
    return at_most(
        "startup_ready_s", "6. start-up: start() -> ready", m["ready"] - m["start"], 5.0, "s",
        notes=f"{len(world.subjects)} records + beats; judging after "
              f"{since.get('judging', 0):.2f}s",
        details={"since_start_s": since},
    )  # fmt: skip


async def bench_detect(
    nc: NATS, world: World, run: MonitorRun, receiver: Receiver, sizes: Sizes
) -> list[Result]:
    """K new subjects beat once with a short interval; measure how late each alert is."""
    assert run.mon is not None
    mon, js = run.mon, nc.jetstream()
    interval_ns = int(sizes.missing_interval_s * SECOND_NS)
    missing = [world.subject("gone", i) for i in range(sizes.missing)]
    world.added += missing
    batches = 10
    for b in range(batches):  # spread the deadlines over two poll periods
        now = datetime.now(UTC)
        await publish_pipelined(
            js, ((s, beat_payload(s, interval_ns, now)) for s in missing[b::batches])
        )
        await asyncio.sleep(2 * sizes.poll_s / batches)
    wait_s = sizes.missing_interval_s + sizes.tolerance_s + 4 * sizes.poll_s + 20
    await receiver.wait_for(len(missing), timeout=wait_s)
    window_s = sizes.missing_interval_s + sizes.tolerance_s
    arrived: dict[str, float] = {}
    for r in receiver.requests:
        body = r.json()
        if body.get("event") == "alert":
            arrived.setdefault(body["subject"], r.at)
    decision, commit, arrival = [], [], []
    for s in missing:
        beat, rec = mon.subjects.beat(s), mon.subjects.record(s)
        assert beat is not None and rec is not None and rec.alert_since is not None
        deadline = beat.last_seen + window_s
        decision.append(rec.alert_since - deadline)
        commit.append(run.committed_at[s] - deadline)
        arrival.append(arrived[s] - deadline)
    early = [x for x in decision if x < 0]
    details = {
        "decision_ms": spread(decision, 1000),
        "commit_ms": spread(commit, 1000),
        "arrival_ms": spread(arrival, 1000),
        "watched_subjects": len(mon.subjects.tracks),
        "missing": len(missing),
        "poll_s": sizes.poll_s,
        "early_alerts": len(early),
    }
    poll_ms = sizes.poll_s * 1000
    d, a = details["decision_ms"], details["arrival_ms"]
    return [
        at_most("detect_decision_p99_ms", "2. detect: decision delay p99",
                d["p99"], poll_ms + 100, "ms",
                notes=f"p50 {d['p50']:.0f} max {d['max']:.0f}; K={len(missing)} "
                      f"of {len(mon.subjects.tracks)}, poll {poll_ms:.0f}ms", details=details),
        at_most("detect_arrival_p99_ms", "2. detect: webhook arrival p99",
                a["p99"], poll_ms + 250, "ms",
                notes=f"p50 {a['p50']:.0f} max {a['max']:.0f}; commit p99 "
                      f"{details['commit_ms']['p99']:.0f}", details=details),
    ]  # fmt: skip


async def bench_evaluate(run: MonitorRun, sizes: Sizes) -> list[Result]:
    """CPU per tick with every subject healthy and not due; then one reconcile tick.

    process_time() around Monitor.tick: it includes what other tasks of this process do
    while a tick awaits NATS (the stall check every 5 s does), so it is an upper bound.
    """
    assert run.mon is not None
    mon = run.mon
    await eventually(
        lambda: not mon.subjects.pending and not mon.subjects.dirty and not mon.judge.busy,
        30, "deliveries to settle",
    )  # fmt: skip
    samples = await run.next_ticks(sizes.eval_ticks, sizes.eval_ticks * sizes.poll_s * 3 + 10)
    plain = [t for t in samples if t.leading]
    # The leader's janitor lists the stream's subjects every reconcile_every_s, beside the
    # ticks (not in them); measure one round directly and spread it over the ticks between.
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await mon.parts.janitor._reconcile()
    rec_cpu = (time.process_time() - cpu0) * 1000
    rec_wall = (time.perf_counter() - wall0) * 1000
    cpu_ms = [t.cpu_s * 1000 for t in plain]
    details = {
        "tick_cpu_ms": spread(cpu_ms),
        "tick_cpu_ms_each": [round(x, 3) for x in cpu_ms],
        "tick_wall_ms": spread([t.wall_s * 1000 for t in plain]),
        "evaluations_per_tick": [t.evaluations for t in plain],
        "subjects": len(mon.subjects.tracks),
        "scheduled": len(mon.subjects.schedule),
        "reconcile_round": {"cpu_ms": round(rec_cpu, 2), "wall_ms": round(rec_wall, 2)},
        "reconcile_every_s": mon.cfg.reconcile_every_s,
    }  # fmt: skip
    per_period = max(1.0, mon.cfg.reconcile_every_s / sizes.poll_s)
    amortized = rec_cpu / per_period
    details["amortized_reconcile_cpu_ms_per_tick"] = round(amortized, 3)
    return [
        at_most("eval_tick_cpu_ms", "3. evaluate: CPU per tick (mean)", statistics.mean(cpu_ms),
                2.0, "ms", notes=f"p50 {pct(cpu_ms, 0.5):.2f} max {max(cpu_ms):.2f} (the 5-s "
                f"stall check); {len(mon.subjects)} subjects, {len(cpu_ms)} ticks",
                details=details),
        at_most("eval_reconcile_tick_cpu_ms", "3. evaluate: reconcile per tick, amortized",
                amortized, 2.0, "ms",
                notes=f"one round every {mon.cfg.reconcile_every_s:g}s, beside the ticks: "
                      f"{rec_cpu:.0f} ms CPU, {rec_wall:.0f} ms wall", details=details),
    ]  # fmt: skip


async def bench_big_monitor(nc: NATS, world: World, sizes: Sizes, only: set[str]) -> list[Result]:
    """Figures 6, 2 and 3 on one in-process monitor watching the big world."""
    results: list[Result] = []
    async with recording_receiver() as receiver, make_session() as session:
        # Figure 2 times each alert's own path from deadline to webhook, so its K
        # simultaneous alerts go alone; storms and grouping are ./scripts/storm's.
        cfg = world.monitor_config(sizes, group_over=sizes.missing + 1)
        run = MonitorRun(world.url, cfg, [WebhookNotifier(session, receiver.url)])
        async with running(run) as mon:
            await run.judging()
            if "startup" in only:
                results.append(startup_result(run, world))
            if "detect" in only:
                results += await guarded("detect", bench_detect(nc, world, run, receiver, sizes))
            if "evaluate" in only:
                results += await guarded("evaluate", bench_evaluate(run, sizes))
            if "page" in only:
                results += await guarded("page", bench_page(mon, world))
            results.append(await integrity(nc, world, mon))
    return results


# ----- figure 8: the status page ----------------------------------------------------------------

CHROMIUM = Path("/usr/bin/chromium")


async def timed_get(session: aiohttp.ClientSession, url: str, n: int) -> tuple[list[float], int]:
    """Wall times (ms) of ``n`` GETs of ``url`` and the answer's size in bytes."""
    times, size = [], 0
    for _ in range(n):
        started = time.perf_counter()
        async with session.get(url) as r:
            body = await r.read()
            if r.status != 200:
                raise RuntimeError(f"GET {url}: HTTP {r.status}: {body[:200]!r}")
        times.append((time.perf_counter() - started) * 1000)
        size = len(body)
    return times, size


def browser_missing() -> str:
    """What the page-load figure lacks here ("" when chromium and playwright are there)."""
    try:
        import playwright  # noqa: F401
    except ImportError:
        return "the playwright package"
    return "" if CHROMIUM.exists() else str(CHROMIUM)


async def page_load_ms(url: str, rows: int, n: int) -> list[float]:
    """Chromium: from navigating to /ui to ``rows`` rows shown, ``n`` times (ms)."""
    from playwright.async_api import async_playwright

    times = []
    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=str(CHROMIUM))
        try:
            for _ in range(n):
                page = await browser.new_page()
                started = time.perf_counter()
                await page.goto(url)
                await page.wait_for_function(
                    f"document.querySelectorAll('#rows tr').length >= {rows}", timeout=30_000
                )
                times.append((time.perf_counter() - started) * 1000)
                await page.close()
        finally:
            await browser.close()
    return times


async def bench_page(mon: Monitor, world: World) -> list[Result]:
    """The queries the status page makes (a first page with counts, a last page), and
    the page's load in chromium, against the big world's monitor."""
    from heartbeat.status import bound_port, make_app, serve

    n = len(world.subjects)
    runner = await serve(make_app(mon), "127.0.0.1:0")
    base = f"http://127.0.0.1:{bound_port(runner)}/"
    try:
        async with aiohttp.ClientSession() as session:
            first, first_size = await timed_get(session, base + "?limit=100&counts=1", 10)
            deep, _ = await timed_get(session, base + f"?limit=100&offset={n - 100}&counts=1", 5)
            whole, whole_size = await timed_get(session, base, 2)
        details = {
            "subjects": n,
            "first_page_bytes": first_size,
            "whole_json_bytes": whole_size,
            "whole_json_ms": spread(whole),
            "first": spread(first),
            "deep": spread(deep),
        }
        results = [
            at_most(
                "page_query_ms",
                "8. page: first page of 100 with counts, median",
                statistics.median(first),
                250,
                "ms",
                notes=f"{first_size:,} bytes; all {n:,} at once: "
                f"{statistics.median(whole):.0f} ms, {whole_size:,} bytes",
                details=details,
            ),
            at_most(
                "page_deep_query_ms",
                "8. page: last page of 100 with counts, median",
                statistics.median(deep),
                500,
                "ms",
                details=details,
            ),
        ]
        missing = browser_missing()
        if missing:
            results.append(
                Result(
                    "page_load_ms",
                    "8. page: load in chromium",
                    None,
                    "ms",
                    "",
                    None,
                    notes=f"not measured: {missing} missing",
                )
            )
        else:
            loads = await page_load_ms(base + "ui", min(100, n), 3)
            results.append(
                at_most(
                    "page_load_ms",
                    "8. page: /ui to 100 rows in chromium, median",
                    statistics.median(loads),
                    2000,
                    "ms",
                    details={"loads_ms": loads},
                )
            )
        return results
    finally:
        await runner.cleanup()


async def integrity(nc: NATS, world: World, mon: Monitor) -> Result:
    """Every subject published (and never retired on purpose) is still watched."""
    published = set(world.subjects) | set(world.added)
    lost = published - set(mon.subjects.tracks)
    in_stream = await stream_count(nc.jetstream(), world.store.stream)
    return at_most(
        "wrongly_retired", "integrity: healthy subjects retired", len(lost), 0, "subjects",
        notes=f"{len(published)} published, {in_stream} still in the stream; reconcile reads "
              "at most 100000 stream subjects per request",
        details={"lost": sorted(lost)[:10], "lost_count": len(lost),
                 "retired_counter": mon.subjects.retired, "stream_messages": in_stream},
    )  # fmt: skip


# ----- figure 4: memory (subprocess) -------------------------------------------------------------


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


async def memory_child(url: str, stream: str, bucket: str, prefix: str) -> dict[str, Any]:
    """In a fresh process: RSS of an empty monitor, then with every subject loaded."""
    store = StoreConfig(stream=stream, bucket=bucket, subject_prefix=prefix)
    nc = await connect(ConnectOptions(servers=(url,), name="bench-memory"))
    mon = Monitor(MonitorConfig(store=store), [])
    gc.collect()
    before = rss_bytes()
    await mon.start(nc)
    await wait_set(mon.parts.watch.caught_up, 120, "bucket caught up")
    await wait_set(mon.ingestor.caught_up, 120, "stream caught up")  # set after the last beat
    gc.collect()
    after = rss_bytes()
    subjects = len(mon.subjects.tracks)
    out = {
        "rss_before": before,
        "rss_after": after,
        "subjects": subjects,
        "records": sum(1 for t in mon.subjects.tracks.values() if t.record is not None),
        "beats": sum(1 for t in mon.subjects.tracks.values() if t.beat is not None),
        "heap_entries": len(getattr(mon.subjects.schedule, "_heap", ())),
        "scheduled": len(mon.subjects.schedule),
        "dirty": len(mon.subjects.dirty),
    }
    await mon.close()
    await close_connection(nc)
    return out


async def bench_memory(world: World) -> list[Result]:
    s = world.store
    proc = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--memory-child", world.url, s.stream, s.bucket,
        s.subject_prefix, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 180)
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed:\n{err.decode(errors='replace')[-2000:]}")
    got = json.loads(out.decode().strip().splitlines()[-1])
    per = (got["rss_after"] - got["rss_before"]) / got["subjects"]
    return [
        at_most("rss_per_subject_bytes", "4. memory: RSS per subject", per, 1024, "B",
                notes=f"{(got['rss_after'] - got['rss_before']) / 2**20:.0f} MiB for "
                      f"{got['subjects']} subjects", details=got)
    ]  # fmt: skip


# ----- figure 5: KV writes per heartbeat at steady state ---------------------------------------


async def beat_forever(js: JetStreamContext, subjects: list[str], stop: asyncio.Event) -> int:
    """Every subject beats every second (pipelined JetStream publishes) until ``stop``.

    Returns how many rounds finished after the next one was due.
    """
    late = 0
    started = time.monotonic()
    for k in range(1_000_000):
        if stop.is_set():
            break
        now = datetime.now(UTC)
        await publish_pipelined(js, ((s, beat_payload(s, SECOND_NS, now)) for s in subjects))
        delay = started + (k + 1) - time.monotonic()
        if delay < 0:
            late += 1
        await wait_event(stop, delay)
    return late


async def bench_kv(nc: NATS, url: str, sizes: Sizes) -> list[Result]:
    """10k subjects beating every second; writes per beat after a warm-up.

    Records are seeded with last_seen spread over the past checkpoint period, as after a
    long run; otherwise every subject would checkpoint in the same second, once a minute.
    """
    js = nc.jetstream()
    world = World.new(url, "kv")
    await world.create(js)
    world.subjects = [world.subject("svc", i) for i in range(sizes.steady_subjects)]
    checkpoint_s = 60.0
    now = time.time()
    rng = random.Random(1)
    await publish_pipelined(
        js,
        (
            (f"$KV.{world.store.bucket}.{s}",
             encode_record(healthy_record(s, SECOND_NS, now - rng.uniform(0, checkpoint_s))))
            for s in world.subjects
        ),
    )  # fmt: skip
    stop = asyncio.Event()
    publisher = asyncio.create_task(beat_forever(js, world.subjects, stop))
    cfg = world.monitor_config(sizes, poll_s=1.0, tolerance_s=1.0, checkpoint_every_s=checkpoint_s)
    run = MonitorRun(url, cfg)
    try:
        async with running(run) as mon:
            await run.judging(60, quiet=False)
            await asyncio.sleep(sizes.steady_warmup_s)
            w0, b0, t0 = mon.kv_writes(), mon.ingestor.accepted, time.monotonic()
            ev0 = mon.counters.evaluations
            await asyncio.sleep(sizes.steady_measure_s)
            w1, b1, t1 = mon.kv_writes(), mon.ingestor.accepted, time.monotonic()
            ev1 = mon.counters.evaluations
            alerts = sum(
                1 for t in mon.subjects.tracks.values() if t.record and t.record.alert_active
            )
    finally:
        stop.set()
        late = await publisher
    beats = b1 - b0
    ratio = (w1 - w0) / beats if beats else float("inf")
    expected = 1.0 / checkpoint_s  # one checkpoint per subject per period, 1 beat/s
    details = {
        "kv_writes": w1 - w0,
        "beats": beats,
        "seconds": round(t1 - t0, 2),
        "beats_per_s": round(beats / (t1 - t0)),
        "evaluations_per_s": round((ev1 - ev0) / (t1 - t0)),
        "alerts_active": alerts,
        "late_publisher_rounds": late,
        "checkpoint_every_s": checkpoint_s,
        "expected_ratio": round(expected, 4),
    }
    return [
        at_most("kv_writes_per_beat", "5. kv: writes per heartbeat", ratio, 0.05, "",
                notes=f"{w1 - w0} writes / {beats} beats in {t1 - t0:.0f}s "
                      f"({sizes.steady_subjects} subjects at 1/s); alerts {alerts}",
                details=details)
    ]  # fmt: skip


# ----- figure 7: failover between CLI processes ---------------------------------------------------


@dataclass(eq=False)
class Replica:
    rid: str
    port: int
    proc: MonitorProcess


class Fleet:
    """`nats-heartbeat monitor` processes sharing a stream and bucket; status polled over HTTP."""

    def __init__(self, url: str, logs: Path, ttl_s: float, session: aiohttp.ClientSession) -> None:
        n = names(f"fo{uuid.uuid4().hex[:6]}")
        self.args = [
            "--nats-url", url, "--subject-prefix", n["prefix"], "--stream", n["stream"],
            "--state-bucket", n["bucket"], "--poll", "100ms", "--notify-log",
            "--lease-ttl", f"{ttl_s:g}s",
        ]  # fmt: skip
        self.logs = logs
        self.session = session
        self.replicas: list[Replica] = []
        self.spawned = 0

    def spawn(self) -> Replica:
        self.spawned += 1
        rid, port = f"bench-m{self.spawned}", free_port()
        proc = MonitorProcess(
            [*self.args, "--replica-id", rid, "--status-addr", f"127.0.0.1:{port}"],
            self.logs / f"{rid}.log",
        ).start()
        replica = Replica(rid, port, proc)
        self.replicas.append(replica)
        return replica

    async def _get(self, r: Replica, path: str) -> tuple[int, bytes]:
        """(status, body) of GET ``path`` on the replica's status listener; (0, b"") if down."""
        if not r.proc.running:
            return 0, b""
        try:
            async with self.session.get(
                f"http://127.0.0.1:{r.port}{path}", timeout=aiohttp.ClientTimeout(total=0.5)
            ) as resp:
                return resp.status, await resp.read()
        except (aiohttp.ClientError, TimeoutError):
            return 0, b""

    async def leads(self, r: Replica) -> bool:
        """The replica's own status JSON says it leads."""
        status, body = await self._get(r, "/")
        return status == 200 and bool(json.loads(body).get("leader"))

    async def ready(self, r: Replica) -> bool:
        status, _ = await self._get(r, "/readyz")
        return status == 200

    async def leaders(self) -> list[Replica]:
        alive = [r for r in self.replicas if r.proc.running]
        got = await asyncio.gather(*(self.leads(r) for r in alive))
        return [r for r, leads in zip(alive, got, strict=True) if leads]

    async def all_ready(self, within: float) -> Replica:
        """Every replica ready, exactly one leading; that one."""
        for r in self.replicas:
            await eventually(lambda r=r: self.ready(r), within, f"{r.rid} ready", every=0.05)

        async def sole() -> Replica | None:
            leading = await self.leaders()
            return leading[0] if len(leading) == 1 else None

        leader: Replica = await eventually(sole, within, "exactly one leader", every=0.05)
        return leader

    async def takeover(self, sig: int, within: float) -> tuple[float, Replica]:
        """Signal the leader; seconds until another replica says it leads."""
        old = await self.all_ready(within)
        signalled = time.monotonic()
        old.proc.send_signal(sig)

        async def successor() -> Replica | None:
            leading = [r for r in await self.leaders() if r is not old]
            return leading[0] if leading else None

        new: Replica = await eventually(successor, within, "a new leader", every=0.02)
        took = time.monotonic() - signalled
        old.proc.stop(sig, timeout=10)  # a SIGTERMed replica finishes its clean exit
        self.replicas.remove(old)
        return took, new

    def stop_all(self) -> None:
        for r in self.replicas:
            r.proc.stop(signal.SIGTERM, timeout=10)


async def bench_failover(url: str, sizes: Sizes, logs: Path) -> list[Result]:
    ttl = sizes.lease_ttl_s
    kills: list[float] = []
    terms: list[float] = []
    async with aiohttp.ClientSession() as session:
        fleet = Fleet(url, logs, ttl, session)
        try:
            for _ in range(3):
                fleet.spawn()
            for trial in range(sizes.kill_trials + sizes.term_trials):
                sig = signal.SIGKILL if trial < sizes.kill_trials else signal.SIGTERM
                took, _ = await fleet.takeover(sig, within=ttl * 3 + 30)
                (kills if sig == signal.SIGKILL else terms).append(took)
                if trial + 1 < sizes.kill_trials + sizes.term_trials:
                    fleet.spawn()  # back to three replicas
        except TimeoutError as e:  # the logs live in a temporary directory: show them now
            tails = "\n".join(f"--- {r.rid}\n{r.proc.text()[-1500:]}" for r in fleet.replicas)
            raise TimeoutError(f"{e}\n{tails}") from e
        finally:
            fleet.stop_all()
    details = {
        "lease_ttl_s": ttl,
        "kill_s": [round(x, 3) for x in kills],
        "term_s": [round(x, 3) for x in terms],
        "replicas": 3,
    }
    return [
        at_most("failover_kill_s", "7. failover: kill -9 of leader (max)", max(kills),
                ttl + 1, "s", notes=f"--lease-ttl {ttl:g}s; trials {details['kill_s']}",
                details=details),
        at_most("failover_term_s", "7. failover: SIGTERM of leader (max)", max(terms), 1.0, "s",
                notes=f"trials {details['term_s']}", details=details),
    ]  # fmt: skip


# ----- fresh: a burst of new subjects, each published twice, at a `nats-heartbeat monitor` ------

# The Go tool's figures for this scenario on the same machine (issue 12): the bar.
GO_FRESH = {"listed_s": 2.1, "rss_per_subject_bytes": 2200.0, "idle_cpu_s_per_s": 0.06,
            "get_all_s": 0.34}  # fmt: skip
BUSY_CPU = 0.25  # of one core: above this, the monitor counts as busy


def proc_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def proc_rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class CpuSampler:
    """A process's CPU use in ``every_s`` windows: (window end, fraction of a core)."""

    def __init__(self, pid: int, every_s: float = 0.5) -> None:
        self.pid, self.every_s = pid, every_s
        self.samples: list[tuple[float, float]] = []
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        last_t, last_c = time.perf_counter(), proc_cpu_s(self.pid)
        while True:
            await asyncio.sleep(self.every_s)
            t, c = time.perf_counter(), proc_cpu_s(self.pid)
            self.samples.append((t, (c - last_c) / (t - last_t)))
            last_t, last_c = t, c

    def busy_until(self, since: float, quiet_s: float) -> float | None:
        """End of the last busy window after ``since``, once ``quiet_s`` of quiet followed
        (``since`` itself when none was busy); None while still busy or too soon."""
        after = [(t, u) for t, u in self.samples if t > since]
        busy = [t for t, u in after if u > BUSY_CPU]
        end = busy[-1] if busy else since
        return end if after and after[-1][0] - end >= quiet_s else None

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def http_get(session: aiohttp.ClientSession, url: str) -> tuple[float, bytes]:
    """Seconds for one GET (the whole body read) and the body."""
    started = time.perf_counter()
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=60)) as resp:
        body = await resp.read()
        if resp.status != 200:
            raise RuntimeError(f"GET {url}: {resp.status} {body[:200]!r}")
    return time.perf_counter() - started, body


def listed_subjects(body: bytes) -> int:
    return len(json.loads(body)["subjects"])


async def bench_fresh(url: str, sizes: Sizes, logs: Path) -> list[Result]:
    """N new subjects, each published twice, at a monitor process watching nothing yet.

    The monitor is the CLI (`nats-heartbeat monitor`, poll 200 ms), so its CPU and RSS
    are its own; this process publishes and asks.  "Listed" is when ``GET /`` lists the
    subject published last in the first pass (the stream hands beats over in order, so
    every earlier one is listed too; a full ``GET /`` then checks the count); "busy" is
    how long its CPU stays above a quarter of a core after that.
    """
    n_ = names(f"fr{uuid.uuid4().hex[:6]}")
    port = free_port()
    base = f"http://127.0.0.1:{port}/"
    mon = MonitorProcess(
        ["--nats-url", url, "--subject-prefix", n_["prefix"], "--stream", n_["stream"],
         "--state-bucket", n_["bucket"], "--poll", "200ms", "--notify-log",
         "--replica-id", "bench-fresh", "--status-addr", f"127.0.0.1:{port}"],
        logs / "fresh-monitor.log",
    ).start()  # fmt: skip
    assert mon.proc is not None
    pid = mon.proc.pid
    subjects = [f"{n_['prefix']}new.{i:07d}" for i in range(sizes.fresh_subjects)]
    n = len(subjects)
    sampler = CpuSampler(pid)
    nc = await connect(ConnectOptions(servers=(url,), name="bench-fresh"))
    try:
        async with aiohttp.ClientSession() as session:

            async def leads() -> bool:
                try:
                    _, body = await http_get(session, base + "?limit=1")
                except (aiohttp.ClientError, RuntimeError, OSError):
                    return False
                return bool(json.loads(body).get("leader"))

            await eventually(leads, 60, "the fresh monitor to lead", every=0.05)
            rss0 = proc_rss(pid)
            js = nc.jetstream()
            probe = base + f"?subject={subjects[-1]}"

            async def last_listed() -> bool:
                return listed_subjects((await http_get(session, probe))[1]) == 1

            # Encoded beforehand: N agents encode their own beats, so this process's
            # JSON encoding must not pace the burst.
            now = datetime.now(UTC)
            passes = [
                [(s, beat_payload(s, HOUR_NS, now + timedelta(seconds=k))) for s in subjects]
                for k in range(2)
            ]

            async def publish_twice() -> None:  # core publishes, as agents send them
                for beats in passes:
                    for i, (s, data) in enumerate(beats):
                        await nc.publish(s, data)
                        if i % 5000 == 4999:
                            await nc.flush()
                    await nc.flush()

            sampler.start()
            started = time.perf_counter()
            publishing = asyncio.create_task(publish_twice())
            await eventually(last_listed, 120 + n / 1000, "the last subject listed", every=0.02)
            listed = time.perf_counter()
            await publishing
            published = time.perf_counter()
            await eventually(lambda: _counted(js, n_["stream"], n), 60, "every beat stored")
            busy_end: float = await eventually(
                lambda: sampler.busy_until(listed, 3.0), 300, "the monitor to quiet down",
                every=0.1,
            )  # fmt: skip
            cpu_after = sum(u * sampler.every_s for t, u in sampler.samples if t > listed)

            async def all_recorded() -> bool:  # the lease is a key of the bucket too
                return await stream_count(js, f"KV_{n_['bucket']}") >= n + 1

            await eventually(all_recorded, 120 + 4 * n / CREATES_PER_S, "every first record",
                             every=0.5)  # fmt: skip
            recorded = time.perf_counter()
            await asyncio.sleep(1.0)
            rss = proc_rss(pid)
            c0, t0 = proc_cpu_s(pid), time.perf_counter()
            await asyncio.sleep(sizes.fresh_idle_s)
            idle = (proc_cpu_s(pid) - c0) / (time.perf_counter() - t0)
            gets = [await http_get(session, base) for _ in range(3)]
            alerts = [await http_get(session, base + "?state=alert") for _ in range(5)]
            if {listed_subjects(b) for _, b in gets} != {n}:  # after the RSS: it costs some
                raise RuntimeError("GET / did not list every subject")
    finally:
        await sampler.stop()
        await close_connection(nc)
        mon.stop(signal.SIGTERM, timeout=20)
    get_s = statistics.median(t for t, _ in gets)
    alert_ms = statistics.median(t for t, _ in alerts) * 1000
    per = (rss - rss0) / n
    details = {
        "subjects": n, "listed_s": round(listed - started, 3),
        "published_s": round(published - started, 3), "busy_after_s": round(busy_end - listed, 3),
        "cpu_s_after_listed": round(cpu_after, 2), "recorded_s": round(recorded - started, 1),
        "rss_before": rss0, "rss_after": rss, "idle_cpu_s_per_s": round(idle, 4),
        "get_all_s": [round(t, 3) for t, _ in gets], "get_all_bytes": len(gets[0][1]),
        "get_alert_ms": [round(t * 1000, 1) for t, _ in alerts], "go": GO_FRESH,
        "cpu_samples": [round(u, 2) for t, u in sampler.samples if t > listed][:240],
    }  # fmt: skip
    go = GO_FRESH
    return [
        at_most("fresh_listed_s", "10. fresh: first publish -> GET / lists all", listed - started,
                go["listed_s"], "s", notes=f"N={n}, each published twice (done after "
                f"{published - started:.1f}s); Go tool {go['listed_s']:g}s", details=details),
        at_most("fresh_busy_after_s", "10. fresh: busy after that (CPU > 25%)",
                busy_end - listed, 5.0, "s", notes=f"{cpu_after:.1f} CPU-s until quiet; every "
                f"first record after {recorded - started:.0f}s", details=details),
        info("fresh_recorded_s", "10. fresh: first publish -> every first record",
             recorded - started, "s", notes=f"first records at {CREATES_PER_S:g}/s",
             details=details),
        at_most("fresh_rss_per_subject_bytes", "10. fresh: RSS per subject, settled", per,
                go["rss_per_subject_bytes"] / 2, "B",
                notes=f"<= 0.5x the Go tool's {go['rss_per_subject_bytes']:g} B",
                details=details),
        at_most("fresh_idle_cpu_s_per_s", "10. fresh: idle CPU, all healthy", idle,
                go["idle_cpu_s_per_s"] / 5, "s/s",
                notes=f"<= 0.2x the Go tool's {go['idle_cpu_s_per_s']:g}; over "
                      f"{sizes.fresh_idle_s:g}s", details=details),
        at_most("fresh_get_all_s", "10. fresh: one GET / of all", get_s, go["get_all_s"], "s",
                notes=f"{len(gets[0][1]) / 2**20:.0f} MiB, median of 3; Go tool "
                      f"{go['get_all_s']:g}s", details=details),
        at_most("fresh_get_alert_ms", "10. fresh: GET /?state=alert", alert_ms, 50.0, "ms",
                notes="median of 5", details=details),
    ]  # fmt: skip


# ----- scale: --subjects N, one replica watching N subjects that beat --------------------------


@dataclass(frozen=True)
class ScaleSizes:
    """The --subjects N run: N subjects beating every ``interval_s``."""

    subjects: int
    interval_s: float = 60.0  # the fleet's beats: N / interval_s per second
    checkpoint_every_s: float = 60.0
    poll_s: float = 1.0
    tolerance_s: float = 0.2
    measure_s: float = 60.0  # steady-state KV writes are counted this long
    missing: int = 200  # alert delay: subjects made to go missing among the N
    missing_interval_s: float = 2.0

    @classmethod
    def of(cls, n: int, interval_s: float | None = None) -> ScaleSizes:
        sz = cls(n) if n >= 100_000 else cls(n, 4.0, measure_s=3.0, missing=20,
                                               missing_interval_s=1.0)  # fmt: skip
        return sz if interval_s is None else dataclasses.replace(sz, interval_s=interval_s)

    def detect_sizes(self) -> Sizes:
        return Sizes(
            subjects=self.subjects,
            missing=self.missing,
            poll_s=self.poll_s,
            missing_interval_s=self.missing_interval_s,
            tolerance_s=self.tolerance_s,
        )


async def beat_child(url: str, prefix: str, n: int, interval_s: float) -> None:
    """(In a process of its own.)  Beat ``n`` subjects round-robin, each declaring
    ``interval_s`` and beating every 0.9 x that (an agent's slack: this process's own
    jitter under load must not read as silence), spread evenly; core publishes; until
    killed."""
    nc = await connect(ConnectOptions(servers=(url,), name="bench-beats"))
    subjects = [f"{prefix}svc.{i:07d}" for i in range(n)]
    interval_ns = int(interval_s * SECOND_NS)
    rate = n / (0.9 * interval_s)
    per_step, step_s = max(1, math.ceil(rate / 20)), 0.05  # 20 steps a second
    started, sent, i = time.monotonic(), 0, 0
    while True:
        now = datetime.now(UTC)
        for _ in range(per_step):
            s = subjects[i]
            await nc.publish(s, beat_payload(s, interval_ns, now))
            i = (i + 1) % n
        sent += per_step
        await nc.flush()
        ahead = started + sent / rate - time.monotonic()
        await asyncio.sleep(max(0.0, min(step_s, ahead)))


class Holder:
    """The lease held by this process, so the monitor under test starts as a standby."""

    def __init__(self, store: StateStore) -> None:
        self.election = Election(store, "bench-holder", ttl_s=10.0)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.election.run(self.stop))

    async def release(self) -> None:
        self.stop.set()
        await self.task


def rekeyed(results: list[Result], keys: dict[str, tuple[str, str]]) -> list[Result]:
    """The results named in ``keys`` (old key -> new key, figure), under their new names."""
    return [
        dataclasses.replace(r, key=keys[r.key][0], figure=keys[r.key][1])
        for r in results
        if r.key in keys
    ]


async def bench_scale(url: str, sz: ScaleSizes, logs: Path) -> list[Result]:
    """One replica and N beating subjects: memory, start-up, takeover, KV writes, alerts."""
    nc = await connect(ConnectOptions(servers=(url,), name="bench-scale"))
    js = nc.jetstream()
    world = World.new(url, "sc")
    store = await world.create(js)
    n = sz.subjects
    world.subjects = [f"{world.store.subject_prefix}svc.{i:07d}" for i in range(n)]
    results: list[Result] = []
    beats = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--beat-child", url, world.store.subject_prefix, str(n),
        str(sz.interval_s), stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # Records as a long-running monitor leaves them: last_seen spread over the
        # checkpoint period (so checkpoints come evenly, as after a long run).
        period = checkpoint_period(sz.checkpoint_every_s, n)
        now, rng = time.time(), random.Random(1)
        interval_ns = int(sz.interval_s * SECOND_NS)
        started = time.perf_counter()
        await publish_pipelined(js, (
            (f"$KV.{world.store.bucket}.{s}",
             encode_record(healthy_record(s, interval_ns, now - rng.uniform(0, period))))
            for s in world.subjects
        ))  # fmt: skip
        await eventually(
            lambda: _counted(js, world.store.stream, n), sz.interval_s * 3 + 60, "every beat"
        )
        print(f"  setup: {n} records and beats in {time.perf_counter() - started:.1f}s",
              file=sys.stderr, flush=True)  # fmt: skip
        results += rekeyed(await bench_memory(world), {
            "rss_per_subject_bytes": ("scale_rss_per_subject_bytes", "9. scale: RSS per subject")
        })  # fmt: skip
        holder = Holder(store)
        await eventually(holder.election.leading, 30, "the bench to hold the lease")
        results += await scale_monitor(nc, world, sz, holder)
    finally:
        if beats.returncode is None:
            beats.kill()
        await beats.wait()
        await close_connection(nc)
    return results


async def _counted(js: JetStreamContext, stream: str, n: int) -> bool:
    return await stream_count(js, stream) >= n


async def scale_status_costs(
    mon: Monitor, times: int = 3
) -> tuple[list[float], list[float], list[float]]:
    """Milliseconds of ``times`` /metrics bodies that count every subject afresh (the
    tally's last count expired: a scrape every 15 s or more always finds it so), of one
    right after each (it reuses that count), and of a filtered status answer
    (``?state=alert``), each built as the status server builds it."""
    fresh, reused, alert = [], [], []
    for _ in range(times):
        await eventually(lambda: not mon.tally.fresh(), 60, "the last count to expire")
        t0 = time.perf_counter()
        await mon.metrics()
        t1 = time.perf_counter()
        await mon.metrics()
        t2 = time.perf_counter()
        encode_status(mon.report(Filter(state=Health.ALERT)))
        t3 = time.perf_counter()
        fresh.append(round((t1 - t0) * 1000, 2))
        reused.append(round((t2 - t1) * 1000, 2))
        alert.append(round((t3 - t2) * 1000, 2))
    return fresh, reused, alert


async def scale_monitor(nc: NATS, world: World, sz: ScaleSizes, holder: Holder) -> list[Result]:
    """Start-up, takeover, steady KV writes and alert delay, on one in-process monitor."""
    n = sz.subjects
    cfg = world.monitor_config(
        sz.detect_sizes(), poll_s=sz.poll_s, checkpoint_every_s=sz.checkpoint_every_s,
        group_over=sz.missing + 1, max_subjects=n + sz.missing + 10,
    )  # fmt: skip
    async with recording_receiver() as receiver, make_session() as session:
        run = MonitorRun(world.url, cfg, [WebhookNotifier(session, receiver.url)])
        async with running(run) as mon:
            ready_s = run.marks["ready"] - run.marks["start"]
            bucket_s = run.marks.get("bucket", run.marks["ready"]) - run.marks["start"]
            released = time.perf_counter()
            await holder.release()
            await eventually(
                lambda: mon.judging() and run.ticks and run.ticks[-1].leading,
                60 + n / 10_000, "the standby to take over", every=0.02,
            )  # fmt: skip
            takeover_s = time.perf_counter() - released
            first = next(t for t in run.ticks if t.leading)
            with contextlib.suppress(TimeoutError):  # a first tick's commits, if any
                await eventually(lambda: not mon.judge.busy and not mon.subjects.pending, 30)
            w0, e0, t0 = mon.kv_writes(), mon.counters.evaluations, time.monotonic()
            b0 = mon.ingestor.accepted
            await asyncio.sleep(sz.measure_s)
            t1 = time.monotonic()
            writes, evals = mon.kv_writes() - w0, mon.counters.evaluations - e0
            beats = mon.ingestor.accepted - b0
            scrape_ms, reused_ms, alert_ms = await scale_status_costs(mon)
            # Every subject beats: any alert among them is a false one.
            false_alerts = sum(1 for t in mon.subjects if t.record and t.record.alert_active)
            tick_ms = [t.wall_s * 1000 for t in run.ticks if t.leading and t.at > first.at]
            detect = await guarded(
                "scale detect",
                bench_detect(nc, world, run, receiver, sz.detect_sizes()),
                ["detect"],
            )
            tracked = len(mon.subjects)
    period = checkpoint_period(sz.checkpoint_every_s, n)
    steady = {
        "kv_writes": writes, "seconds": round(t1 - t0, 1), "beats": beats,
        "beats_per_s": round(beats / (t1 - t0)), "evaluations_per_s": round(evals / (t1 - t0)),
        "checkpoint_period_s": period, "expected_writes_per_s": round(n / period, 1),
        "tick_wall_ms": spread(tick_ms) if tick_ms else {}, "tracked": tracked,
        "false_alerts": false_alerts, "held_alerts": mon.judge.held_alerts,
    }  # fmt: skip
    return [
        at_most("scale_startup_ready_s", "9. scale: start() -> ready to lead", ready_s, 20.0, "s",
                notes=f"{n} records + {n} beats; bucket mirrored after {bucket_s:.1f}s",
                details={"since_start_s": {k: round(v - run.marks["start"], 3)
                                           for k, v in run.marks.items()}}),
        at_most("scale_takeover_s", "9. scale: standby takes over (lease released)", takeover_s,
                sz.poll_s + 1.0, "s", notes=f"until judging (a poll at most, then a tick); its "
                f"first tick {first.wall_s * 1000:.0f} ms, "
                f"{first.evaluations} evaluations", details={"first_tick_ms": first.wall_s * 1000,
                "first_tick_evaluations": first.evaluations}),
        info("scale_metrics_ms", "9. scale: one /metrics, counting afresh",
             statistics.median(scrape_ms), "ms",
             notes=f"median of {len(scrape_ms)}, in slices of {mon.tally.slice_size:,} with a "
                   f"yield between; reusing that count {statistics.median(reused_ms):g} ms",
             details={"each_ms": scrape_ms, "reused_ms": reused_ms}),
        at_most("scale_get_alert_ms", "9. scale: GET /?state=alert", statistics.median(alert_ms),
                50.0, "ms", notes=f"median of {len(alert_ms)}, none alerting",
                details={"each_ms": alert_ms}),
        at_most("scale_kv_writes_per_s", "9. scale: steady-state KV writes", writes / (t1 - t0),
                1000.0, "/s", notes=f"{beats / (t1 - t0):,.0f} beats/s, checkpoint every "
                f"{period:g}s (expect ~{n / period:.0f}/s), over {t1 - t0:.0f}s; "
                f"false alerts {false_alerts}",
                details=steady),
        *rekeyed(detect, {
            "detect_decision_p99_ms": ("scale_decision_p99_ms", "9. scale: alert decision p99"),
            "detect_arrival_p99_ms": ("scale_alert_delay_p99_ms", "9. scale: alert delay p99"),
        }),
    ]  # fmt: skip


# ----- side: new subjects into a monitor process, ours and (--go-monitor) the Go tool's -------


def side_cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process, from /proc (fields 14 and 15 of stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def side_rss(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


async def side_quiet_since(
    pid: int, within: float, busy_cpu: float = 0.25, span: float = 3.0
) -> float:
    """perf_counter when the process began its first ``span``-s window under ``busy_cpu`` s/s.

    The Go monitor scans every subject each poll (~0.1 s/s at 100k here), so "quiet" is
    well above zero; the span keeps a lull between KV round trips from counting.
    """
    samples: list[tuple[float, float]] = []
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline:
        samples.append((time.perf_counter(), side_cpu_s(pid)))
        old = [x for x in samples if x[0] <= samples[-1][0] - span]
        if old:
            (t0, c0), (t1, c1) = old[-1], samples[-1]
            if (c1 - c0) / (t1 - t0) < busy_cpu:
                return t0
        await asyncio.sleep(0.25)
    raise TimeoutError(f"the monitor stayed busy for {within:g}s")


async def side_settled(pid: int, idle_s: float, until: float, busy_cpu: float = 0.25
                  ) -> tuple[float, float]:  # fmt: skip
    """(when the process went quiet, its CPU s/s over the next ``idle_s``): a quiet spell
    counts only if the whole idle window after it stays under ``busy_cpu`` too."""
    while True:
        quiet = await side_quiet_since(pid, until - time.perf_counter(), busy_cpu)
        cpu0, t0 = side_cpu_s(pid), time.perf_counter()
        await asyncio.sleep(idle_s)
        idle = (side_cpu_s(pid) - cpu0) / (time.perf_counter() - t0)
        if idle < busy_cpu:
            return quiet, idle


def machine_busy() -> tuple[float, float]:
    """(busy, total) CPU time of the whole machine so far, in clock ticks (/proc/stat)."""
    with open("/proc/stat") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return sum(ticks) - idle, sum(ticks)


async def machine_quiet(within: float, busy_share: float = 0.1, span: float = 1.0) -> bool:
    """Wait (up to ``within`` s) until the whole machine spends under ``busy_share`` of
    its CPU for ``span`` s; whether it did.  The server deletes the last burst's stream
    and bucket in the background, and a burst raced against that is slower for
    whichever tool comes next."""
    deadline = time.perf_counter() + within
    while time.perf_counter() < deadline:
        b0, t0 = machine_busy()
        await asyncio.sleep(span)
        b1, t1 = machine_busy()
        if t1 > t0 and (b1 - b0) / (t1 - t0) < busy_share:
            return True
    log.warning("the machine stayed busy for %gs: a burst starts anyway", within)
    return False


def side_kv_writes(status: str) -> float:
    with urllib.request.urlopen(status + "/metrics", timeout=30) as resp:
        found = re.search(rb"^\w*kv_writes_total (\S+)$", resp.read(), re.M)
    if found is None:
        raise RuntimeError("no kv_writes_total in /metrics")
    return float(found.group(1))


async def side_writes_stopped(status: str, until: float, still_s: float = 5.0) -> float:
    """perf_counter of our monitor's last KV write (its counter then still for ``still_s``)."""
    last, since = -1.0, time.perf_counter()
    while time.perf_counter() < until:
        count, now = await asyncio.to_thread(side_kv_writes, status), time.perf_counter()
        if count != last:
            last, since = count, now
        elif now - since >= still_s:
            return since
        await asyncio.sleep(1.0)
    raise TimeoutError("the monitor's KV writes did not stop")


def side_command(go_monitor: str | None, url: str, store: StoreConfig, port: int, poll_s: float
                  ) -> list[str]:  # fmt: skip
    """Either monitor, watching the same prefix at the same poll, on its own status port."""
    poll, addr = f"{poll_s * 1000:g}ms", f"127.0.0.1:{port}"
    if go_monitor:  # the Go flags (single dash); -prime-stream as its README runs it
        return [go_monitor, "-nats-url", url, "-subject-prefix", store.subject_prefix,
                "-prime-stream", store.stream, "-poll", poll, "-status-addr", addr]  # fmt: skip
    return [cli_binary(), "monitor", "--nats-url", url, "--subject-prefix", store.subject_prefix,
            "--stream", store.stream, "--state-bucket", store.bucket, "--poll", poll,
            "--status-addr", addr, "--notify-log"]  # fmt: skip


def side_spawn(cmd: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("ab") as out:
        return subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                env=cli_env())  # fmt: skip


def side_get(url: str) -> tuple[int, float, float, int]:
    """(subjects listed, started, seconds, bytes) of one full GET /, blocking: it runs in a
    thread, so reading 20-30 MB does not slow the publisher's event loop.  Each row of
    either monitor's JSON has one allowed_window."""
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as resp:
        body = resp.read()
    return body.count(b'"allowed_window"'), started, time.perf_counter() - started, len(body)


def side_count(url: str) -> tuple[int, float, float, int]:
    """side_get's answer from our /metrics: the subjects known now (an O(1) gauge)."""
    started = time.perf_counter()
    with urllib.request.urlopen(url, timeout=60) as resp:
        body = resp.read()
    found = re.search(rb"^\w*tracked_subjects (\S+)$", body, re.M)
    if found is None:
        raise RuntimeError("no tracked_subjects gauge in /metrics")
    return int(float(found.group(1))), started, time.perf_counter() - started, len(body)


async def side_publish(nc: NATS, items: Iterable[tuple[str, bytes]], batch: int = 5000) -> None:
    """Core publishes (both tools' agents send so) with a flush every ``batch``."""
    for i, (subject, data) in enumerate(items, 1):
        await nc.publish(subject, data)
        if i % batch == 0:
            await nc.flush(timeout=30)
    await nc.flush(timeout=30)


@dataclass
class SideMonitor:
    """One monitor process under test, on a world of its own (stream, bucket, prefix)."""

    world: World
    proc: subprocess.Popen[bytes]
    status: str  # its status listener's base URL
    go: bool


@contextlib.asynccontextmanager
async def side_monitor(
    nc: NATS, url: str, sizes: Sizes, logs: Path, go_monitor: str | None
) -> AsyncIterator[SideMonitor]:
    """Start either monitor on a fresh world, wait until it answers and sits idle; stop
    it and delete what it used on the way out."""
    js, world = nc.jetstream(), World.new(url, "go" if go_monitor else "sd")
    if go_monitor:  # the Go monitor creates nothing: the stream is ours, as in a mixed fleet
        await ensure_stream(js, world.store)
    port = free_port()
    status = f"http://127.0.0.1:{port}"
    log_path = logs / f"side-{world.unique}.log"
    proc = side_spawn(side_command(go_monitor, url, world.store, port, sizes.side_poll_s), log_path)
    try:
        async with aiohttp.ClientSession() as session:

            async def up() -> bool:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                    path = "/" if go_monitor else "/readyz"  # the Go monitor has no probes
                    async with session.get(status + path) as resp:
                        return resp.status == 200
                if proc.poll() is not None:
                    raise RuntimeError(f"monitor exited: {log_path.read_text()[-1500:]}")
                return False

            await eventually(up, 60, "the monitor's status listener", every=0.05)
        await side_quiet_since(proc.pid, 30)
        await machine_quiet(sizes.side_quiet_s)
        yield SideMonitor(world, proc, status, bool(go_monitor))
    finally:
        stop_process(proc)
        with contextlib.suppress(Exception):
            await js.delete_stream(world.store.stream)
        if not go_monitor:
            with contextlib.suppress(Exception):
                await js.delete_key_value(world.store.bucket)


@dataclass(frozen=True)
class Listing:
    """One burst: N new subjects published twice, until the monitor lists them all."""

    started: float  # perf_counter of the first publish
    listed: float  # perf_counter when the request that first saw all N was sent
    published_s: float  # both rounds, from the first publish
    polls: int
    last_poll_s: float  # that request's own time

    @property
    def listed_s(self) -> float:
        return self.listed - self.started


async def side_listing(nc: NATS, m: SideMonitor, n: int) -> Listing:
    """Publish ``n`` new subjects twice at ``m`` and ask it until it lists them all."""
    m.world.subjects = [m.world.subject("new", i) for i in range(n)]
    rounds = [  # encoded up front: the clock is for the monitor, not our encoder
        [(s, beat_payload(s, HOUR_NS, datetime.now(UTC))) for s in m.world.subjects]
        for _ in range(2)
    ]
    started = time.perf_counter()

    async def publish_twice() -> float:
        for beats in rounds:
            await side_publish(nc, beats)
        return time.perf_counter() - started

    publishing = asyncio.create_task(publish_twice())
    # Each tool asked the cheapest way it has.  The Go monitor has only GET / (it answers
    # on another core).  Ours is asked for the last subject (a literal ?subject= is one
    # lookup): the tap admits new subjects in the order one connection published them, so
    # once the last is listed every one is; its /metrics count then says so, and a full
    # GET / confirms it.  (A count on /metrics at every ask would start a tally of every
    # subject each second, and a full GET / costs ours ~0.1 s on its event loop.)
    probe = f"{m.status}/?subject={m.world.subjects[-1]}"
    polls, last = 0, (0, 0.0, 0.0, 0)
    while True:
        if time.perf_counter() - started > 300:
            raise TimeoutError(f"the monitor had not listed all {n} subjects after 300s")
        polls += 1
        if m.go:
            last = await asyncio.to_thread(side_get, m.status + "/")
            if last[0] >= n:
                break
            continue
        last = await asyncio.to_thread(side_get, probe)
        if last[0] == 1 and (await asyncio.to_thread(side_count, m.status + "/metrics"))[0] >= n:
            break
        await asyncio.sleep(0.02)  # the probe takes a millisecond: leave the monitor alone
    if not m.go and (got := (await asyncio.to_thread(side_get, m.status + "/"))[0]) < n:
        raise RuntimeError(f"/metrics counted {n} subjects, GET / listed {got}")
    published_s = await publishing
    stored = await stream_count(nc.jetstream(), m.world.store.stream)  # core publishes
    if stored != n:
        raise RuntimeError(f"the stream holds {stored} of {n} subjects")
    # The answer reflects the monitor when the request arrived: the previous one,
    # started earlier, did not count them all.
    return Listing(started, last[1], published_s, polls, last[2])


async def side_run(
    nc: NATS, url: str, sizes: Sizes, logs: Path, go_monitor: str | None
) -> dict[str, Any]:
    """Start the monitor, publish N new subjects twice, and time what it does with them."""
    n = sizes.subjects
    async with side_monitor(nc, url, sizes, logs, go_monitor) as m:
        proc, status = m.proc, m.status
        rss0 = side_rss(proc.pid)
        burst = await side_listing(nc, m, n)
        started, listed = burst.started, burst.listed
        quiet, idle = await side_settled(proc.pid, sizes.side_idle_s, started + 300)
        cpu_settled, writes_done = idle, quiet  # the Go monitor writes nothing
        if not go_monitor:  # nothing due: wait out the spread checkpoints of 2nd beats
            writes_done = await side_writes_stopped(status, started + 900, sizes.side_idle_s / 2)
            cpu0, t0 = side_cpu_s(proc.pid), time.perf_counter()
            await asyncio.sleep(sizes.side_idle_s)
            idle = (side_cpu_s(proc.pid) - cpu0) / (time.perf_counter() - t0)
        rss1 = side_rss(proc.pid)
        gets = [await asyncio.to_thread(side_get, status + "/") for _ in range(3)]
    writes_after = None if go_monitor else round(writes_done - listed, 2)
    return {
        "listed_s": burst.listed_s,
        "busy_after_s": max(0.0, quiet - listed),
        "rss_per_subject_bytes": (rss1 - rss0) / n,
        "idle_cpu": idle,
        "get_s": statistics.median(g[2] for g in gets),
        "details": {"subjects": n, "published_twice_s": round(burst.published_s, 3),
                    "stream_messages": n, "status_polls": burst.polls,
                    "listed_via": "GET /" if go_monitor else
                    "GET /?subject=<the last>, /metrics, then GET /",
                    "cpu_when_settled": round(cpu_settled, 4),
                    "kv_writes_done_after_s": writes_after,
                    "last_poll_s": round(burst.last_poll_s, 3), "rss_before": rss0,
                    "rss_after": rss1,
                    "get_s_each": [round(g[2], 3) for g in gets], "get_bytes": gets[0][3],
                    "listed_by_last_get": gets[-1][0], "idle_window_s": sizes.side_idle_s,
                    "poll_s": sizes.side_poll_s, "loadavg": os.getloadavg()},
    }  # fmt: skip


async def side_bursts(
    nc: NATS, url: str, sizes: Sizes, logs: Path, go_monitor: str | None
) -> list[tuple[bool, Listing]]:
    """``sizes.side_bursts`` more bursts for each tool, taking turns (ours, Go, ours, ...):
    the listing is a second's race that the machine's other work shifts by tenths, so
    the figure is the median of several, both tools measured in the same stretch."""
    out: list[tuple[bool, Listing]] = []
    for _ in range(sizes.side_bursts):
        for tool in (None, go_monitor) if go_monitor else (None,):
            async with side_monitor(nc, url, sizes, logs, tool) as m:
                out.append((m.go, await side_listing(nc, m, sizes.subjects)))
    return out


SIDE_ROWS = (  # (key, figure, unit)
    ("listed_s", "first publish -> GET / lists all (median of bursts)", "s"),
    ("busy_after_s", "busy after that", "s"),
    ("rss_per_subject_bytes", "RSS per subject, settled", "B"),
    ("idle_cpu", "idle CPU, all healthy, nothing due", "s/s"),
    ("get_s", "one GET / (median of 3)", "s"),
)
# Issue 12's targets, ours against the Go tool's figure: at most this ratio.
SIDE_RATIOS = {"listed_s": 1.0, "rss_per_subject_bytes": 0.5, "idle_cpu": 0.2, "get_s": 1.0}


def side_results(ours: dict[str, Any], go: dict[str, Any] | None, go_error: str) -> list[Result]:
    d = ours["details"]
    busy_notes = (f"{d['subjects']} new subjects; then {d['cpu_when_settled']:g} s/s CPU, "
                  f"last KV write {d['kv_writes_done_after_s']:g}s after listed")  # fmt: skip
    results = []
    for key, figure, unit in SIDE_ROWS:
        label = f"side by side: {figure}"
        if key == "busy_after_s":
            results.append(at_most(f"side_{key}", label, ours[key], 5.0, unit, notes=busy_notes,
                                   details=d))  # fmt: skip
        else:
            results.append(info(f"side_{key}", label, ours[key], unit, details=d))
        if go is None and not go_error:
            continue
        go_key = f"go_side_{key}"
        if go is None:
            results.append(Result(go_key, f"{label} (Go)", None, unit, "", None, error=go_error))
            continue
        results.append(info(go_key, f"{label} (Go)", go[key], unit, details=go["details"]))
        limit = SIDE_RATIOS.get(key)
        if limit is not None and go[key] > 0:
            results.append(at_most(f"side_{key}_vs_go", f"{label}: ours / Go",
                                   ours[key] / go[key], limit, "x"))  # fmt: skip
    return results


async def bench_side(
    nc: NATS, url: str, sizes: Sizes, logs: Path, go_monitor: str | None
) -> list[Result]:
    """Figure side: ours, then (given a binary) the Go tool's monitor, one after the
    other; then more bursts, taking turns, whose listings join the first one's."""
    ours = await side_run(nc, url, sizes, logs, None)
    go, go_error = None, ""
    if go_monitor:
        try:
            go = await side_run(nc, url, sizes, logs, go_monitor)
        except Exception as e:  # keep our figures; say why the Go ones are missing
            log.error("the Go monitor's run failed:\n%s", traceback.format_exc())
            go_error = f"{type(e).__name__}: {e}"
    bursts = await side_bursts(nc, url, sizes, logs, go_monitor if go is not None else None)
    for run, is_go in ((ours, False), (go, True)):
        if run is not None:
            with_listing(run, [b.listed_s for g, b in bursts if g == is_go])
    return side_results(ours, go, go_error)


def with_listing(run: dict[str, Any], more: list[float]) -> None:
    """A run's listing figure becomes the median of its own and ``more`` bursts'."""
    each = [run["listed_s"], *more]
    run["details"]["listed_s_each"] = [round(x, 3) for x in each]
    run["listed_s"] = statistics.median(each)


# ----- the run ----------------------------------------------------------------------------------


async def guarded(
    name: str, work: Awaitable[list[Result]], covers: Sequence[str] = ()
) -> list[Result]:
    """A figure's results; a failure becomes unmeasured rows instead of ending the run."""
    started = time.perf_counter()
    try:
        results = await work
    except Exception as e:
        log.error("figure %s failed:\n%s", name, traceback.format_exc())
        results = [
            Result(key, group, None, "", "", None, error=f"{type(e).__name__}: {e}")
            for group in (covers or [name])
            for key in FIGURES[group]
        ]
    print(f"  {name}: {time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)
    return results


async def run_all(
    sizes: Sizes,
    only: set[str],
    tmp: Path,
    go_monitor: str | None = None,
    beat_every_s: float | None = None,
) -> list[Result]:
    server = NatsServer(tmp / "store").start()
    results: list[Result] = []
    nc = await connect(ConnectOptions(servers=(server.url,), name="bench"))
    try:
        js = nc.jetstream()
        world = World.new(server.url, "big")
        if only & {"ingest", "detect", "evaluate", "memory", "startup", "integrity", "page"}:
            started = time.perf_counter()
            await world.create(js)
            await fill_world(js, world, sizes.subjects, HOUR_NS, records=True)
            print(f"  setup: {len(world.subjects)} beats and records in "
                  f"{time.perf_counter() - started:.1f}s", file=sys.stderr, flush=True)  # fmt: skip
        if "ingest" in only:
            results += await guarded("ingest", bench_ingest(nc, world, sizes))
        big = ("startup", "detect", "evaluate", "page", "integrity")
        if only & set(big):
            groups = [g for g in big if g in only]
            results += await guarded("startup", bench_big_monitor(nc, world, sizes, only), groups)
        if "memory" in only:
            results += await guarded("memory", bench_memory(world))
        if "kv" in only:
            results += await guarded("kv", bench_kv(nc, server.url, sizes))
        if "failover" in only:
            results += await guarded("failover", bench_failover(server.url, sizes, tmp))
        if "fresh" in only:
            results += await guarded("fresh", bench_fresh(server.url, sizes, tmp))
        if "scale" in only:
            scale = ScaleSizes.of(sizes.subjects, beat_every_s)
            results += await guarded("scale", bench_scale(server.url, scale, tmp))
        if "side" in only:
            results += await guarded("side", bench_side(nc, server.url, sizes, tmp, go_monitor))
    finally:
        await close_connection(nc)
        server.stop()
        # Why a client was cut off (slow consumer, stale connection), for the record.
        cut = [line for line in server.log if "Slow Consumer" in line or "Stale" in line]
        if cut:
            print(f"  nats-server cut clients off {len(cut)} time(s), last:\n    "
                  + "\n    ".join(cut[-5:]), file=sys.stderr, flush=True)  # fmt: skip
    return results


def fmt_value(r: Result) -> str:
    if r.value is None:
        return "n/a"
    v = r.value
    text = f"{v:,.0f}" if abs(v) >= 1000 else (f"{v:.3g}" if abs(v) < 10 else f"{v:.1f}")
    return f"{text} {r.unit}".strip()


def table(results: list[Result]) -> str:
    rows = [("figure", "value", "target", "result", "notes")]
    for r in results:
        verdict = "ERROR" if r.error else ("-" if r.passed is None else
                                           ("pass" if r.passed else "FAIL"))  # fmt: skip
        target = f"{r.target} {r.unit}".strip() if r.target else ""
        rows.append((r.figure, fmt_value(r), target, verdict, r.error or r.notes))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = []
    for i, row in enumerate(rows):
        cells = [c.ljust(w) for c, w in zip(row[:4], widths, strict=True)]
        lines.append("  ".join([*cells, row[4]]).rstrip())
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="small N: a smoke run in seconds")
    p.add_argument("--out", default="bench-results.json", help="JSON results file")
    p.add_argument("--only", default="", help=f"comma-separated subset of {', '.join(FIGURES)}")
    p.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    p.add_argument(
        "--subjects",
        type=int,
        default=0,
        metavar="N",
        help="measure one replica watching N beating subjects instead (figure 9: "
        "memory, start-up, takeover, KV writes/s, alert delay); e.g. 1000000",
    )
    p.add_argument(
        "--beat-every",
        type=float,
        default=0.0,
        metavar="SECONDS",
        help="with --subjects: how often each subject beats (default 60; 1M at 60 s is "
        "16.7k beats a second)",
    )
    p.add_argument(
        "--memory-child",
        nargs=4,
        metavar=("URL", "STREAM", "BUCKET", "PREFIX"),
        help=argparse.SUPPRESS,
    )
    p.add_argument("--go-monitor", metavar="PATH",
                   help="add the figure side: ours, then this binary of the Go tool's "
                        "monitor (github.com/venkytv/nats-heartbeat cmd/monitor), measured "
                        "alike; the bench only runs it, build it yourself; --only side for "
                        "just that")  # fmt: skip
    p.add_argument("--beat-child", nargs=4, metavar=("URL", "PREFIX", "N", "INTERVAL"),
                   help=argparse.SUPPRESS)  # fmt: skip
    args = p.parse_args(argv)
    if args.memory_child:
        print(json.dumps(asyncio.run(memory_child(*args.memory_child))))
        return 0
    if args.beat_child:
        url, prefix, count, interval = args.beat_child
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(beat_child(url, prefix, int(count), float(interval)))
        return 0
    if args.beat_every < 0 or (args.beat_every and not args.subjects):
        p.error("--beat-every takes positive seconds and goes with --subjects")
    if args.subjects < 0 or (args.subjects and (args.quick or args.only)):
        p.error("--subjects takes a positive N and goes without --quick and --only")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: "
                        "%(message)s")  # fmt: skip
    if args.subjects:
        only, sizes, mode = (
            {"scale"},
            Sizes(subjects=args.subjects),
            f"subjects-{args.subjects}",
        )
    else:
        only = set(args.only.split(",")) - {""} if args.only else set(FIGURES) - SCALE_ONLY
        unknown = only - set(FIGURES)
        if unknown:
            p.error(f"unknown figure(s): {', '.join(sorted(unknown))}")
        sizes = QUICK if args.quick else FULL
        mode = "quick" if args.quick else "full"
    if args.go_monitor is not None:
        if not os.access(args.go_monitor, os.X_OK) or os.path.isdir(args.go_monitor):
            p.error(f"--go-monitor: {args.go_monitor} is not an executable file")
        only.add("side")
    print(f"==> nats-heartbeat bench ({mode}): {', '.join(sorted(only))}", file=sys.stderr)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="nats-heartbeat-bench-") as tmp:
        results = asyncio.run(
            run_all(sizes, only, Path(tmp), args.go_monitor, args.beat_every or None)
        )
    elapsed = time.perf_counter() - started
    print(table(results))
    measured = [r for r in results if r.passed is not None]
    errors = [r for r in results if r.error]
    missed = [r for r in measured if not r.passed]
    print(f"\n{len(measured) - len(missed)}/{len(measured)} targets met, {len(errors)} error(s), "
          f"{elapsed:.0f}s")  # fmt: skip
    doc = {
        "mode": mode,
        "finished_at": datetime.now(UTC).isoformat(),
        "seconds": round(elapsed, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "platform": platform.platform()},
        "sizes": asdict(sizes),
        "figures": {r.key: asdict(r) for r in results},
        "targets_met": not missed,
    }  # fmt: skip
    Path(args.out).write_text(json.dumps(doc, indent=2, default=str) + "\n")
    print(f"results written to {args.out}")
    if errors:
        return 2
    return 1 if (args.strict and missed) else 0


if __name__ == "__main__":
    sys.exit(main())
