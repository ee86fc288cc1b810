"""What a replica serves on its status listener: ``GET /`` and the probes."""

from __future__ import annotations

import functools
import heapq
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

from heartbeat import statuspage
from heartbeat.durations import SECOND, format_duration_ns, window_of
from heartbeat.engine import (
    Beat,
    Health,
    Record,
    health,
    is_late,
    miss_count,
    misses,
    silent_past,
)
from heartbeat.errors import HeartbeatError
from heartbeat.history import Event, HistoryQuery, encode_events
from heartbeat.jobrules import next_scheduled
from heartbeat.quiet import LOUD, Hush, QuietKind, never_quiet
from heartbeat.ratelog import RateLog
from heartbeat.routing import Router, matches, valid_pattern
from heartbeat.status_schema import (
    AwareRows,
    SilenceStatus,
    StatusReport,
    SubjectStatus,
    encode_status,
)
from heartbeat.subjects import Subjects, Track
from heartbeat.text import ELLIPSIS, for_log, neutral

log = logging.getLogger(__name__)
BAD_REQUEST_LOG_EVERY_S = 10.0
OUTPUT_STATUS = 200  # characters of a run's output tail in the status JSON (its end)

HushFor = Callable[[str, float], Hush]  # what keeps a subject quiet (heartbeat.quiet)
STATES = (*Health, *QuietKind)  # what ?state= takes

# Intervals and windows repeat across subjects: format each once.
_duration_text = functools.lru_cache(maxsize=4096)(format_duration_ns)


MAX_OFFSET = 10_000_000
MAX_AFTER = 4096  # a subject is shorter (heartbeat.subjects' KV key rule)
_FLAGS = {"1": True, "true": True, "0": False, "false": False}


@dataclass(frozen=True)
class Filter:
    """Which subjects a status answer lists: by state (a health, or a kind of quiet),
    by subject pattern, then a page of them in subject order (after the subject
    ``after``, skipping ``offset``, at most ``limit``); ``counts``: also count the
    pattern's subjects by state."""

    state: Health | QuietKind | None = None
    pattern: str | None = None
    limit: int | None = None
    offset: int = 0
    after: str | None = None
    counts: bool = False

    @classmethod
    def parse(cls, query: Mapping[str, str]) -> Filter:
        """From ``?state=alert|late|ok|paused|silenced|maint|suppressed&subject=<pattern>
        &limit=N&offset=N&after=S&counts=1``; ValueError (one line) if bad."""
        unknown = set(query) - {"state", "subject", "limit", "offset", "after", "counts"}
        if unknown:
            raise ValueError(f"unknown parameter(s): {', '.join(sorted(unknown))[:200]}")
        state = query.get("state")
        if state is not None and state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, not {state[:40]!r}")
        pattern = query.get("subject")
        if pattern is not None and (why := valid_pattern(pattern)) is not None:
            raise ValueError(f"subject pattern {pattern[:80]!r} {why}")
        limit = query.get("limit")
        if limit is not None and not (limit.isdigit() and 0 < int(limit) <= MAX_OFFSET):
            raise ValueError(f"limit must be a positive integer, not {limit[:40]!r}")
        offset = query.get("offset", "0")
        if not (offset.isdigit() and int(offset) <= MAX_OFFSET):
            raise ValueError(f"offset must be an integer from 0, not {offset[:40]!r}")
        after = query.get("after")
        if after is not None and len(after) > MAX_AFTER:
            raise ValueError(f"after must be a subject (at most {MAX_AFTER} characters)")
        counts = _FLAGS.get(query.get("counts", "0"))
        if counts is None:
            raise ValueError(f"counts must be 1 or 0, not {query['counts'][:40]!r}")
        chosen = None if not state else Health(state) if state in set(Health) else QuietKind(state)
        return cls(
            chosen,
            pattern,
            int(limit) if limit is not None else None,
            int(offset),
            after,
            counts,
        )

    @property
    def paged(self) -> bool:
        """Asked for a page (so the answer says how many there are in all)."""
        return self.limit is not None or self.offset > 0 or self.after is not None

    def keeps(self, track: Track, now: float, hush_for: HushFor | None = None) -> bool:
        return self.keeps_subject(track) and self.keeps_state(track, now, hush_for)

    def keeps_subject(self, track: Track) -> bool:
        return self.pattern is None or matches(self.pattern, track.subject)

    def keeps_state(self, track: Track, now: float, hush_for: HushFor | None = None) -> bool:
        if self.state is None:
            return True
        if isinstance(self.state, QuietKind):
            q = hush_for(track.subject, now).quiet if hush_for is not None else None
            return q is not None and q.kind is self.state
        rec = track.record
        if self.state is Health.ALERT:  # only a committed record alerts: no view needed
            return rec is not None and health(rec, now) is Health.ALERT
        return track_health(track, now) is self.state


