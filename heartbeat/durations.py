"""Go ``time.Duration`` syntax: parse ``1m30s`` and format like ``Duration.String()``.

Durations travel as integer nanoseconds on the wire; inside the package they are
``timedelta``.  These helpers convert between the three forms.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TypeVar

from heartbeat.errors import InvalidDuration

T = TypeVar("T", int, timedelta)

NANOSECOND = 1
MICROSECOND = 1000 * NANOSECOND
MILLISECOND = 1000 * MICROSECOND
SECOND = 1000 * MILLISECOND
MINUTE = 60 * SECOND
HOUR = 60 * MINUTE

_UNITS: dict[str, int] = {
    "ns": NANOSECOND,
    "us": MICROSECOND,
    "µs": MICROSECOND,  # U+00B5 micro sign
    "μs": MICROSECOND,  # U+03BC greek mu
    "ms": MILLISECOND,
    "s": SECOND,
    "m": MINUTE,
    "h": HOUR,
}
_PART = re.compile(r"([0-9]*)(?:\.([0-9]*))?([a-zµμ]+)")  # ASCII digits only, as Go
MAX_DURATION_NS = (1 << 63) - 1


def parse_duration_ns(text: str) -> int:
    """Parse a Go duration string into integer nanoseconds.

    Accepts what Go's ``time.ParseDuration`` accepts: an optional sign, then one
    or more decimal numbers each with a unit (``ns us µs ms s m h``), or a bare
    ``0``.
    """
    s = text.strip()
    if not s:
        raise InvalidDuration(f"invalid duration {text!r}: empty")
    sign = 1
    if s[0] in "+-":
        sign = -1 if s[0] == "-" else 1
        s = s[1:]
    if s == "0":
        return 0
    if not s:
        raise InvalidDuration(f"invalid duration {text!r}")
    limit = MAX_DURATION_NS + 1 if sign < 0 else MAX_DURATION_NS  # Go accepts math.MinInt64
    total = 0
    pos = 0
    while pos < len(s):
        m = _PART.match(s, pos)
        if m is None or m.end() == pos:
            raise InvalidDuration(f"invalid duration {text!r}")
        whole, frac, unit = m.group(1), m.group(2), m.group(3)
        if not whole and not frac:
            raise InvalidDuration(f"invalid duration {text!r}: missing number")
        if unit not in _UNITS:
            raise InvalidDuration(f"invalid duration {text!r}: unknown unit {unit!r}")
        scale = _UNITS[unit]
        whole = whole.lstrip("0")
        if len(whole) > 19:
            raise InvalidDuration(f"invalid duration {text!r}: overflow")
        value = int(whole or "0") * scale
        f, f_scale = _leading_fraction(frac or "")
        if f > 0:
            # Go computes the fraction in float64; do the same to get the same nanosecond.
            value += int(float(f) * (float(scale) / f_scale))
        total += value
        if total > limit:
            raise InvalidDuration(f"invalid duration {text!r}: overflow")
        pos = m.end()
    return sign * total


def _leading_fraction(digits: str) -> tuple[int, float]:
    """Go's leadingFraction: the digits as an integer and 10**n, ignoring digits past int64."""
    x, scale = 0, 1.0
    for c in digits:
        if x > MAX_DURATION_NS // 10:
            break
        y = x * 10 + ord(c) - ord("0")
        if y > 1 << 63:
            break
        x, scale = y, scale * 10
    return x, scale


def parse_duration(text: str) -> timedelta:
    """Parse a Go duration string into a ``timedelta`` (microsecond precision)."""
    return ns_to_timedelta(parse_duration_ns(text))


def _fmt_frac(v: int, prec: int) -> tuple[str, int]:
    """Go's fmtFrac: the fraction of v/10**prec without trailing zeros."""
    digits = ""
    printed = False
    for _ in range(prec):
        digit = v % 10
        printed = printed or digit != 0
        if printed:
            digits = str(digit) + digits
        v //= 10
    return ("." + digits if printed else ""), v


def format_duration_ns(ns: int) -> str:
    """Format integer nanoseconds exactly as Go's ``Duration.String()`` does."""
    neg = ns < 0
    u = -ns if neg else ns
    if u < SECOND:
        if u == 0:
            return "0s"
        if u < MICROSECOND:
            out = f"{u}ns"
        elif u < MILLISECOND:
            frac, whole = _fmt_frac(u, 3)
            out = f"{whole}{frac}µs"
        else:
            frac, whole = _fmt_frac(u, 6)
            out = f"{whole}{frac}ms"
    else:
        frac, secs = _fmt_frac(u, 9)
        out = f"{secs % 60}{frac}s"
        mins = secs // 60
        if mins > 0:
            out = f"{mins % 60}m{out}"
            hours = mins // 60
            if hours > 0:
                out = f"{hours}h{out}"
    return "-" + out if neg else out


def format_duration(value: timedelta | float) -> str:
    """Format a ``timedelta`` (or float seconds) as Go's ``Duration.String()``."""
    return format_duration_ns(to_ns(value))


def to_ns(value: timedelta | float) -> int:
    """Integer nanoseconds of a ``timedelta`` or of float seconds."""
    if isinstance(value, timedelta):
        return (value.days * 86_400 + value.seconds) * SECOND + value.microseconds * MICROSECOND
    return round(value * SECOND)


def micro_ns(ns: int) -> int:
    """What the wire keeps of a duration: truncated to microseconds, a positive one
    at least 1 µs (1..999 ns is a valid Go duration, and must not become zero)."""
    return max(ns, MICROSECOND) // MICROSECOND * MICROSECOND if ns > 0 else ns


def window_of(interval: T, grace: T | None) -> T:
    """The silence a heartbeat allows: its grace period when set and positive, else
    its interval (the one rule, for the wire, records and beats alike)."""
    return grace if grace else interval


def ns_to_timedelta(ns: int) -> timedelta:
    """A ``timedelta`` from integer nanoseconds (truncated to microseconds, toward zero)."""
    us = abs(ns) // MICROSECOND
    return timedelta(microseconds=-us if ns < 0 else us)
