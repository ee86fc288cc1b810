"""``nats-heartbeat silence add|ls|rm``, ``pause`` and ``resume``: keep subjects quiet.

These talk to NATS directly (no monitor needs to be up): each silence or pause is one
key of the silences bucket (created if missing, as the monitor would), which every
monitor replica watches.  Times are RFC 3339 (``2026-12-02T03:00:00+01:00``) or this
machine's local time as ``2026-12-02 03:00`` (``TZ`` decides the zone).
"""

from __future__ import annotations

import asyncio
import contextlib
import getpass
import logging
import re
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import click
import msgspec

from cli.common import (
    POSITIVE_DURATION,
    check_name,
    connect_options,
    debug_option,
    fail,
    nats_options,
    option,
    setup_logging,
)
from cli.status import format_rfc3339
from heartbeat.connection import close_connection, connect
from heartbeat.errors import HeartbeatError
from heartbeat.routing import valid_pattern
from heartbeat.silence_store import SilenceStore
from heartbeat.silences import (
    DEFAULT_BUCKET,
    KEEP_ENDED_S,
    MAX_BY,
    MAX_REASON,
    InvalidSilence,
    Kind,
    Silence,
    new_silence,
)
from heartbeat.text import neutral

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d{1,9})?)?(?:[Zz]|[+-]\d{2}:\d{2})?"
)
HEADER = ("ID", "SUBJECTS", "STARTS", "ENDS", "BY", "REASON")


def parse_when(text: str) -> datetime:
    """RFC 3339, or ``YYYY-MM-DD HH:MM[:SS]`` in this machine's zone; ValueError if not."""
    text = text.strip()
    if not _TIME.fullmatch(text):
        raise ValueError("is not a time: use RFC 3339 (2026-12-02T03:00:00Z) or 2026-12-02 03:00")
    frac = re.search(r"\.(\d+)", text)
    if frac is not None and len(frac.group(1)) > 6:  # fromisoformat takes microseconds
        text = text.replace(frac.group(0), "." + frac.group(1)[:6])
    value = datetime.fromisoformat(text.replace("z", "Z"))
    return value if value.tzinfo is not None else value.astimezone()  # naive: local time


class TimeType(click.ParamType):  # type: ignore[type-arg]
    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            return parse_when(str(value))
        except ValueError as e:
            self.fail(f"{value!r} {e}", param, ctx)


TIME = TimeType()