def track_health(track: Track, now: float) -> Health:
    """``health(track.view(), now)``, without building the view for a plain heartbeat
    (the view costs microseconds: too many for counting 100k subjects every 2 s)."""
    rec, beat = track.record, track.beat
    if beat is None or beat.job is not None or (rec is not None and rec.job is not None):
        return health(track.view(), now)
    if rec is not None and rec.alert_active:
        return _ALERT
    seen = beat if rec is None or beat.last_seen > rec.last_seen else rec
    late = silent_past(seen.last_seen, seen.interval_ns, seen.window_ns, now)
    return _LATE if late else _OK


_OK, _LATE, _ALERT = Health.OK, Health.LATE, Health.ALERT  # enum lookups are slow in a loop


def health_counts(tracks: Iterable[Track], now: float) -> Counter[Health]:
    """How many of ``tracks`` are ok, late and alert: :func:`track_health` inlined for a
    plain heartbeat (a function call per subject doubles the cost: ~0.5 s at 1M)."""
    ok = late = alert = 0
    slow: list[Track] = []
    for t in tracks:
        rec, beat = t.record, t.beat
        if rec is not None:
            if rec.alert_active:
                alert += 1
                continue
            if rec.job is not None:
                slow.append(t)
                continue
            if beat is None or beat.last_seen <= rec.last_seen:
                seen: Record | Beat = rec
            else:
                seen = beat
        elif beat is None:
            ok += 1  # not reachable for a tracked subject; what health() says of it
            continue
        else:
            seen = beat
        if beat is not None and beat.job is not None:
            slow.append(t)
        elif silent_past(seen.last_seen, seen.interval_ns, seen.window_ns, now):
            late += 1
        else:
            ok += 1
    counts = Counter({_OK: ok, _LATE: late, _ALERT: alert})
    counts.update([track_health(t, now) for t in slow])
    return counts


def quiet_counts(tracks: Iterable[Track], now: float, hush_for: HushFor) -> Counter[QuietKind]:
    """How many of ``tracks`` are kept quiet now, by kind."""
    if hush_for is never_quiet:
        return Counter()
    return Counter(q.kind for t in tracks if (q := hush_for(t.subject, now).quiet) is not None)


def count_states(
    tracks: Iterable[Track], now: float, hush_for: HushFor | None = None
) -> dict[str, int]:
    """How many of ``tracks`` are ok, late and alert (these add up to all of them) and,
    given the quiet sources, how many are kept quiet by each kind (counted apart: a
    silenced subject is also ok, late or alert)."""
    tracks = list(tracks)
    by_state = health_counts(tracks, now)
    counts = {str(h): by_state.get(h, 0) for h in Health}
    if hush_for is not None:
        quiet = quiet_counts(tracks, now, hush_for)
        counts.update({str(k): quiet.get(k, 0) for k in QuietKind})
    return counts


def subject_status(
    cur: Record, now: float, *, unrouted: bool = False, hush: Hush = LOUD
) -> SubjectStatus:
    """One row of the status report (``cur``: the subject's current view), as the Go
    monitor computes it; ``unrouted``: no channel hears of it; ``hush``: what keeps it
    quiet now."""
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
    if (q := hush.quiet) is not None:
        row = msgspec.structs.replace(
            row, quiet=str(q.kind), quiet_until=_when(q.until), quiet_ref=q.ref
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
    hush_for: HushFor | None = None,
    silences: list[SilenceStatus] | None = None,
) -> StatusReport:
    """The status of ``tracks`` at ``now`` (``hush_for``: the monitor's quiet sources;
    None: nothing is ever quiet; ``silences``: those in force or scheduled)."""
    only = only or Filter()
    chosen, total, counts = select(tracks, now, only, hush_for)
    return StatusReport(
        observed_at=datetime.fromtimestamp(now, UTC),
        subjects=_rows(chosen, now, router, hush_for),
        monitor=monitor,
        leader=leader,
        leader_id=leader_id,
        silences=silences,
        total=total if only.paged or only.counts else None,
        counts=counts,
    )


