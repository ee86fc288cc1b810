"""An alert storm against the real `nats-heartbeat monitor`, on loopback.

Per N: a private nats-server, a webhook receiver keeping a ledger, one monitor process.
N subjects beat twice (interval 5s) and then all stop at once; the alert storm is
measured (commit via a KV watch, delivery via the ledger, lease, lateness, log lines,
RSS and CPU of the monitor), then the resolve storm, then SIGTERM mid-way through a
third storm.  Prints a table (one column per N) and writes JSON.  Exit 0; 2 when a
figure could not be measured.  GROUP_OVER / GROUP_WAIT are passed to the monitor.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg

from heartbeat.connection import ConnectOptions, close_connection, connect
from heartbeat.schema import Message, encode
from heartbeat.store import decode_record

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from tests.harness import NatsServer, cli_binary, cli_env, eventually, free_port  # noqa: E402

INTERVAL_S = 5.0
TOLERANCE_S = 1.0
PREFIX = "heartbeat.storm."
BUCKET = "HEARTBEAT_STATE"
STREAM = "HEARTBEATS"
PASS_ENV = ("GROUP_OVER", "GROUP_WAIT")
CLK_TCK = os.sysconf("SC_CLK_TCK")


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[max(0, math.ceil(q * len(s)) - 1)]


@dataclass
class Ledger:
    """Every POST the webhook got; group members count at the group's arrival."""

    posts: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)  # at, phase
    phase: str = "setup"

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.posts.append((time.time(), self.phase, json.loads(body)))
        return web.Response(text="{}")

    def told(self, phase: str) -> list[tuple[float, dict[str, Any]]]:
        out = []
        for at, ph, body in self.posts:
            if ph != phase:
                continue
            if body.get("event") == "group":
                out += [(at, m) for m in body.get("notifications", [])]
            else:
                out.append((at, body))
        return out

    def count(self, phase: str) -> int:
        return sum(1 for _, ph, _ in self.posts if ph == phase)


@dataclass
class Sample:
    at: float
    leader: float | None
    lease_changes: float | None
    rss_kb: int | None
    cpu_s: float | None


def proc_figures(pid: int) -> tuple[int | None, float | None]:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        rss = next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS"))
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return rss, (int(stat[11]) + int(stat[12])) / CLK_TCK
    except (OSError, StopIteration, IndexError, ValueError):
        return None, None


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


