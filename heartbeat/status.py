"""What a replica serves on its status listener: ``GET /`` and the probes."""

from __future__ import annotations

import functools
import hmac
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, cast

import msgspec
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from heartbeat.durations import SECOND, format_duration_ns
from heartbeat.engine import Health, Record, health, is_late, miss_count
from heartbeat.jobrules import next_scheduled
from heartbeat.ratelog import RateLog
from heartbeat.routing import Router, matches, valid_pattern
from heartbeat.status_schema import StatusReport, SubjectStatus, encode_status
from heartbeat.subjects import Subjects, Track
from heartbeat.text import ELLIPSIS, for_log, neutral

log = logging.getLogger(__name__)
BAD_REQUEST_LOG_EVERY_S = 10.0
OUTPUT_STATUS = 200  # characters of a run's output tail in the status JSON (its end)

# Intervals and windows repeat across subjects: format each once.
_duration_text = functools.lru_cache(maxsize=4096)(format_duration_ns)


@dataclass(frozen=True)
class Filter:
    """Which subjects a status answer lists: by state, by subject pattern, at most
    ``limit`` (in subject order)."""

    state: Health | None = None
    pattern: str | None = None
    limit: int | None = None

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Filter:
        """From ``?state=alert|late|ok&subject=<pattern>&limit=N``; ValueError if bad."""
        unknown = set(query) - {"state", "subject", "limit"}
        if unknown:
            raise ValueError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
        state = query.get("state")
        if state is not None and state not in set(Health):
            raise ValueError(f"state must be one of {', '.join(Health)}, not {state[:40]!r}")
        pattern = query.get("subject")
        if pattern is not None and (why := valid_pattern(pattern)) is not None:
            raise ValueError(f"subject pattern {pattern[:80]!r} {why}")
        limit = query.get("limit")
        if limit is not None and not (limit.isdigit() and 0 < int(limit) <= 10_000_000):
            raise ValueError(f"limit must be a positive integer, not {limit[:40]!r}")
        return cls(
            Health(state) if state else None, pattern, int(limit) if limit is not None else None
        )

    def keeps(self, track: Track, now: float) -> bool:
        if self.pattern is not None and not matches(self.pattern, track.subject):
            return False
        if self.state is None:
            return True
        rec = track.record
        if self.state is Health.ALERT:  # only a committed record alerts: no view needed
            return rec is not None and health(rec, now) is Health.ALERT
        return health(track.view(), now) is self.state


def subject_status(cur: Record, now: float, *, unrouted: bool = False) -> SubjectStatus:
    """One row of the status report (``cur``: the subject's current view), as the Go
    monitor computes it; ``unrouted``: no channel hears of it."""
    subject = cur.subject
    window_ns = cur.window_ns
    elapsed = now - cur.last_seen
    missing = is_late(cur, now)
    fmt = _duration_text
    row = SubjectStatus(
        subject=subject,
        description=cur.description or subject,
        host=cur.host or None,
        last_seen=datetime.fromtimestamp(cur.last_seen, UTC) if cur.last_seen else None,
        interval=fmt(cur.interval_ns),
        grace=fmt(cur.grace_ns) if cur.grace_ns else None,
        allowed_window=fmt(window_ns),
        missing=missing,
        miss_for=format_duration_ns(round(elapsed * SECOND)) if missing else None,
        miss_count=miss_count(cur, now) if missing else None,
        alert_active=cur.alert_active,
        unrouted=True if unrouted else None,
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
    router: Router | None = None,
    only: Filter | None = None,
) -> StatusReport:
    literal = only is not None and only.pattern is not None and _literal(only.pattern)
    if literal and only is not None and only.pattern and isinstance(tracks, Subjects):
        one = tracks.get(only.pattern)  # one subject: a lookup, not a scan of them all
        tracks = [] if one is None else [one]
    if only is not None and only.state is Health.ALERT:
        # health()'s ALERT rule inline: a pass over 100k subjects in milliseconds.
        tracks = [
            t
            for t in tracks
            if (r := t.record) is not None
            and (r.alert_active or (r.job is not None and r.job.alert))
        ]
    if only is not None and (only.state is not None or only.pattern is not None):
        tracks = [t for t in tracks if only.keeps(t, now)]
    chosen = sorted(tracks, key=_subject)
    if only is not None and only.limit is not None:
        chosen = chosen[: only.limit]
    rows = [
        subject_status(
            t.view(), now, unrouted=router is not None and router.route(t.subject).unrouted
        )
        for t in chosen
    ]
    return StatusReport(
        observed_at=datetime.fromtimestamp(now, UTC),
        subjects=rows,
        monitor=monitor,
        leader=leader,
        leader_id=leader_id,
    )