def _rows(
    tracks: Iterable[Track], now: float, router: Router | None, hush_for: HushFor | None
) -> AwareRows:
    """``subject_status(t.view(), now, ...)`` of each track, in order.

    Why a fast path: most rows are a loud plain heartbeat, and its view (a new Record,
    :func:`heartbeat.engine.merged`) and the general row were most of a 100k-subject
    ``GET /``.  Such a row is read here from the record or the beat, whichever is
    newer as merged() decides, field for field as :func:`subject_status` makes it.
    A quiet subject, a job, or a track merged() would make an empty record of goes
    the general way (tests/unit/test_status_rows.py holds the two to the same JSON).
    """
    if hush_for is never_quiet:
        hush_for = None  # the same LOUD for every row, without asking each
    rows = AwareRows()  # every time in them is UTC: encode_status need not look
    append, texts, fromts, utc = rows.append, _TEXTS, datetime.fromtimestamp, UTC
    for t in tracks:
        unrouted = router is not None and router.route(t.subject).unrouted
        hush = LOUD if hush_for is None else hush_for(t.subject, now)
        rec, beat = t.record, t.beat
        seen: Record | Beat | None = None
        if hush.quiet is not None:
            pass
        elif rec is None:
            if beat is not None and beat.job is None and beat.last_seen > 0.0:
                seen = beat
        elif rec.job is None and (beat is None or beat.job is None):
            seen = rec if beat is None or beat.last_seen <= rec.last_seen else beat
        if seen is None:
            append(subject_status(t.view(), now, unrouted=unrouted, hush=hush))
            continue
        subject = t.subject if rec is None else rec.subject
        last_seen, interval_ns, grace_ns = seen.last_seen, seen.interval_ns, seen.grace_ns
        got = texts.get(interval_ns if grace_ns is None else (interval_ns, grace_ns))
        interval, grace, window, beats, window_ns = got or _texts(interval_ns, grace_ns)
        elapsed = now - last_seen
        missing = beats and last_seen > 0.0 and elapsed * SECOND > window_ns  # is_late()
        append(
            SubjectStatus(
                subject=subject,
                description=seen.description or subject,
                host=seen.host or None,
                last_seen=fromts(last_seen, utc) if last_seen else None,
                interval=interval,
                grace=grace,
                allowed_window=window,
                missing=missing,
                miss_for=format_duration_ns(round(elapsed * SECOND)) if missing else None,
                miss_count=misses(elapsed, interval_ns) if missing else None,
                alert_active=rec is not None and rec.alert_active,
                unrouted=True if unrouted else None,
            )
        )
    return rows


Texts = tuple[str, str | None, str, bool, int | float]
_TEXTS: dict[int | tuple[int, int | None], Texts] = {}
_EXACT = 2**53  # every int up to this is a float exactly


def _texts(interval_ns: int, grace_ns: int | None) -> Texts:
    """A row's interval, grace and allowed window as text, whether it beats at all
    (``interval_ns > 0``) and its window to compare with: the same few pairs repeat
    across subjects, so each is made once (keyed by the interval alone when there is
    no grace, the common case, to spare a tuple).  The window is a float where that is
    exact: a float compares with a float faster than with an int, to the same answer."""
    key = interval_ns if grace_ns is None else (interval_ns, grace_ns)
    got = _TEXTS.get(key)
    if got is None:
        if len(_TEXTS) >= 4096:
            _TEXTS.clear()
        window_ns = window_of(interval_ns, grace_ns)
        got = _TEXTS[key] = (
            _duration_text(interval_ns),
            _duration_text(grace_ns) if grace_ns else None,
            _duration_text(window_ns),
            interval_ns > 0,
            float(window_ns) if -_EXACT <= window_ns <= _EXACT else window_ns,
        )
    return got


