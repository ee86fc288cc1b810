"""The heartbeat wire format, shared byte for byte with the Go implementation.

A heartbeat is one JSON object, published on its own subject::

    {"subject":"heartbeat.service.api","generated_at":"2024-06-01T12:00:00.123456Z",
     "interval":15000000000,"grace_period":45000000000,"host":"api-1","description":"API"}

Durations are integer nanoseconds (Go ``time.Duration``), ``generated_at`` is
RFC 3339 with up to nine fractional digits, optional fields are omitted when
unset, unknown fields are ignored.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone
from functools import lru_cache
from zoneinfo import ZoneInfo

import msgspec
from cronsim import CronSim, CronSimError

from heartbeat.durations import (
    MAX_DURATION_NS,
    MICROSECOND,
    format_duration,
    micro_ns,
    ns_to_timedelta,
    to_ns,
    window_of,
)
from heartbeat.errors import InvalidHeartbeat, InvalidSubject

_TOKEN = re.compile(r"[A-Za-z0-9_\-/=]+")
_SUBJECT = re.compile(r"[A-Za-z0-9_\-/=]+(?:\.[A-Za-z0-9_\-/=]+)*")  # every token as _TOKEN
_RFC3339 = re.compile(
    r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]+))?"
    r"(Z|[+-][0-9]{2}:[0-9]{2})"
)
_GO_ESCAPES = (
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)


class Message(msgspec.Struct, kw_only=True, frozen=True):
    """One heartbeat.

    ``generated_at`` and ``host`` may be left unset; :class:`heartbeat.Publisher`
    fills them (now, in UTC, and the local hostname).  ``grace_period`` of
    ``None`` means unset: the monitor then uses ``interval`` as the window.
    """

    subject: str
    interval: timedelta
    generated_at: datetime | None = None
    grace_period: timedelta | None = None
    host: str = ""
    description: str = ""
    # Job fields (docs/architecture.md "Job beats"); unset ones are not sent.
    kind: str = "beat"  # beat | start | success | fail
    run_id: str = ""
    exit_code: int | None = None  # success and fail only
    duration: timedelta | None = None  # success and fail only
    output: str = ""  # success and fail only: the run's last output, <= OUTPUT_MAX bytes
    schedule: str = ""  # cron, 5 fields (or 6 with seconds first)
    timezone: str = ""  # IANA zone of the schedule; "" is UTC
    max_runtime: timedelta | None = None

    @property
    def window(self) -> timedelta:
        """The silence allowed before the subject counts as missing."""
        return window_of(self.interval, self.grace_period)


class _GoWire(msgspec.Struct, gc=False, forbid_unknown_fields=True):
    """The JSON object as Go's encoding/json reads it (nulls mean zero values), with no
    other field: what the ingest fast path reads (a job field fails this decode).

    ``gc=False``: strings and numbers only; one is decoded per heartbeat, outside
    the cycle collector's bookkeeping.
    """

    subject: str | None = None
    generated_at: str | None = None
    interval: int | None = None
    grace_period: int | None = None
    host: str | None = None
    description: str | None = None


class _Wire(_GoWire, forbid_unknown_fields=False):
    """Go's fields and the job fields; unknown fields are ignored, as Go does."""

    kind: str | None = None
    run_id: str | None = None
    exit_code: int | None = None
    duration: int | None = None
    output: str | None = None
    schedule: str | None = None
    timezone: str | None = None
    max_runtime: int | None = None

    @property
    def plain(self) -> bool:
        """No job field is set: a beat as the Go tool sends it."""
        return (
            self.kind is None
            and self.run_id is None
            and self.exit_code is None
            and self.duration is None
            and self.output is None
            and self.schedule is None
            and self.timezone is None
            and self.max_runtime is None
        )


_decoder = msgspec.json.Decoder(_Wire)
_encoder = msgspec.json.Encoder()


def read_wire(data: bytes | str) -> _Wire | None:
    """The payload's fields as sent, unchecked; None when it is not such a JSON object
    (including one nested past the decoder's recursion guard)."""
    try:
        return _decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        return None


_go_decoder = msgspec.json.Decoder(_GoWire)