def _check_patterns(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    for p in value:
        if (why := valid_pattern(p)) is not None:
            raise click.BadParameter(f"{p!r} {why}", ctx, param)
    return value


def _check_text(limit: int) -> Callable[[click.Context, click.Parameter, str | None], str | None]:
    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is not None and len(value) > limit:
            raise click.BadParameter(f"must be at most {limit} characters", ctx, param)
        return value

    return check


def default_by() -> str:
    """Who is acting: the login name (``--by`` overrides)."""
    try:
        return getpass.getuser()
    except (OSError, KeyError, ImportError):
        return "unknown"


def silence_options(f: F) -> F:
    """Where silences live, and the NATS connection."""
    f = debug_option(f)
    f = option(
        "--replicas",
        envvar="REPLICAS",
        type=click.IntRange(1, 5),
        default=1,
        show_default=True,
        help="Replication factor of the bucket, if this creates it (3 on a cluster).",
    )(f)
    f = option(
        "--silence-bucket",
        envvar="SILENCE_BUCKET",
        default=DEFAULT_BUCKET,
        show_default=True,
        callback=check_name,
        help="KV bucket of silences and pauses (created if missing).",
    )(f)
    return nats_options(f)


def _by_option(f: F) -> F:
    return option(
        "--by",
        envvar="SILENCE_BY",
        default=None,
        callback=_check_text(MAX_BY),
        help="Who is acting, shown in listings  [default: your login name]",
    )(f)


async def _with_store(
    nats_url: str, bucket: str, replicas: int, work: Callable[[SilenceStore], Awaitable[T]]
) -> T:
    """Connect, open (or create) the bucket and run ``work``; NATS trouble: exit 1."""
    try:
        nc = await connect(connect_options(nats_url, "silence"), reconnect_forever=False)
    except HeartbeatError as e:
        fail(str(e), 1)
    try:
        store = await SilenceStore.open(nc.jetstream(), bucket, replicas=replicas)
        return await work(store)
    except HeartbeatError as e:  # UnknownSilence among them
        fail(str(e), 1)
    finally:
        with contextlib.suppress(Exception):
            await close_connection(nc)


def _run(nats_url: str, bucket: str, replicas: int, debug: bool, work: Any) -> Any:
    setup_logging(debug)
    if not debug:  # a command's output is its answer; "created bucket" is not news
        logging.getLogger().setLevel(logging.WARNING)
    return asyncio.run(_with_store(nats_url, bucket, replicas, work))


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


async def _add(store: SilenceStore, s: Silence) -> None:
    await store.write(s, 0, time.time())


# ---------------------------------------------------------------- silence


@click.group()
def silence() -> None:
    """Silence subjects for a while: nothing alerts or repeats for them meanwhile.

    A subject still missing when its silence ends alerts a full window after the
    end; one that was alerting before still gets its resolved notice.

    \b
      nats-heartbeat silence add 'heartbeat.db.>' --for 2h --reason "upgrade"
      nats-heartbeat silence add heartbeat.x --starts "2026-12-05 22:00" \\
          --until "2026-12-06 02:00" --reason "migration"
      nats-heartbeat silence ls [--all] [--json]
      nats-heartbeat silence rm ID

    Times: RFC 3339 (2026-12-06T02:00:00+01:00) or local 'YYYY-MM-DD HH:MM' (the
    zone TZ names). Silences live in the KV bucket --silence-bucket (one key per
    id); no monitor needs to be running.
    """


@silence.command("add")
@click.argument("patterns", nargs=-1, required=True, callback=_check_patterns)
@option("--for", "for_", type=POSITIVE_DURATION, default=None, help="How long (2h, 30m).")
@option(
    "--until", type=TIME, default=None, help="When it ends (RFC 3339, or local 'YYYY-MM-DD HH:MM')."
)
@option("--starts", type=TIME, default=None, help="When it begins  [default: now]")
@option(
    "--reason",
    required=True,
    callback=_check_text(MAX_REASON),
    help="Why (shown in listings and status).",
)
@_by_option
@silence_options
def add(
    patterns: tuple[str, ...],
    for_: timedelta | None,
    until: datetime | None,
    starts: datetime | None,
    reason: str,
    by: str | None,
    nats_url: str,
    silence_bucket: str,
    replicas: int,
    debug: bool,
) -> None:
    """Silence PATTERNS (NATS wildcards: heartbeat.db.>, heartbeat.*.api) for --for or
    --until; prints the silence's id (for `silence rm`)."""
    now = time.time()
    if (for_ is None) == (until is None):
        raise click.UsageError("give exactly one of --for and --until")
    if not reason.strip():
        raise click.UsageError("--reason must not be empty")
    begin = now if starts is None else starts.timestamp()
    if for_ is not None:
        end = begin + for_.total_seconds()
    else:
        assert until is not None
        end = until.timestamp()
        if end <= now:
            raise click.UsageError(f"--until {format_rfc3339(until.astimezone())} is in the past")
    if end <= begin:
        raise click.UsageError("--until must be after --starts")
    if end <= now:
        raise click.UsageError("--starts plus --for is in the past")
    try:
        s = new_silence(
            _new_id(), "silence", patterns, starts=begin, ends=end, reason=reason,
            by=by or default_by(), created=now,
        )  # fmt: skip
    except InvalidSilence as e:
        raise click.UsageError(str(e)) from e
    _run(nats_url, silence_bucket, replicas, debug, lambda store: _add(store, s))
    click.echo(s.id)


@silence.command("ls")
@option(
    "--all", "show_all", is_flag=True, default=False, help="Also list ended ones (kept 7 days)."
)
@option("--json", "as_json", is_flag=True, default=False, help="Print the entries as JSON.")
@silence_options
def ls(
    show_all: bool, as_json: bool, nats_url: str, silence_bucket: str, replicas: int, debug: bool
) -> None:
    """List silences and pauses in force or scheduled (--all: ended ones too).

    Entries that ended over 7 days ago are purged on the way."""

    async def work(store: SilenceStore) -> list[Silence]:
        now = time.time()
        out = []
        for key, s, rev in await store.entries():
            if s is None:
                continue
            if s.ended_before(now, KEEP_ENDED_S):
                try:  # housekeeping: the listing stands without it
                    await store.purge(key, rev)
                except HeartbeatError as e:
                    logging.getLogger(__name__).warning("cannot purge silence %s: %s", key, e)
            elif show_all or s.current(now):
                out.append(s)
        return sorted(out, key=lambda s: (s.starts, s.id))

    got: list[Silence] = _run(nats_url, silence_bucket, replicas, debug, work)
    if as_json:
        click.echo(msgspec.json.format(msgspec.json.encode(got), indent=2).decode())
        return
    if not got:
        click.echo("No silences." if not show_all else "No silences, not even ended ones.")
        return
    click.echo(render_silences(got, time.time()), nl=False)


def render_silences(silences: list[Silence], now: float) -> str:
    """The ``silence ls`` table (also under `status`), ending with a newline."""
    rows = [
        HEADER,
        *(
            silence_row(s.id, s.kind, s.subjects, s.starts, s.ends, s.by, s.reason, now)
            for s in silences
        ),
    ]
    return table(rows)


def silence_row(
    id: str,
    kind: str,
    subjects: list[str],
    starts: datetime,
    ends: datetime | None,
    by: str,
    reason: str,
    now: float,
) -> tuple[str, ...]:
    if ends is None:
        end = "until resumed (pause)"
    else:
        end = format_rfc3339(ends.astimezone())
        if ends.timestamp() <= now:
            end += " (ended)"
    return (
        neutral(id, 64),
        neutral(",".join(subjects), 120),
        format_rfc3339(starts.astimezone()),
        end,
        neutral(by or "-", 40),
        neutral(reason or "-", 80),
    )


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(r[c]) for r in rows) + 2 for c in range(len(rows[0]) - 1)]
    return "".join(
        "".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)) + r[-1] + "\n"
        for r in rows
    )