def select(
    tracks: Iterable[Track], now: float, only: Filter, hush_for: HushFor | None = None
) -> tuple[list[Track], int, dict[str, int] | None]:
    """The page of tracks ``only`` asks for (in subject order), how many matched in
    all, and (``only.counts``) how many of the pattern's subjects are in each state.

    :class:`Subjects` keeps its tracks in order; other tracks are sorted, or a page of
    them picked with a bounded heap, so the status page's first pages stay cheap.
    """
    in_order = isinstance(tracks, Subjects)
    if only.pattern is not None and _literal(only.pattern) and isinstance(tracks, Subjects):
        one = tracks.get(only.pattern)  # one subject: a lookup, not a scan of them all
        tracks = [] if one is None else [one]
    if isinstance(tracks, Subjects) and only.state is Health.ALERT and not only.counts:
        # The few whose record alerts, not a pass over every subject (~160 ms at 1M).
        matched = sorted((tracks.tracks[s] for s in tracks.alerting), key=_subject)
    elif isinstance(tracks, Subjects):
        matched = tracks.in_order()
    else:
        matched = list(tracks)
    if only.pattern is not None:
        matched = [t for t in matched if only.keeps_subject(t)]
    counts = count_states(matched, now, hush_for) if only.counts else None
    if only.state is not None:
        matched = [t for t in matched if only.keeps_state(t, now, hush_for)]
    if only.after is not None:
        after = only.after
        matched = [t for t in matched if t.subject > after]
    total = len(matched)
    end = total if only.limit is None else min(total, only.offset + only.limit)
    if in_order:
        return matched[only.offset : end], total, counts  # a copy: the order is Subjects'
    if end < total // 4:
        page = heapq.nsmallest(end, matched, key=_subject)
    else:
        page = sorted(matched, key=_subject)[:end]
    return page[only.offset :], total, counts


def _literal(pattern: str) -> bool:
    return not any(tok in ("*", ">") for tok in pattern.split("."))


def _subject(t: Track) -> str:
    return t.subject


class StatusSource(Protocol):
    """What the status server needs from a monitor."""

    def report(self, only: Filter | None = None) -> StatusReport: ...

    def healthy(self) -> tuple[bool, str]: ...

    def ready(self) -> tuple[bool, str]: ...


HistoryReader = Callable[[HistoryQuery], Awaitable[list[Event]]]
"""Reads the events stream (heartbeat.history_read through the monitor's connection)."""

PROBES = ("/healthz", "/readyz")
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def make_app(
    source: StatusSource,
    *,
    metrics: Callable[[], Awaitable[bytes]] | None = None,
    token: str = "",
    history: HistoryReader | None = None,
) -> web.Application:
    """``GET /`` status JSON, ``/ui`` (the status page), ``/healthz``, ``/readyz`` and
    (given) ``/metrics`` and ``/history`` (``?subject=PATTERN&since=SECONDS&limit=N``:
    ``{"events": [...]}``, oldest first; 404 when history is off).

    With ``token``, everything but the probes and the page's script and style needs
    ``Authorization: Bearer <token>`` or the status page's session cookie
    (:mod:`heartbeat.statuspage`).
    """

    @web.middleware
    async def auth(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        path = request.path
        if token and path not in PROBES and not statuspage.public(path):
            given = request.headers.get("Authorization", "")
            bearer = hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
            if not bearer and not statuspage.signed_in(request, token):
                if path == statuspage.PAGE:  # a browser: offer to sign in
                    return await statuspage.sign_in(request, token)
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
    statuspage.add_routes(app, token)
    app.router.add_get("/history", history_handler(history))
    if metrics is not None:
        render = metrics

        async def metrics_handler(request: web.Request) -> web.Response:
            return web.Response(body=await render(), headers={"Content-Type": METRICS_TYPE})

        app.router.add_get("/metrics", metrics_handler)
    return app


def history_handler(
    history: HistoryReader | None,
) -> Callable[[web.Request], Awaitable[web.Response]]:
    """``GET /history``: 400 for a bad query, 404 when history is off, 503 when the
    stream cannot be read."""

    async def handler(request: web.Request) -> web.Response:
        if history is None:
            return web.Response(status=404, text="history is off on this monitor\n")
        try:
            query = HistoryQuery.parse(request.query)
        except ValueError as e:
            return web.Response(status=400, text=f"{e}\n")
        try:
            events = await history(query)
        except HeartbeatError as e:
            return web.Response(status=503, text=f"{for_log(str(e), 300)}\n")
        return web.Response(body=encode_events(events), content_type="application/json")

    return handler


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