def read_go_wire(data: bytes | str) -> _GoWire | None:
    """Go's six fields as sent, unchecked; None when it is not such a JSON object or has
    any other field (then :func:`read_wire` and the full checks apply)."""
    try:
        return _go_decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError):
        return None


# nats-server's default max_control_line: the operation line ("PUB <subject> <reply>
# <size>") of every message must fit, or the server closes the connection.
MAX_CONTROL_LINE = 4096
# nats-py's reply inboxes are "_INBOX.<22>.<22>" (52 characters); room for custom prefixes.
REPLY_ALLOWANCE = 128
_SIZE_DIGITS = 20  # any message or header size, in decimal


def max_subject_length(
    bucket: str,
    *,
    control_line: int = MAX_CONTROL_LINE,
    reply_allowance: int = REPLY_ALLOWANCE,
) -> int:
    """The longest heartbeat subject whose key in KV ``bucket`` every KV operation can use.

    The longest operation lines on a key are a direct get
    (``PUB $JS.API.DIRECT.GET.KV_<bucket>.$KV.<bucket>.<key> <reply> <size>``) and a
    compare-and-set put (``HPUB $KV.<bucket>.<key> <reply> <header size> <size>``); both
    are counted with ``reply_allowance`` for the reply subject, 20 digits per size and
    the line's CRLF, so whatever the client chooses the line fits ``control_line``.
    """
    tail = 1 + reply_allowance + 2 * (1 + _SIZE_DIGITS) + 2  # " <reply> <n> <n>\r\n"
    put = len(f"HPUB $KV.{bucket}.") + tail
    get = len(f"PUB $JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}.") + tail
    return control_line - max(put, get)


def is_valid_subject(subject: str) -> bool:
    """Whether :func:`validate_subject` accepts ``subject`` (without building an error)."""
    return _SUBJECT.fullmatch(subject) is not None


def validate_subject(subject: str) -> str:
    """Return ``subject`` if heartbeats can be published and tracked on it.

    Each dot-separated token must be non-empty and use only ``A-Z a-z 0-9 _ - / =``
    (the characters a NATS subject and a KV key both accept), so no wildcards.
    """
    if _SUBJECT.fullmatch(subject):  # the common case in one match; errors need the loop
        return subject
    if not subject:
        raise InvalidSubject("subject is required")
    for token in subject.split("."):
        if not token:
            raise InvalidSubject(f"subject {subject!r} has an empty token")
        if token in ("*", ">") or "*" in token or ">" in token:
            raise InvalidSubject(f"subject {subject!r} contains a wildcard ('*' or '>')")
        if any(c.isspace() for c in token):
            raise InvalidSubject(f"subject {subject!r} contains whitespace")
        if not _TOKEN.fullmatch(token):
            raise InvalidSubject(
                f"subject {subject!r}: token {token!r} may only use letters, digits and _-/="
            )
    return subject


def format_time(value: datetime) -> str:
    """RFC 3339 as Go's ``time.RFC3339Nano`` prints it (trailing zeros dropped)."""
    if value.tzinfo is None:
        raise InvalidHeartbeat("generated_at must be timezone-aware", "bad_time")
    offset = value.utcoffset() or timedelta(0)
    # not strftime: its %Y does not pad years before 1000 to four digits
    base = (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}"
        f"T{value.hour:02d}:{value.minute:02d}:{value.second:02d}"
    )
    frac = f".{value.microsecond:06d}".rstrip("0") if value.microsecond else ""
    if offset == timedelta(0):
        zone = "Z"
    else:
        total = int(offset / timedelta(minutes=1))  # toward zero, as Go
        sign = "-" if total < 0 else "+"
        hours, minutes = divmod(abs(total), 60)
        zone = f"{sign}{hours:02d}:{minutes:02d}"
    return f"{base}{frac}{zone}"


