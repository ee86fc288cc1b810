"""``nats-heartbeat status``: ask a monitor replica for its status and print the Go tool's table.

Exit status: 0 when no alert fires, 1 when at least one does, 2 when the monitor
cannot be asked (unreachable, timeout, non-2xx answer, not the status JSON).
``--from-kv`` reads the state bucket and the heartbeat stream instead (no monitor
needed); ``--watch`` redraws the table until Ctrl-C (exit 0).
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import ipaddress
import os
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from zoneinfo import ZoneInfo

import click
import msgspec
from nats.aio.client import Client as NATS

from cli.common import (
    POSITIVE_DURATION,
    DurationType,
    connect_options,
    fail,
    nats_options_named,
    option,
    read_secret,
    storage_options,
)
from heartbeat.connection import ConnectOptions, connect
from heartbeat.durations import format_duration
from heartbeat.engine import Health
from heartbeat.errors import HeartbeatError
from heartbeat.routing import valid_pattern
from heartbeat.snapshot import read_state, report_of
from heartbeat.status import Filter
from heartbeat.status_schema import (
    InvalidStatus,
    StatusReport,
    SubjectStatus,
    decode_status,
    encode_status,
)
from heartbeat.store import StoreConfig
from heartbeat.text import MAX_DESCRIPTION, MAX_HOST, neutral

DEFAULT_STATUS_URL = "http://127.0.0.1:8080/"
MAX_BODY = 64 * 1024 * 1024
HEADER = ("STATUS", "SUBJECT", "DESCRIPTION", "HOST", "LAST SEEN", "DETAILS")
_PADDING = 2  # Go: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
_COLORS = {"ALERT!": 31, "FAILED": 31, "RUNNING LONG": 31, "LATE": 33, "OK": 32}
_COLORS.update(dict.fromkeys(("PAUSED", "SILENCED", "MAINT", "SUPPRESSED"), 36))
# Until when a quiet with no end of its own lasts, by kind.
_QUIET_OPEN = {"paused": "until resumed", "suppressed": "while its parent is missing"}
_OUTPUT_SHOWN = 60  # characters of a failed run's output tail in DETAILS (its end)


# ---------------------------------------------------------------- rendering (pure)


def render_table(report: StatusReport, *, color: bool) -> str:
    """The Go status tool's output for ``report``, ending with a newline.

    Rows are sorted by subject (the order the Go monitor serves them in); columns
    are aligned as Go's ``text/tabwriter`` does (widest cell + 2 spaces, widths in
    code points); with ``color`` the status word is wrapped in ANSI colours.
    """
    out = [f"Observed at: {format_rfc3339(report.observed_at)}\n"]
    if not report.subjects:
        out.append("No heartbeats observed yet.\n")
        return "".join(out) + render_silences(report)
    at = report.observed_at
    rows = [HEADER, *(subject_row(s, at) for s in sorted(report.subjects, key=_by_subject))]
    widths = [max(len(row[col]) for row in rows) + _PADDING for col in range(len(HEADER) - 1)]
    out.append("\n")
    for i, row in enumerate(rows):
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        word = row[0].split(" (", 1)[0]  # "MAINT (nightly)" is coloured as MAINT
        if color and i > 0 and word in _COLORS:
            pad = cells[0][len(row[0]) :]
            cells[0] = f"\x1b[{_COLORS[word]}m{row[0]}\x1b[0m{pad}"
        out.append("".join(cells) + row[-1] + "\n")
    firing, total = report.alerts_firing, len(report.subjects)
    out.append(f"\n{firing} alert(s) firing across {total} subject(s)\n")
    return "".join(out) + render_silences(report)


SILENCE_HEADER = ("ID", "KIND", "SUBJECTS", "STARTS", "ENDS", "BY", "REASON")


def render_silences(report: StatusReport) -> str:
    """The silences and pauses in force (or scheduled) under the table; empty if none."""
    if not report.silences:
        return ""
    at = report.observed_at
    rows = [SILENCE_HEADER]
    for x in report.silences:
        ends = "until resumed" if x.ends is None else format_rfc3339(x.ends.astimezone())
        starts = format_rfc3339(x.starts.astimezone())
        if x.starts > at:
            starts += " (scheduled)"
        rows.append(
            (
                _printable(x.id, 64),
                _printable(x.kind, 16),
                _printable(",".join(x.subjects), 120),
                starts,
                ends,
                _printable(x.by or "-", 40),
                _printable(x.reason or "-", 80),
            )
        )
    widths = [max(len(row[col]) for row in rows) + _PADDING for col in range(len(rows[0]) - 1)]
    lines = ["".join(c.ljust(w) for c, w in zip(r, widths, strict=False)) + r[-1] for r in rows]
    return f"\n{len(rows) - 1} silence(s) and pause(s):\n" + "\n".join(lines) + "\n"


def subject_row(
    s: SubjectStatus, observed_at: datetime | None = None
) -> tuple[str, str, str, str, str, str]:
    """STATUS, SUBJECT, DESCRIPTION, HOST, LAST SEEN, DETAILS of one subject."""
    status, details = summarize(s, observed_at)
    last_seen = "-" if s.last_seen is None else format_rfc3339(s.last_seen)
    return (
        status,
        _printable(s.subject),
        _printable(s.description, MAX_DESCRIPTION),
        _printable(s.host or "-", MAX_HOST),
        last_seen,
        _printable(details),
    )


def summarize(s: SubjectStatus, observed_at: datetime | None = None) -> tuple[str, str]:
    """The status word and DETAILS text, worded as the Go tool words them (a job adds
    its last run and, on a schedule, the next run due).  A quiet subject shows why
    (``MAINT (nightly)``, ``SILENCED (<id>)``), what it would show otherwise and until
    when."""
    word, details = _summarize(s, observed_at)
    if not s.quiet:
        return word, details
    ref = _printable(s.quiet_ref or "", 64)
    quiet_word = s.quiet.upper() + (f" ({ref})" if ref else "")
    if s.quiet_until is not None:
        until = f"quiet until {local_time(s.quiet_until, None, observed_at)}"
    else:
        until = f"quiet {_QUIET_OPEN.get(s.quiet, 'until lifted')}"
    if word == "ALERT!":
        details = f"alert sent before, {details}"
    return quiet_word, f"{details}; {until}"


def _summarize(s: SubjectStatus, observed_at: datetime | None) -> tuple[str, str]:
    beats = f" ({s.miss_count} beats)" if s.miss_count else ""
    nobody = "; no channel is routed" if s.unrouted else ""
    job = _job_details(s, observed_at)
    if s.alert_active:
        missed = _fallback(s.miss_for, f"past {s.allowed_window}")
        return "ALERT!", f"missed {missed}{beats}{nobody}"
    if s.job_alert == "failed":
        return "FAILED", f"{job}{nobody}"
    if s.job_alert == "running_long":
        return "RUNNING LONG", f"{job}{nobody}"
    if s.missing:
        return "LATE", f"late by {_fallback(s.miss_for, s.allowed_window)}{beats}{nobody}"
    if s.next_run_due is not None:
        return "OK", f"{job}{nobody}"
    plain = f"interval {s.interval}, window {s.allowed_window}"
    return "OK", (f"{plain}, {job}" if job else plain) + nobody


def _job_details(s: SubjectStatus, observed_at: datetime | None) -> str:
    """``next run due 03:00 CET, last run ok in 5s`` (empty for a plain heartbeat)."""
    parts = []
    if s.next_run_due is not None:
        parts.append(f"next run due {local_time(s.next_run_due, s.timezone, observed_at)}")
    if s.last_run == "running" and s.running_since is not None:
        parts.append(f"running since {local_time(s.running_since, s.timezone, observed_at)}")
    elif s.last_run == "success":
        parts.append(f"last run ok in {s.run_duration or '?'}")
    elif s.last_run == "fail":
        tail = s.output or ""
        tail = tail if len(tail) <= _OUTPUT_SHOWN else "…" + tail[-(_OUTPUT_SHOWN - 1) :]
        failed = f"last run failed: exit {s.exit_code} after {s.run_duration or '?'}"
        parts.append(f"{failed}: {tail}" if tail else failed)
    return ", ".join(parts)


def local_time(value: datetime, timezone: str | None, observed_at: datetime | None = None) -> str:
    """``03:00 CET`` in the job's zone (UTC when unset or unknown); with the date in
    front when it is not within a day of ``observed_at``."""
    try:
        zone: tzinfo = ZoneInfo(timezone) if timezone else UTC
    except (ValueError, KeyError):
        zone = UTC
    local = value.astimezone(zone)
    clock = f"{local:%H:%M:%S}" if local.second else f"{local:%H:%M}"
    text = f"{clock} {local.tzname()}"
    if observed_at is None or abs(value - observed_at) >= timedelta(days=1):
        return f"{local:%Y-%m-%d} {text}"
    return text


def format_rfc3339(value: datetime) -> str:
    """Go's ``time.RFC3339`` layout: whole seconds (truncated), ``Z`` or ``±hh:mm``."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    offset = value.utcoffset() or timedelta(0)
    base = (  # not strftime: its %Y does not pad years before 1000
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
        f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
    if offset == timedelta(0):
        return base + "Z"
    minutes = int(offset / timedelta(minutes=1))  # toward zero
    hours, mins = divmod(abs(minutes), 60)
    return f"{base}{'-' if minutes < 0 else '+'}{hours:02d}:{mins:02d}"


def _fallback(value: str | None, default: str) -> str:
    return default if value is None or not value.strip() else value


def _by_subject(s: SubjectStatus) -> str:
    return s.subject  # code point order == UTF-8 byte order == Go's string order


def _printable(text: str, limit: int | None = None) -> str:
    """Text from a monitor (so from heartbeats) as the terminal may show it: escape
    sequences, control characters, bidi overrides and zero-width characters removed,
    line breaks as spaces (they would break the columns, drive the terminal or make one
    subject read as another), cut to ``limit``."""
    return neutral(text, limit)


def use_color(stream: Any = None) -> bool:
    """ANSI colours only on a terminal, without ``NO_COLOR`` and not on ``TERM=dumb``."""
    stream = sys.stdout if stream is None else stream
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") == "dumb":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


# ---------------------------------------------------------------- fetching


class FetchError(Exception):
    """The monitor could not be asked; the message is one line for stderr."""


@dataclass
class _Outcome:
    body: bytes | None = None
    error: str | None = None


def fetch_status(url: str, timeout: timedelta, token: str | None = None) -> bytes:
    """GET ``url`` and return the body of a 2xx answer, all within ``timeout``.

    The deadline covers everything (name lookup, connect, headers, body), as a Go
    context deadline does; the request runs in a daemon thread that is abandoned
    when the deadline passes.
    """
    seconds = timeout.total_seconds()
    outcome = _Outcome()
    worker = threading.Thread(
        target=_fetch_into,
        args=(outcome, url, seconds, token),
        name="status-fetch",
        daemon=True,
    )
    worker.start()
    worker.join(seconds)
    if worker.is_alive() or (outcome.body is None and outcome.error is None):
        raise FetchError(f"no answer from {url} within {format_duration(timeout)}")
    if outcome.error is not None:
        raise FetchError(outcome.error)
    assert outcome.body is not None
    return outcome.body


def _fetch_into(outcome: _Outcome, url: str, seconds: float, token: str | None) -> None:
    try:
        outcome.body = _get(url, seconds, token)
    except FetchError as e:
        outcome.error = str(e)
    except TimeoutError:
        outcome.error = f"no answer from {url} within {format_duration(seconds)}"
    except urllib.error.HTTPError as e:
        answer = f"{e.code} {e.reason}".strip()
        outcome.error = f"{url} answered {answer}{_snippet(e)}"
    except urllib.error.URLError as e:
        if isinstance(e.reason, TimeoutError):
            outcome.error = f"no answer from {url} within {format_duration(seconds)}"
        else:
            outcome.error = f"cannot reach {url}: {_reason(e.reason)}"
    except (OSError, http.client.HTTPException, ValueError) as e:
        outcome.error = f"cannot read the answer from {url}: {_reason(e)}"
    except Exception as e:  # never a traceback from a CLI
        outcome.error = f"cannot ask {url}: {type(e).__name__}: {e}"


def _get(url: str, seconds: float, token: str | None) -> bytes:
    request = urllib.request.Request(url, method="GET", headers={"Accept": "application/json"})
    handlers: list[urllib.request.BaseHandler] = [_RedirectHandler(token)]
    if _is_loopback(request.host):
        handlers.append(urllib.request.ProxyHandler({}))  # Go never proxies loopback either
    if token:
        request.add_unredirected_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(*handlers)
    with opener.open(request, timeout=seconds) as response:
        body: bytes = response.read(MAX_BODY + 1)
    if len(body) > MAX_BODY:
        raise FetchError(f"{url} answered more than {MAX_BODY // (1024 * 1024)} MiB")
    return body


class _RedirectHandler(urllib.request.HTTPRedirectHandler):
    """Follow redirects; keep the bearer token only on the same scheme, host and port."""

    def __init__(self, token: str | None) -> None:
        self.token = token

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: Any,
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        new = super().redirect_request(req, fp, code, msg, headers, newurl)
        if new is not None and self.token and _origin(newurl) == _origin(req.full_url):
            new.add_unredirected_header("Authorization", f"Bearer {self.token}")
        return new


def _origin(url: str) -> tuple[str, str | None, int | None]:
    parts = urllib.parse.urlsplit(url)
    return parts.scheme.lower(), parts.hostname, parts.port


def _is_loopback(host: str) -> bool:
    name = urllib.parse.urlsplit(f"//{host}").hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _reason(reason: object) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return _one_line(str(reason)) or type(reason).__name__


def _snippet(e: urllib.error.HTTPError) -> str:
    try:
        text = _one_line(e.read(512).decode("utf-8", "replace"))
    except (OSError, http.client.HTTPException, ValueError):
        text = ""
    return f": {text[:200]}" if text else ""


def _one_line(text: str) -> str:
    return _printable(" ".join(text.split()))


# ---------------------------------------------------------------- command


def _check_url(ctx: click.Context, param: click.Parameter, value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme.lower() not in ("http", "https") or not parts.netloc:
        raise click.BadParameter(f"{value!r} is not an http:// or https:// URL", ctx, param)
    return value


def _check_token(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    value = read_secret(ctx, param, value or "")
    if value and not (value.isascii() and value.isprintable()):
        raise click.BadParameter("must be printable ASCII", ctx, param)
    return value or None


def _check_pattern(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and (why := valid_pattern(value)) is not None:
        raise click.BadParameter(f"{value!r} {why}")
    return value


@click.command()
@option(
    "--url",
    envvar="STATUS_URL",
    default=DEFAULT_STATUS_URL,
    show_default=True,
    callback=_check_url,
    help="Status endpoint of a monitor replica (any replica answers the same).",
)
@option(
    "--timeout",
    envvar="STATUS_TIMEOUT",
    type=POSITIVE_DURATION,
    default="3s",
    show_default=True,
    help="Deadline for the whole request (Go duration: 3s, 200ms).",
)
@option(
    "--json",
    "as_json",
    envvar="STATUS_JSON",
    is_flag=True,
    default=False,
    help="Print the status JSON as received (pretty) instead of the table.",
)
@option(
    "--token",
    envvar="STATUS_TOKEN",
    default=None,
    callback=_check_token,
    help="Bearer token sent as 'Authorization: Bearer ...' (prefer the environment "
    "variable, or a file named by STATUS_TOKEN_FILE).",
)
@option(
    "--state",
    type=click.Choice(["alert", "late", "ok", "paused", "silenced", "maint", "suppressed"]),
    default=None,
    help="List only subjects in this state (filtered by the monitor): a health, or why "
    "they are kept quiet (paused, silenced, maint, suppressed).",
)
@option(
    "--subject",
    "pattern",
    default=None,
    callback=_check_pattern,
    help="List only subjects matching this NATS pattern (heartbeat.db.>, heartbeat.*.api).",
)
@option(
    "--watch",
    type=DurationType(allow_zero=False, bare_seconds=True),
    is_flag=False,
    flag_value="2s",
    default=None,
    metavar="[SECONDS]",
    help="Redraw the table every SECONDS (2 when not given; a duration such as 500ms "
    "works too) until Ctrl-C.",
)
@option(
    "--count",
    type=click.IntRange(0),
    default=0,
    help="With --watch: stop after this many tables (0: until Ctrl-C).",
)
@option(
    "--from-kv",
    envvar="STATUS_FROM_KV",
    is_flag=True,
    default=False,
    help="Read the state from NATS (state bucket and heartbeat stream) instead of "
    "asking a monitor: for when none answers. Takes --nats-url and the NATS flags.",
)
@nats_options_named("--nats-token")
@storage_options
def status(
    url: str,
    timeout: timedelta,
    as_json: bool,
    token: str | None,
    state: str | None,
    pattern: str | None,
    watch: timedelta | None,
    count: int,
    from_kv: bool,
    nats_url: str,
    stream: str,
    state_bucket: str,
) -> int:
    """Show what a monitor sees and highlight firing alerts.

    Exit status 0 when no alert fires (among the subjects listed), 1 when at least
    one does, 2 when the monitor cannot be reached or does not answer with its
    status JSON. With --watch the table is redrawn until Ctrl-C (exit 0); with
    --from-kv the state is read from NATS (the state bucket and the heartbeat
    stream), for when no monitor answers.
    """
    if count and watch is None:
        raise click.UsageError("--count needs --watch")
    frame: Frame
    if from_kv:
        if state is not None and state not in set(Health):
            # Quiet comes from silences and the config file, which --from-kv does not read.
            raise click.UsageError(f"--state {state} needs a monitor; with --from-kv use "
                                   f"{', '.join(Health)}")  # fmt: skip
        only = {k: v for k, v in (("state", state), ("subject", pattern)) if v is not None}
        frame = KvFrames(
            connect_options(nats_url, "status"),
            StoreConfig(stream=stream, bucket=state_bucket),
            Filter.parse(only),
            timeout.total_seconds(),
        )
    else:
        query_url = with_query(url, state=state, subject=pattern)

        def frame() -> tuple[bytes, StatusReport]:
            body = fetch_status(query_url, timeout, token or None)
            return body, _decode(query_url, body)

    try:
        if watch is not None:
            return watch_frames(frame, watch.total_seconds(), count, as_json=as_json)
        try:
            body, report = frame()
        except FetchError as e:
            fail(str(e), 2)
        click.echo(show(body, report, as_json=as_json, color=use_color()), nl=False, color=True)
        return 1 if report.alerts_firing else 0
    finally:
        if isinstance(frame, KvFrames):
            frame.close()


Frame = Callable[[], tuple[bytes, StatusReport]]
"""One look at the state: the status JSON and its report; FetchError if none."""
CLEAR = "\x1b[H\x1b[2J"  # cursor home, clear the screen


def show(body: bytes, report: StatusReport, *, as_json: bool, color: bool) -> str:
    """What one look prints: the status JSON (pretty) or the table."""
    if as_json:
        return msgspec.json.format(body, indent=2).decode("utf-8", "replace").rstrip("\n") + "\n"
    return render_table(report, color=color)


def watch_frames(
    frame: Frame,
    every_s: float,
    count: int,
    *,
    as_json: bool,
    sleep: Callable[[float], None] = time.sleep,
) -> int:
    """Print a frame every ``every_s`` until Ctrl-C (exit 0) or ``count`` frames (the
    last one's exit status).  On a terminal each frame replaces the last; otherwise
    frames follow each other, separated by a blank line.  A frame that fails says
    why (on stderr when not a terminal) and the watch goes on."""
    tty = _isatty(sys.stdout)
    color = use_color()
    shown = 0
    code = 0
    try:
        while True:
            started = time.monotonic()
            try:
                body, report = frame()
                text = show(body, report, as_json=as_json, color=color)
                code = 1 if report.alerts_firing else 0
            except FetchError as e:
                text, code = f"nats-heartbeat: {e}\n", 2
                if not tty:
                    click.echo(text, nl=False, err=True)
                    text = ""
            if tty:
                click.echo(CLEAR + text, nl=False, color=True)
            elif text:
                click.echo(("\n" if shown else "") + text, nl=False, color=True)
            sys.stdout.flush()
            shown += 1
            if count and shown >= count:
                return code
            sleep(max(0.0, every_s - (time.monotonic() - started)))
    except KeyboardInterrupt:
        return 0


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


class KvFrames:
    """Frames read straight from NATS; one connection kept across the frames."""

    def __init__(
        self, options: ConnectOptions, cfg: StoreConfig, only: Filter, timeout_s: float
    ) -> None:
        self.options = options
        self.cfg = cfg
        self.only = only
        self.timeout_s = timeout_s
        self.runner = asyncio.Runner()
        self.nc: NATS | None = None

    def __call__(self) -> tuple[bytes, StatusReport]:
        return self.runner.run(self._frame())

    async def _frame(self) -> tuple[bytes, StatusReport]:
        try:
            if self.nc is None:
                self.nc = await asyncio.wait_for(
                    connect(self.options, reconnect_forever=False), self.timeout_s
                )
            snap = await read_state(self.nc.jetstream(), self.cfg, timeout_s=self.timeout_s)
        except TimeoutError as e:
            raise FetchError(f"no answer from NATS within {self.timeout_s:g}s") from e
        except HeartbeatError as e:
            raise FetchError(str(e)) from e
        report = report_of(snap, time.time(), self.only)
        return encode_status(report), report

    def close(self) -> None:
        if self.nc is not None:
            with contextlib.suppress(Exception):
                self.runner.run(self.nc.close())
        self.runner.close()


def with_query(url: str, **params: str | None) -> str:
    """``url`` with the given parameters (those not None) added to its query."""
    extra = {k: v for k, v in params.items() if v is not None}
    if not extra:
        return url
    parts = urllib.parse.urlsplit(url)
    query = urllib.parse.parse_qsl(parts.query) + list(extra.items())
    return urllib.parse.urlunsplit(parts._replace(query=urllib.parse.urlencode(query)))


def _decode(url: str, body: bytes) -> StatusReport:
    try:
        return decode_status(body)
    except InvalidStatus as e:
        raise FetchError(f"{url} did not answer the status JSON: {_one_line(str(e))[:300]}") from e