class Storm:
    """One N: server, receiver, monitor, publisher, sampler."""

    def __init__(self, n: int, poll: str, tmp: Path) -> None:
        self.n, self.poll, self.tmp = n, poll, tmp
        self.subjects = [f"{PREFIX}s{i}" for i in range(n)]
        self.ledger = Ledger()
        self.kv: list[tuple[float, str, bytes]] = []
        self.samples: list[Sample] = []
        self.scrape_errors = 0
        self.log_path = tmp / f"monitor-{n}.log"
        self.status_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.session: aiohttp.ClientSession | None = None
        self.out: dict[str, Any] = {"subjects": n, "poll": poll}

    # ----- plumbing ------------------------------------------------------------------
    async def get(self, path: str, limit_s: float = 5.0) -> bytes | None:
        assert self.session is not None
        try:
            url = f"http://127.0.0.1:{self.status_port}{path}"
            async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=limit_s)) as r:
                return await r.read() if r.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None

    async def sampler(self, stop: asyncio.Event) -> None:
        assert self.proc is not None
        while not stop.is_set():
            at = time.time()
            body = await self.get("/metrics", limit_s=2.0)
            text = body.decode() if body else ""
            if not body:
                self.scrape_errors += 1
            rss, cpu = proc_figures(self.proc.pid)
            self.samples.append(
                Sample(at, metric(text, "nats_heartbeat_leader"),
                       metric(text, "nats_heartbeat_lease_changes_total"), rss, cpu)
            )  # fmt: skip
            await asyncio.sleep(max(0.0, at + 0.5 - time.time()))

    async def on_kv(self, msg: Msg) -> None:
        self.kv.append((time.time(), msg.subject, msg.data))

    def committed(self, active: bool, since: float) -> dict[str, float]:
        """First KV write after ``since`` with alert_active == ``active``, per subject."""
        out: dict[str, float] = {}
        plen = len(f"$KV.{BUCKET}.")
        for at, subj, data in self.kv:
            key = subj[plen:]
            if at < since or key in out or not key.startswith(PREFIX) or not data:
                continue
            try:
                if decode_record(data).alert_active == active:
                    out[key] = at
            except Exception:  # a tombstone or foreign entry
                continue
        return out

    def log_lines(self) -> list[str]:
        return self.log_path.read_text(errors="replace").splitlines()

    async def publish(self, nc: NATS) -> float:
        now = datetime.now(UTC)
        for s in self.subjects:
            msg = Message(subject=s, interval=timedelta(seconds=INTERVAL_S), generated_at=now,
                          host="storm")  # fmt: skip
            await nc.publish(s, encode(msg))
        await nc.flush(timeout=60)
        return time.time()

    async def status(self) -> dict[str, Any] | None:
        body = await self.get("/", limit_s=30)
        return json.loads(body) if body else None

    def start_monitor(self, url: str, port: int) -> None:
        env = cli_env()
        env.update({k: os.environ[k] for k in PASS_ENV if k in os.environ})
        self.out["env"] = {k: os.environ[k] for k in PASS_ENV if k in os.environ}
        args = [
            cli_binary(), "monitor", "--nats-url", url, "--webhook-url",
            f"http://127.0.0.1:{port}/hook", "--poll", self.poll, "--tolerance", "1s",
            "--status-addr", f"127.0.0.1:{self.status_port}", "--replica-id", "storm-1",
            "--lease-ttl", "10s",
        ]  # fmt: skip
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=out, stderr=out, env=env
            )

    # ----- phases --------------------------------------------------------------------
    async def all_listed(self, last: float) -> dict[str, float] | None:
        st = await self.status()
        if not st:
            return None
        seen = {
            r["subject"]: datetime.fromisoformat(r["last_seen"]).timestamp()
            for r in st.get("subjects", [])
            if r["subject"].startswith(PREFIX) and r.get("last_seen")
        }
        if len(seen) < self.n or min(seen.values()) < last - 1.0:
            return None
        leads = metric((await self.get("/metrics") or b"").decode(), "nats_heartbeat_leader")
        return seen if leads == 1 else None

    def told_figures(self, phase: str, event: str, deadlines: dict[str, float], t0: float,
                     done: float) -> dict[str, Any]:  # fmt: skip
        told = [(at, b) for at, b in self.ledger.told(phase) if b.get("event") == event]
        per = Counter(b["subject"] for _, b in told)
        first: dict[str, float] = {}
        for at, b in told:
            first.setdefault(b["subject"], at)
        late = [first[s] - deadlines[s] for s in self.subjects if s in first]
        return {
            "told_all_s": round(max(first.values()) - t0, 3) if len(first) == self.n else None,
            "told": len(first),
            "missing": self.n - len([s for s in self.subjects if s in first]),
            "duplicates": sum(c - 1 for c in per.values() if c > 1),
            "posts": self.ledger.count(phase),
            "lateness_max_s": round(max(late), 3) if late else None,
            "lateness_p99_s": round(pct(late, 0.99), 3) if late else None,
            "phase_s": round(done - t0, 3),
        }

    def window(self, since: float, until: float) -> dict[str, Any]:
        s = [x for x in self.samples if since <= x.at <= until]
        leaders = [x.leader for x in s]
        changes = [x.lease_changes for x in s if x.lease_changes is not None]
        cpus = [x.cpu_s for x in s if x.cpu_s is not None]
        return {
            "lease_kept": bool(s)
            and all(v == 1 for v in leaders)
            and (not changes or max(changes) == min(changes)),
            "samples": len(s),
            "failed_scrapes": sum(1 for v in leaders if v is None),
            "rss_peak_mib": round(max((x.rss_kb or 0) for x in s) / 1024, 1) if s else None,
            "cpu_s": round(cpus[-1] - cpus[0], 2) if len(cpus) > 1 else None,
        }

    async def alert_storm(self, nc: NATS) -> dict[str, float]:
        await self.publish(nc)
        await asyncio.sleep(2.0)  # the protocol: a second beat 2 s later
        last = await self.publish(nc)
        seen = await eventually(lambda: self.all_listed(last), 60, "all subjects listed", 0.5)
        deadlines = {s: seen[s] + INTERVAL_S + TOLERANCE_S for s in self.subjects}
        t0 = min(deadlines.values())
        self.ledger.phase = "alert"
        lines0 = len(self.log_lines())
        limit = 120 + self.n / 50
        await eventually(lambda: len(self.committed(True, last)) >= self.n, limit,
                         "every alert committed", 0.25)  # fmt: skip
        commit = self.committed(True, last)
        await eventually(
            lambda: len({b["subject"] for _, b in self.ledger.told("alert")
                         if b.get("event") == "alert"}) >= self.n,
            limit, "every subject alerted", 0.25,
        )  # fmt: skip
        await asyncio.sleep(1.0)  # let stragglers (duplicates) land in this phase
        done = time.time()
        lines = self.log_lines()[lines0:]
        self.out["alert"] = {
            "committed_all_s": round(max(commit.values()) - t0, 3),
            **self.told_figures("alert", "alert", deadlines, t0, done),
            "log_lines": len(lines),
            "log_timeouts": sum(1 for x in lines if "timeout" in x.lower() or "timed out" in x),
            "log_excerpt": lines[:5] + (["...", *lines[-5:]] if len(lines) > 10 else lines[5:]),
            **self.window(t0 - 1, done),
        }
        return deadlines

    async def resolve_storm(self, nc: NATS) -> None:
        self.ledger.phase = "resolve"
        lines0 = len(self.log_lines())
        t0 = time.time()
        await self.publish(nc)
        limit = 120 + self.n / 50
        await eventually(
            lambda: len({b["subject"] for _, b in self.ledger.told("resolve")
                         if b.get("event") == "resolved"}) >= self.n,
            limit, "every subject resolved", 0.25,
        )  # fmt: skip
        await asyncio.sleep(1.0)
        done = time.time()
        commit = self.committed(False, t0)
        lines = self.log_lines()[lines0:]
        self.out["resolve"] = {
            "committed_all_s": round(max(commit.values()) - t0, 3)
            if len(commit) == self.n else None,
            **self.told_figures("resolve", "resolved", dict.fromkeys(self.subjects, t0), t0, done),
            "log_lines": len(lines),
            **self.window(t0, done),
        }  # fmt: skip

    async def term_mid_storm(self) -> None:
        """The subjects go missing again; SIGTERM once the first alert of it arrives."""
        assert self.proc is not None
        self.ledger.phase = "term"
        await eventually(lambda: self.ledger.count("term") > 0, 60, "a third storm", 0.05)
        signalled = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        proc = self.proc
        with contextlib.suppress(subprocess.TimeoutExpired):
            await asyncio.to_thread(proc.wait, 30)
        took = time.monotonic() - signalled
        code = self.proc.poll()
        if code is None:
            self.proc.kill()
            self.proc.wait(10)
        told = {b["subject"] for _, b in self.ledger.told("term") if b.get("event") == "alert"}
        self.out["sigterm"] = {
            "exit_s": round(took, 3),
            "exit_code": code,
            "told_before_exit": len(told),
            "log_tail": self.log_lines()[-5:],
        }

    async def run(self) -> dict[str, Any]:
        server = NatsServer(self.tmp / f"store-{self.n}").start()
        app = web.Application()
        app.router.add_post("/hook", self.ledger.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        stop = asyncio.Event()
        nc = await connect(ConnectOptions(servers=(server.url,), name="storm"))
        self.session = aiohttp.ClientSession()
        sampler: asyncio.Task[None] | None = None
        try:
            self.start_monitor(server.url, port)
            await eventually(lambda: self.get("/readyz"), 60, "monitor ready", 0.2)
            sampler = asyncio.create_task(self.sampler(stop))
            await nc.jetstream().subscribe(
                f"$KV.{BUCKET}.>", cb=self.on_kv, ordered_consumer=True,
                pending_msgs_limit=-1, pending_bytes_limit=-1,
            )  # fmt: skip
            await self.alert_storm(nc)
            await self.resolve_storm(nc)
            await self.term_mid_storm()
        except Exception as e:
            self.out["error"] = f"{type(e).__name__}: {e}"
            traceback.print_exc()
            self.out["log_tail"] = self.log_lines()[-20:]
        finally:
            stop.set()
            if sampler is not None:
                await sampler
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(10)
            await self.session.close()
            await close_connection(nc)
            await runner.cleanup()
            server.stop()
        return self.out


ROWS: list[tuple[str, str, str]] = [
    ("alert", "committed_all_s", "alert: all committed after 1st deadline (s)"),
    ("alert", "told_all_s", "alert: all told after 1st deadline (s)"),
    ("alert", "posts", "alert: webhook POSTs"),
    ("alert", "missing", "alert: subjects never told"),
    ("alert", "duplicates", "alert: duplicate tellings"),
    ("alert", "lateness_p99_s", "alert: lateness p99 (s)"),
    ("alert", "lateness_max_s", "alert: lateness max (s)"),
    ("alert", "lease_kept", "alert: lease kept"),
    ("alert", "failed_scrapes", "alert: failed /metrics scrapes"),
    ("alert", "log_lines", "alert: monitor log lines"),
    ("alert", "log_timeouts", "alert: log lines about timeouts"),
    ("alert", "rss_peak_mib", "alert: monitor RSS peak (MiB)"),
    ("alert", "cpu_s", "alert: monitor CPU (s)"),
    ("resolve", "committed_all_s", "resolve: all committed after publish (s)"),
    ("resolve", "told_all_s", "resolve: all told after publish (s)"),
    ("resolve", "posts", "resolve: webhook POSTs"),
    ("resolve", "missing", "resolve: subjects never told"),
    ("resolve", "duplicates", "resolve: duplicate tellings"),
    ("resolve", "lease_kept", "resolve: lease kept"),
    ("resolve", "cpu_s", "resolve: monitor CPU (s)"),
    ("sigterm", "exit_s", "SIGTERM mid-storm: exit (s)"),
    ("sigterm", "exit_code", "SIGTERM mid-storm: exit code"),
]


def table(runs: list[dict[str, Any]]) -> str:
    head = ["figure", *(f"N={r['subjects']}" for r in runs)]
    rows = [head]
    for phase, key, label in ROWS:
        rows.append([label, *(str(r.get(phase, {}).get(key, "n/a")) for r in runs)])
    widths = [max(len(row[i]) for row in rows) for i in range(len(head))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows
    )


def unmeasured(run: dict[str, Any]) -> bool:
    return "error" in run or any(run.get(p, {}).get(k) is None for p, k, _ in ROWS)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--subjects", type=int, action="append", required=True, help="N; repeatable")
    p.add_argument("--poll", default="1s", help="the monitor's --poll")
    p.add_argument("--out", default="storm-results.json", help="JSON results file")
    args = p.parse_args(argv)
    runs = []
    with tempfile.TemporaryDirectory(prefix="nats-heartbeat-storm-") as tmp:
        for n in args.subjects:
            started = time.perf_counter()
            print(f"==> storm N={n}", file=sys.stderr, flush=True)
            run = asyncio.run(Storm(n, args.poll, Path(tmp)).run())
            run["seconds"] = round(time.perf_counter() - started, 1)
            runs.append(run)
    print(table(runs))
    doc = {"finished_at": datetime.now(UTC).isoformat(), "cpus": os.cpu_count(), "runs": runs}
    Path(args.out).write_text(json.dumps(doc, indent=2) + "\n")
    print(f"results written to {args.out}")
    return 2 if any(unmeasured(r) for r in runs) else 0


if __name__ == "__main__":
    sys.exit(main())