@silence.command("rm")
@click.argument("ids", nargs=-1, required=True)
@silence_options
def rm(
    ids: tuple[str, ...], nats_url: str, silence_bucket: str, replicas: int, debug: bool
) -> None:
    """End silences (or pauses) by id now; what they kept quiet alerts a window later
    if still missing."""

    async def work(store: SilenceStore) -> list[str]:
        now = time.time()
        lines = []
        for key in ids:
            s, ended = await store.end(key, now)
            if not ended:
                lines.append(f"{key} had already ended")
            else:
                lines.append(f"ended {s.kind} {key}")
        return lines

    for line in _run(nats_url, silence_bucket, replicas, debug, work):
        click.echo(line)


# ---------------------------------------------------------------- pause and resume


def _pauses(entries: list[tuple[str, Silence | None, int]], now: float) -> dict[str, list[Silence]]:
    """Active pauses by each pattern they name."""
    out: dict[str, list[Silence]] = {}
    for _, s, _ in entries:
        if s is not None and s.kind == "pause" and s.current(now):
            for p in s.subjects:
                out.setdefault(p, []).append(s)
    return out


@click.command()
@click.argument("patterns", nargs=-1, required=True, callback=_check_patterns)
@option("--reason", default="", callback=_check_text(MAX_REASON), help="Why (shown in listings).")
@_by_option
@silence_options
def pause(
    patterns: tuple[str, ...],
    reason: str,
    by: str | None,
    nats_url: str,
    silence_bucket: str,
    replicas: int,
    debug: bool,
) -> None:
    """Pause SUBJECTS (or patterns) until `resume`: nothing alerts or repeats for them.

    One pause per subject; pausing one already paused changes nothing."""
    who = by or default_by()

    async def work(store: SilenceStore) -> list[str]:
        now = time.time()
        paused = _pauses(await store.entries(), now)
        lines = []
        for p in dict.fromkeys(patterns):
            if p in paused:
                lines.append(f"{p} is already paused (id {paused[p][0].id})")
                continue
            kind: Kind = "pause"
            s = new_silence(
                _new_id(), kind, [p], starts=now, ends=None, reason=reason, by=who, created=now
            )
            await store.write(s, 0, now)
            lines.append(f"paused {p} (id {s.id})")
        return lines

    for line in _run(nats_url, silence_bucket, replicas, debug, work):
        click.echo(line)


@click.command()
@click.argument("patterns", nargs=-1, required=True, callback=_check_patterns)
@silence_options
def resume(
    patterns: tuple[str, ...], nats_url: str, silence_bucket: str, replicas: int, debug: bool
) -> None:
    """Resume paused SUBJECTS (exactly as paused); a subject still missing alerts a
    full window from now. Exit 1 if one was not paused."""

    async def work(store: SilenceStore) -> tuple[list[str], bool]:
        now = time.time()
        paused = _pauses(await store.entries(), now)
        lines, missing = [], False
        for p in dict.fromkeys(patterns):
            if p not in paused:
                lines.append(f"nats-heartbeat: {p} is not paused")
                missing = True
                continue
            for s in paused[p]:
                await store.end(s.id, now)
                lines.append(f"resumed {p} (id {s.id})")
        return lines, missing

    lines, missing = _run(nats_url, silence_bucket, replicas, debug, work)
    for line in lines:
        click.echo(line, err=line.startswith("nats-heartbeat:"))
    if missing:
        raise SystemExit(1)