def parse_time(text: str) -> datetime:
    """Parse RFC 3339; Go reads up to nine fractional digits, this keeps microseconds."""
    m = _RFC3339.fullmatch(text)
    if m is None:
        raise InvalidHeartbeat(f"generated_at {text!r} is not RFC 3339", "bad_time")
    year, month, day, hour, minute, second = (int(g) for g in m.groups()[:6])
    frac, zone = m.group(7) or "", m.group(8)
    micro = int((frac + "000000000")[:9]) // MICROSECOND
    if zone == "Z":
        tz: timezone = UTC
    else:
        sign = -1 if zone[0] == "-" else 1
        hh, mm = int(zone[1:3]), int(zone[4:6])
        if hh > 23 or mm > 59:
            raise InvalidHeartbeat(f"generated_at {text!r} has a bad offset", "bad_time")
        tz = timezone(sign * timedelta(hours=hh, minutes=mm))
    try:
        value = datetime(year, month, day, hour, minute, second, micro, tzinfo=tz)
        value.astimezone(UTC)  # instants before year 1 in UTC cannot be represented
    except (ValueError, OverflowError) as e:
        raise InvalidHeartbeat(f"generated_at {text!r} is not a valid time", "bad_time") from e
    return value


# Minutes ("YYYY-MM-DDTHH:MM", year >= 1000) known to be valid: a UTC time within one of
# them is valid if its seconds are (see known_valid_time).  Beats arrive within a few
# minutes of each other, so this stays tiny; it is cleared if it ever grows.
_valid_minutes: set[str] = set()
_MAX_MINUTES = 1024
_SECONDS_Z = re.compile(r":[0-5][0-9](?:\.[0-9]{1,9})?Z")  # what may follow a valid minute
_FRACTION = re.compile(r"\.([0-9]+)")


def known_valid_time(text: str) -> bool:
    """True if ``text`` is a UTC time in a minute seen before, which :func:`parse_time`
    accepts; False if it cannot tell (not that ``text`` is invalid).

    The monitor checks every heartbeat's ``generated_at``; parsing costs ~5 µs, this
    ~0.25 µs.  It accepts only ``<known minute>:SS[.up to 9 digits]Z``, where validity
    needs nothing more than ``SS < 60``; for anything else the caller takes the full
    path (and calls :func:`learn_minute` when that succeeds).
    """
    return text[:16] in _valid_minutes and _SECONDS_Z.fullmatch(text, 16) is not None


def kept_time(text: str, value: datetime) -> str:
    """``generated_at`` as a monitor keeps it: ``text`` (valid, parsed as ``value``) as
    sent, unless its fraction runs past nanoseconds (Go accepts any number of digits):
    then ``format_time(value)``, so a record does not grow with a padded payload."""
    m = _FRACTION.search(text, 19)
    return format_time(value) if m is not None and len(m.group(1)) > 9 else text


def learn_minute(value: datetime) -> None:
    """Let :func:`known_valid_time` vouch for UTC times in ``value``'s minute (``value``
    is valid)."""
    if value.year < 1000 or value.utcoffset() != timedelta(0):
        return  # keeps Go's zero time, odd years and offsets on the full path
    if len(_valid_minutes) >= _MAX_MINUTES:
        _valid_minutes.clear()
    _valid_minutes.add(
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T{value.hour:02d}:{value.minute:02d}"
    )


GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)  # Go's time.Time{}, what a Go sender leaves unset


def _is_go_zero(value: datetime) -> bool:
    return value == GO_ZERO_TIME  # compares instants; astimezone() overflows near year 1


def validate(msg: Message) -> Message:
    """Check the rules Go's ``Message.Validate`` checks; return ``msg`` if they hold."""
    if not msg.subject:
        raise InvalidHeartbeat("subject is required", "missing_subject")
    if msg.generated_at is None:
        raise InvalidHeartbeat("generated_at is required", "missing_generated_at")
    if msg.generated_at.tzinfo is None:
        raise InvalidHeartbeat("generated_at must be timezone-aware", "bad_time")
    if _is_go_zero(msg.generated_at):
        raise InvalidHeartbeat("generated_at is required", "missing_generated_at")
    if msg.interval <= timedelta(0):
        raise InvalidHeartbeat(
            f"interval must be >0, got {format_duration(msg.interval)}", "bad_interval"
        )
    if to_ns(msg.interval) > MAX_DURATION_NS:
        raise InvalidHeartbeat("interval overflows a Go duration", "bad_interval")
    if msg.grace_period is not None and msg.grace_period < timedelta(0):
        raise InvalidHeartbeat("grace period cannot be negative", "bad_grace")
    if msg.grace_period is not None and to_ns(msg.grace_period) > MAX_DURATION_NS:
        raise InvalidHeartbeat("grace period overflows a Go duration", "bad_grace")
    return _validate_job(msg)


