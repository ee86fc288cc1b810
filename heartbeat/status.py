"""What a replica serves on its status listener: ``GET /`` and the probes."""

from __future__ import annotations

import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from datetime import UTC, datetime
from typing import Protocol

import msgspec
from aiohttp import web

from heartbeat.durations import SECOND, format_duration_ns
from heartbeat.engine import Record, is_late, miss_count
from heartbeat.jobrules import next_scheduled
from heartbeat.status_schema import StatusReport, SubjectStatus, encode_status
from heartbeat.subjects import Track
from heartbeat.text import ELLIPSIS, neutral

log = logging.getLogger(__name__)
OUTPUT_STATUS = 200  # characters of a run's output tail in the status JSON (its end)


def subject_status(cur: Record, now: float) -> SubjectStatus:
    """One row of the status report (``cur``: the subject's current view), as the Go
    monitor computes it."""
    subject = cur.subject
    window_ns = cur.window_ns
    elapsed = now - cur.last_seen
    missing = is_late(cur, now)
    row = SubjectStatus(
        subject=subject,
        description=cur.description or subject,
        host=cur.host or None,
        last_seen=datetime.fromtimestamp(cur.last_seen, UTC) if cur.last_seen else None,
        interval=format_duration_ns(cur.interval_ns),
        grace=format_duration_ns(cur.grace_ns) if cur.grace_ns else None,
        allowed_window=format_duration_ns(window_ns),
        missing=missing,
        miss_for=format_duration_ns(round(elapsed * SECOND)) if missing else None,
        miss_count=miss_count(cur, now) if missing else None,
        alert_active=cur.alert_active,
    )
    return row if cur.job is None else _with_job(row, cur)


def _when(ts: float | None) -> datetime | None:
    return None if ts is None else datetime.fromtimestamp(ts, UTC)


def _with_job(row: SubjectStatus, cur: Record) -> SubjectStatus:
    """``row`` with the job's last run, its job alert and its next scheduled run."""
    job = cur.job
    assert job is not None
    output = neutral(job.output).strip()
    if len(output) > OUTPUT_STATUS:
        output = ELLIPSIS + output[-(OUTPUT_STATUS - 1) :]
    return msgspec.structs.replace(
        row,
        job_alert=job.alert or None,
        last_run="running" if job.running else (job.last_result or None),
        exit_code=job.exit_code,
        run_duration=None if job.duration_ns is None else format_duration_ns(job.duration_ns),
        output=output or None,
        running_since=_when(job.running_since),
        schedule=job.schedule or None,
        timezone=job.timezone or None,
        next_run_due=_when(next_scheduled(job, cur.last_seen, cur.interval_ns)),
    )


def build_report(
    tracks: Iterable[Track],
    now: float,
    *,
    monitor: str | None = None,
    leader: bool | None = None,
    leader_id: str | None = None,
) -> StatusReport:
    rows = [subject_status(t.view(), now) for t in sorted(tracks, key=lambda t: t.subject)]
    return StatusReport(
        observed_at=datetime.fromtimestamp(now, UTC),
        subjects=rows,
        monitor=monitor,
        leader=leader,
        leader_id=leader_id,
    )


class StatusSource(Protocol):
    """What the status server needs from a monitor."""

    def report(self) -> StatusReport: ...

    def healthy(self) -> tuple[bool, str]: ...

    def ready(self) -> tuple[bool, str]: ...


PROBES = ("/healthz", "/readyz")
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def make_app(
    source: StatusSource,
    *,
    metrics: Callable[[], bytes] | None = None,
    token: str = "",
) -> web.Application:
    """``GET /`` status JSON, ``/healthz``, ``/readyz`` and (given) ``/metrics``.

    With ``token``, everything but the probes needs ``Authorization: Bearer <token>``.
    """

    @web.middleware
    async def auth(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        if token and request.path not in PROBES:
            given = request.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                return web.Response(
                    status=401, text="unauthorized\n", headers={"WWW-Authenticate": "Bearer"}
                )
        return await handler(request)

    async def index(request: web.Request) -> web.Response:
        started = time.perf_counter()
        body = encode_status(source.report())
        log.debug("status report in %.1f ms", (time.perf_counter() - started) * 1000)
        return web.Response(body=body, content_type="application/json")

    async def healthz(request: web.Request) -> web.Response:
        ok, why = source.healthy()
        return web.Response(status=200 if ok else 503, text=why + "\n")

    async def readyz(request: web.Request) -> web.Response:
        ok, why = source.ready()
        return web.Response(status=200 if ok else 503, text=why + "\n")

    app = web.Application(middlewares=[auth])
    app.router.add_get("/", index)
    app.router.add_get("/status", index)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    if metrics is not None:
        render = metrics

        async def metrics_handler(request: web.Request) -> web.Response:
            return web.Response(body=render(), headers={"Content-Type": METRICS_TYPE})

        app.router.add_get("/metrics", metrics_handler)
    return app


async def serve(app: web.Application, addr: str) -> web.AppRunner:
    """Start ``app`` on ``host:port`` (port 0 picks a free one); return the runner."""
    host, _, port = addr.rpartition(":")
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host or "0.0.0.0", int(port))
    await site.start()
    return runner


def bound_port(runner: web.AppRunner) -> int:
    for site in runner.sites:
        server = getattr(site, "_server", None)
        if server is not None and server.sockets:
            return int(server.sockets[0].getsockname()[1])
    raise RuntimeError("status server is not listening")