def _literal(pattern: str) -> bool:
    return not any(tok in ("*", ">") for tok in pattern.split("."))


def _subject(t: Track) -> str:
    return t.subject


class StatusSource(Protocol):
    """What the status server needs from a monitor."""

    def report(self, only: Filter | None = None) -> StatusReport: ...

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
        try:
            only = Filter.parse(request.query)
        except ValueError as e:
            return web.Response(status=400, text=f"{e}\n")
        body = encode_status(source.report(only))
        log.debug("status report in %.1f ms", (time.perf_counter() - started) * 1000)
        return web.Response(body=body, content_type="application/json")

    async def healthz(request: web.Request) -> web.Response:
        ok, why = source.healthy()
        return web.Response(status=200 if ok else 503, text=why + "\n")

    async def readyz(request: web.Request) -> web.Response:
        ok, why = source.ready()
        return web.Response(status=200 if ok else 503, text=why + "\n")

    app = web.Application(middlewares=[auth])
    request_errors(app)
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


class RequestErrors(logging.LoggerAdapter):  # type: ignore[type-arg]
    """The logger aiohttp's server gets for our listener.

    aiohttp logs every malformed request (bad request line, method or version,
    oversized headers, garbage bytes) with a traceback at ERROR.  Here such a request
    is counted by kind in ``counts`` and logged as one short line at most once per
    10 s; anything else (a bug in a handler) is logged as aiohttp meant it.
    """

    def __init__(
        self,
        logger: logging.Logger,
        *,
        clock: Callable[[], float] = time.monotonic,
        every_s: float = BAD_REQUEST_LOG_EVERY_S,
    ) -> None:
        super().__init__(logger, {})
        self.counts: Counter[str] = Counter()
        self.ratelog = RateLog(logger, every_s=every_s, clock=clock, what="malformed requests")

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info")
        if isinstance(exc, HttpProcessingError):
            kind = type(exc).__name__
            self.counts[kind] += 1
            self.ratelog.log(
                "malformed",
                logging.WARNING,
                "malformed HTTP request from %s (%s, HTTP %s): %s",
                for_log(args[0] if args else "?", 64),
                kind,
                exc.code,
                for_log(exc.message, 160),
            )
            return
        super().log(level, msg, *args, **kwargs)

    def process(
        self, msg: Any, kwargs: MutableMapping[str, Any]
    ) -> tuple[Any, MutableMapping[str, Any]]:
        return msg, kwargs


REQUEST_ERRORS = web.AppKey("request_errors", RequestErrors)


def request_errors(app: web.Application) -> RequestErrors:
    """Where ``app``'s listener counts malformed requests (``.counts``, by kind)."""
    if REQUEST_ERRORS not in app:
        app[REQUEST_ERRORS] = RequestErrors(log)
    return app[REQUEST_ERRORS]


async def serve(app: web.Application, addr: str) -> web.AppRunner:
    """Start ``app`` on ``host:port`` (port 0 picks a free one); return the runner.

    Malformed requests are answered 400 by aiohttp and counted in
    ``request_errors(app).counts``, logged at a bounded rate, never with a traceback.
    """
    host, _, port = addr.rpartition(":")
    if host.startswith("[") and host.endswith("]"):  # [::1]:8080
        host = host[1:-1]
    runner = web.AppRunner(app, access_log=None, logger=cast(logging.Logger, request_errors(app)))
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