# ----- job fields: optional, after Go's, omitted when unset (a plain beat is unchanged) -----

KINDS = ("beat", "start", "success", "fail")
FINISHED = ("success", "fail")
OUTPUT_MAX = 4096  # bytes of UTF-8: the tail of a run's output
RUN_ID_MAX = 128
SCHEDULE_MAX = 256
TIMEZONE_MAX = 64
EXIT_CODE_MIN, EXIT_CODE_MAX = -(1 << 31), (1 << 32) - 1  # POSIX statuses, Windows codes


def _job_error(field: str, problem: str) -> InvalidHeartbeat:
    return InvalidHeartbeat(f"{field} {problem}", f"bad_{field}")


def _validate_job(msg: Message) -> Message:
    """Reject job fields that make no sense; the rules are in docs/architecture.md."""
    if msg.kind not in KINDS:
        raise _job_error("kind", f"{msg.kind!r} is not one of {', '.join(KINDS)}")
    if len(msg.run_id) > RUN_ID_MAX or not msg.run_id.isprintable():
        raise _job_error("run_id", f"must be printable and at most {RUN_ID_MAX} characters")
    if msg.kind not in FINISHED:
        _check_unfinished(msg)
    if msg.exit_code is not None:
        if not EXIT_CODE_MIN <= msg.exit_code <= EXIT_CODE_MAX:
            raise _job_error("exit_code", f"{msg.exit_code} is out of range")
        if msg.kind == "success" and msg.exit_code != 0:
            raise _job_error("exit_code", f"{msg.exit_code} is not a success")
    _check_span("duration", msg.duration, allow_zero=True)
    if len(msg.output) > OUTPUT_MAX or len(msg.output.encode(errors="replace")) > OUTPUT_MAX:
        raise _job_error("output", f"is longer than {OUTPUT_MAX} bytes (send the tail)")
    if msg.schedule and not _valid_schedule(msg.schedule):
        raise _job_error("schedule", f"{msg.schedule[:SCHEDULE_MAX]!r} is not a cron expression")
    if msg.timezone and not msg.schedule:
        raise _job_error("timezone", "needs a schedule")
    if msg.timezone and not _valid_zone(msg.timezone):
        raise _job_error("timezone", f"{msg.timezone[:TIMEZONE_MAX]!r} is not a known time zone")
    _check_span("max_runtime", msg.max_runtime, allow_zero=False)
    return msg


def _check_unfinished(msg: Message) -> None:
    """A run not finished has no exit code, duration or output."""
    for field, value in (
        ("exit_code", msg.exit_code),
        ("duration", msg.duration),
        ("output", msg.output or None),
    ):
        if value is not None:
            problem = f"belongs to a finished run (success or fail), not {msg.kind!r}"
            raise _job_error(field, problem)


def _check_span(field: str, value: timedelta | None, *, allow_zero: bool) -> None:
    if value is None:
        return
    if value < timedelta(0) or (value == timedelta(0) and not allow_zero):
        raise _job_error(field, "must be >= 0" if allow_zero else "must be > 0")
    if to_ns(value) > MAX_DURATION_NS:
        raise _job_error(field, "overflows a Go duration")


@lru_cache(maxsize=256)
def _valid_schedule(expr: str) -> bool:
    """Whether cronsim reads ``expr``: 5 fields (minute first) or 6 (second first)."""
    if len(expr) > SCHEDULE_MAX or not (expr.isascii() and expr.isprintable()):
        return False
    try:
        CronSim(expr, datetime(2000, 1, 1))
    except (CronSimError, ValueError, LookupError, ArithmeticError):
        return False
    return True


@lru_cache(maxsize=256)
def _valid_zone(name: str) -> bool:
    """Whether ``name`` is an IANA time zone this machine (or the tzdata package) knows."""
    if len(name) > TIMEZONE_MAX or not (name.isascii() and name.isprintable()):
        return False
    try:
        ZoneInfo(name)
    except (KeyError, ValueError, OSError, UnicodeError):  # ZoneInfoNotFoundError is a KeyError
        return False
    return True


def encode(msg: Message) -> bytes:
    """Validate ``msg`` and render it as Go's ``json.Marshal`` would."""
    validate(msg)
    assert msg.generated_at is not None
    obj: dict[str, object] = {
        "subject": msg.subject,
        "generated_at": format_time(msg.generated_at),
        "interval": to_ns(msg.interval),
    }
    if msg.grace_period is not None:
        obj["grace_period"] = to_ns(msg.grace_period)
    if msg.host:
        obj["host"] = msg.host
    if msg.description:
        obj["description"] = msg.description
    if msg.kind != "beat":
        obj["kind"] = msg.kind
    if msg.run_id:
        obj["run_id"] = msg.run_id
    if msg.exit_code is not None:
        obj["exit_code"] = msg.exit_code
    if msg.duration is not None:
        obj["duration"] = to_ns(msg.duration)
    for field, text in (
        ("output", msg.output),
        ("schedule", msg.schedule),
        ("timezone", msg.timezone),
    ):
        if text:
            obj[field] = text
    if msg.max_runtime is not None:
        obj["max_runtime"] = to_ns(msg.max_runtime)
    data = _encoder.encode(obj)
    for raw, escaped in _GO_ESCAPES:
        if raw in data:
            data = data.replace(raw, escaped)
    return data


def _duration(value: int | None, field: str) -> int:
    if value is None:
        return 0
    if not -MAX_DURATION_NS - 1 <= value <= MAX_DURATION_NS:
        raise InvalidHeartbeat(f"{field} {value} overflows a Go duration", f"bad_{field}")
    return value


def _positive_timedelta(ns: int) -> timedelta:
    """Truncate to microseconds, but keep 1..999ns (valid in Go) above zero as 1µs."""
    return ns_to_timedelta(micro_ns(ns))


def decode(data: bytes | str) -> Message:
    """Parse and validate a heartbeat payload; raise :class:`InvalidHeartbeat` otherwise."""
    try:
        wire = _decoder.decode(data)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        raise InvalidHeartbeat(f"malformed heartbeat JSON: {e}", "malformed") from e
    except RecursionError as e:  # msgspec's guard: it stops there, nothing deeper is read
        raise InvalidHeartbeat("heartbeat JSON is nested too deeply", "too_deep") from e
    if wire.generated_at is None:
        raise InvalidHeartbeat("generated_at is required", "missing_generated_at")
    interval_ns = _duration(wire.interval, "interval")
    if interval_ns <= 0:
        raise InvalidHeartbeat(f"interval must be >0, got {interval_ns}ns", "bad_interval")
    grace = None
    if wire.grace_period is not None:
        grace_ns = _duration(wire.grace_period, "grace")
        if grace_ns < 0:
            raise InvalidHeartbeat("grace period cannot be negative", "bad_grace")
        grace = _positive_timedelta(grace_ns)
    msg = Message(
        subject=wire.subject or "",
        generated_at=parse_time(wire.generated_at),
        interval=_positive_timedelta(interval_ns),
        grace_period=grace,
        host=wire.host or "",
        description=wire.description or "",
    )
    if not wire.plain:
        msg = _with_job(msg, wire)
    return validate(msg)


def _span(ns: int | None, field: str) -> timedelta | None:
    if ns is not None and _duration(ns, field) < 0:  # before truncation: -1ns is not 0
        raise _job_error(field, "must not be negative")
    return None if ns is None else _positive_timedelta(ns)


def _with_job(msg: Message, wire: _Wire) -> Message:
    """``msg`` with the job fields of ``wire`` (durations as for interval)."""
    duration, max_runtime = _span(wire.duration, "duration"), _span(wire.max_runtime, "max_runtime")
    return msgspec.structs.replace(
        msg,
        kind="beat" if wire.kind is None else wire.kind,
        run_id=wire.run_id or "",
        exit_code=wire.exit_code,
        duration=duration,
        output=wire.output or "",
        schedule=wire.schedule or "",
        timezone=wire.timezone or "",
        max_runtime=max_runtime,
    )
