"""Go ``time.Duration`` syntax: ``time.ParseDuration`` and ``Duration.String()``.

Expected values come from Go's own tables in ``src/time/time_test.go``
(``parseDurationTests``, ``parseDurationErrorTests``, ``durationTests``) plus the
cases the project relies on.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heartbeat.durations import (
    HOUR,
    MICROSECOND,
    MILLISECOND,
    MINUTE,
    NANOSECOND,
    SECOND,
    format_duration,
    format_duration_ns,
    ns_to_timedelta,
    parse_duration,
    parse_duration_ns,
    to_ns,
)
from heartbeat.errors import InvalidDuration

MAX_NS = (1 << 63) - 1
MIN_NS = -(1 << 63)

# ---------------------------------------------------------------------------
# parse_duration_ns
# ---------------------------------------------------------------------------

PARSE_OK = [
    # the cases the project uses
    ("15s", 15 * SECOND),
    ("1m30s", MINUTE + 30 * SECOND),
    ("1.5h", HOUR + 30 * MINUTE),
    ("200ms", 200 * MILLISECOND),
    ("2us", 2 * MICROSECOND),
    ("2\u00b5s", 2 * MICROSECOND),  # U+00B5 micro sign
    ("2\u03bcs", 2 * MICROSECOND),  # U+03BC greek small letter mu
    ("1h2m3.5s", HOUR + 2 * MINUTE + 3 * SECOND + 500 * MILLISECOND),
    (".5s", 500 * MILLISECOND),
    ("5.s", 5 * SECOND),
    ("-1.5s", -1500 * MILLISECOND),
    ("+3s", 3 * SECOND),
    ("0", 0),
    ("1ns", NANOSECOND),
    # Go's parseDurationTests
    ("5s", 5 * SECOND),
    ("30s", 30 * SECOND),
    ("1478s", 1478 * SECOND),
    ("-5s", -5 * SECOND),
    ("+5s", 5 * SECOND),
    ("-0", 0),
    ("+0", 0),
    ("5.0s", 5 * SECOND),
    ("5.6s", 5 * SECOND + 600 * MILLISECOND),
    ("1.0s", SECOND),
    ("1.00s", SECOND),
    ("1.004s", SECOND + 4 * MILLISECOND),
    ("1.0040s", SECOND + 4 * MILLISECOND),
    ("100.00100s", 100 * SECOND + MILLISECOND),
    ("10ns", 10 * NANOSECOND),
    ("11us", 11 * MICROSECOND),
    ("12µs", 12 * MICROSECOND),
    ("12μs", 12 * MICROSECOND),
    ("13ms", 13 * MILLISECOND),
    ("14s", 14 * SECOND),
    ("15m", 15 * MINUTE),
    ("16h", 16 * HOUR),
    ("3h30m", 3 * HOUR + 30 * MINUTE),
    ("10.5s4m", 4 * MINUTE + 10 * SECOND + 500 * MILLISECOND),
    ("-2m3.4s", -(2 * MINUTE + 3 * SECOND + 400 * MILLISECOND)),
    ("1h2m3s4ms5us6ns", HOUR + 2 * MINUTE + 3 * SECOND + 4 * MILLISECOND + 5 * MICROSECOND + 6),
    ("39h9m14.425s", 39 * HOUR + 9 * MINUTE + 14 * SECOND + 425 * MILLISECOND),
    ("52763797000ns", 52763797000),
    # more than 9 digits after the point (golang.org/issue/6617); Go computes the
    # fraction in float64, so this is exactly 20 minutes, not 19m59.999999999s
    ("0.3333333333333333333h", 20 * MINUTE),
    ("9007199254740993ns", (1 << 53) + 1),  # not exact in a float64
    ("9223372036854775807ns", MAX_NS),
    ("9223372036854775.807us", MAX_NS),
    ("9223372036s854ms775us807ns", MAX_NS),
    ("-9223372036854775808ns", MIN_NS),
    ("-9223372036854775.808us", MIN_NS),
    ("-9223372036s854ms775us808ns", MIN_NS),
    ("-2562047h47m16.854775808s", MIN_NS),  # golang.org/issue/48629
    ("0.100000000000000000000h", 6 * MINUTE),  # golang.org/issue/15011
    ("0.830103483285477580700h", 49 * MINUTE + 48 * SECOND + 372539827),
    # fractions finer than the unit are truncated
    ("1.9ns", 1),
    ("0.0000000019s", 1),
    # leading zeros and very long fractions are fine in Go
    ("00000000000000000000000001s", SECOND),
    ("1." + "0" * 5000 + "1s", SECOND),
    ("0" * 5000 + "1s", SECOND),
    ("1.5m1.5m", 3 * MINUTE),
]


@pytest.mark.parametrize(("text", "ns"), PARSE_OK)
def test_parse_duration_ns_accepts_what_go_accepts(text: str, ns: int) -> None:
    assert parse_duration_ns(text) == ns


PARSE_ERRORS = [
    "",
    "10",
    "3",
    "1x",
    "1d",
    "s",
    ".s",
    "+.s",
    "-.s",
    ".",
    "-.",
    "-",
    "+",
    "1.2.3s",
    "--1s",
    "+-1s",
    "-+1s",
    "1s-1s",
    "1s2",
    "1 s",
    "1S",
    "1Ms",
    "1sec",
    "1µ",
    "00",
    "0x10s",
    "1e3s",
    "\x85\x85",
    "\ufffd",
    "\ufffd hello \ufffd world",
    "hello world",
    "١s",  # ARABIC-INDIC DIGIT ONE: Go takes ASCII digits only
    "１s",  # FULLWIDTH DIGIT ONE
    "1.\u0661s",
    # overflow past int64 nanoseconds
    "9223372036854775808ns",
    "9223372036854775810ns",
    "-9223372036854775809ns",
    "9223372036854776us",
    "3000000h",
    "9223372036854775.808us",
    "9223372036854ms775us808ns",
    "2562047h47m16.854775808s",
    "2562048h",
    "99999999999999999999999999h",
    "1" + "0" * 5000 + "s",
]


@pytest.mark.parametrize("text", PARSE_ERRORS)
def test_parse_duration_ns_rejects_what_go_rejects(text: str) -> None:
    with pytest.raises(InvalidDuration):
        parse_duration_ns(text)


@pytest.mark.parametrize("text", [" 15s", "15s ", "\t1m30s\n"])
def test_surrounding_whitespace_is_tolerated(text: str) -> None:
    # Deliberately more lenient than Go (whose ParseDuration rejects " 15s"):
    # parse_duration_ns strips the text first, which helps with env values.
    assert parse_duration_ns(text) == parse_duration_ns(text.strip())


def test_invalid_duration_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration_ns("1x")


# ---------------------------------------------------------------------------
# format_duration_ns
# ---------------------------------------------------------------------------

FORMAT = [
    (0, "0s"),
    (1, "1ns"),
    (999, "999ns"),
    (1000, "1µs"),
    (1100, "1.1µs"),
    (1500, "1.5µs"),
    (999_999, "999.999µs"),
    (1_000_000, "1ms"),
    (1_000_001, "1.000001ms"),
    (1_500_000, "1.5ms"),
    (2_200_000, "2.2ms"),
    (100_000_000, "100ms"),
    (150_000_000, "150ms"),
    (999_999_999, "999.999999ms"),
    (1_000_000_000, "1s"),
    (1_000_000_001, "1.000000001s"),
    (1_500_000_000, "1.5s"),
    (3_300_000_000, "3.3s"),
    (59 * SECOND, "59s"),
    (60 * SECOND, "1m0s"),
    (90 * SECOND, "1m30s"),
    (4 * MINUTE + 5 * SECOND, "4m5s"),
    (4 * MINUTE + 5001 * MILLISECOND, "4m5.001s"),
    (8 * MINUTE + 1, "8m0.000000001s"),
    (3600 * SECOND, "1h0m0s"),
    (3723 * SECOND + 500 * MILLISECOND, "1h2m3.5s"),
    (5 * HOUR + 6 * MINUTE + 7001 * MILLISECOND, "5h6m7.001s"),
    (100 * HOUR, "100h0m0s"),
    (3_522_032_062, "3.522032062s"),  # the Go monitor's miss_for in DESIGN 7
    (MAX_NS, "2562047h47m16.854775807s"),
    (-1, "-1ns"),
    (-1500, "-1.5µs"),
    (-1_500_000, "-1.5ms"),
    (-1_500_000_000, "-1.5s"),
    (-90 * SECOND, "-1m30s"),
    (-(3723 * SECOND + 500 * MILLISECOND), "-1h2m3.5s"),
    (MIN_NS, "-2562047h47m16.854775808s"),
]


@pytest.mark.parametrize(("ns", "text"), FORMAT)
def test_format_duration_ns_matches_go_string(ns: int, text: str) -> None:
    assert format_duration_ns(ns) == text


def test_format_uses_the_micro_sign_u00b5() -> None:
    assert format_duration_ns(1500) == "1.5\u00b5s"


@pytest.mark.parametrize(("ns", "text"), FORMAT)
def test_go_string_parses_back(ns: int, text: str) -> None:
    assert parse_duration_ns(text) == ns


# ---------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------

int64s = st.one_of(
    st.integers(MIN_NS, MAX_NS),
    st.sampled_from([MIN_NS, MIN_NS + 1, -1, 0, 1, MAX_NS - 1, MAX_NS]),
    st.integers(-10 * HOUR, 10 * HOUR),
)


@settings(deadline=None)
@given(int64s)
def test_format_then_parse_round_trips(ns: int) -> None:
    assert parse_duration_ns(format_duration_ns(ns)) == ns


@settings(deadline=None)
@given(int64s)
def test_format_is_canonical(ns: int) -> None:
    text = format_duration_ns(ns)
    assert format_duration_ns(parse_duration_ns(text)) == text
    assert text.startswith("-") == (ns < 0)


def _go_parse_duration(s: str) -> int | None:  # noqa: C901 (mirrors Go line by line)
    """A line-by-line transliteration of Go's ``time.ParseDuration`` (None = error).

    Go works on bytes; the only non-ASCII bytes it accepts are those of the
    ``µs``/``μs`` units, so walking code points is equivalent.  Go's uint64 ``d``
    could wrap on two parts of exactly 1<<63 each; Python ints do not model that.
    """
    units = {
        "ns": 1,
        "us": MICROSECOND,
        "µs": MICROSECOND,
        "μs": MICROSECOND,
        "ms": MILLISECOND,
        "s": SECOND,
        "m": MINUTE,
        "h": HOUR,
    }
    d = 0
    neg = False
    if s and s[0] in "-+":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if s == "":
        return None
    while s:
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            return None
        # leadingInt
        i, v = 0, 0
        while i < len(s) and "0" <= s[i] <= "9":
            if v > (1 << 63) // 10:
                return None
            v = v * 10 + ord(s[i]) - 48
            if v > 1 << 63:
                return None
            i += 1
        pre = i > 0
        s = s[i:]
        post, f, scale = False, 0, 1.0
        if s and s[0] == ".":
            s = s[1:]
            i, overflow = 0, False
            while i < len(s) and "0" <= s[i] <= "9":
                if not overflow:
                    if f > ((1 << 63) - 1) // 10:
                        overflow = True
                    else:
                        y = f * 10 + ord(s[i]) - 48
                        if y > 1 << 63:
                            overflow = True
                        else:
                            f, scale = y, scale * 10
                i += 1
            post = i > 0
            s = s[i:]
        if not pre and not post:
            return None
        i = 0
        while i < len(s) and not (s[i] == "." or "0" <= s[i] <= "9"):
            i += 1
        if i == 0:
            return None
        unit = units.get(s[:i])
        s = s[i:]
        if unit is None:
            return None
        if v > (1 << 63) // unit:
            return None
        v *= unit
        if f > 0:
            v += int(float(f) * (float(unit) / scale))
            if v > 1 << 63:
                return None
        d += v
        if d > 1 << 63:
            return None
    if neg:
        return -d
    if d > (1 << 63) - 1:
        return None
    return d


_number = st.one_of(
    st.from_regex(r"[0-9]{0,4}(\.[0-9]{0,12})?", fullmatch=True),
    st.from_regex(r"[0-9]{15,21}(\.[0-9]{0,25})?", fullmatch=True),
)
_unit = st.sampled_from(["ns", "us", "µs", "μs", "ms", "s", "m", "h", "", "x", "sm", "S"])
_structured = st.builds(
    lambda sign, parts: sign + "".join(n + u for n, u in parts),
    st.sampled_from(["", "", "-", "+", "--"]),
    st.lists(st.tuples(_number, _unit), min_size=1, max_size=4),
)
# no whitespace: parse_duration_ns strips it first (see test_surrounding_whitespace_is_tolerated)
_soup = st.text(alphabet="0123456789.+-nsuµμmhx", max_size=14)


@settings(deadline=None)
@given(st.one_of(_structured, _soup))
def test_parse_matches_a_transliteration_of_go(text: str) -> None:
    expected = _go_parse_duration(text)
    if expected is None:
        with pytest.raises(InvalidDuration):
            parse_duration_ns(text)
    else:
        assert parse_duration_ns(text) == expected


@settings(deadline=None)
@given(st.text())
def test_parse_raises_only_invalid_duration(text: str) -> None:
    try:
        ns = parse_duration_ns(text)
    except InvalidDuration:
        return
    assert MIN_NS <= ns <= MAX_NS


# ---------------------------------------------------------------------------
# timedelta helpers
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "ns"),
    [
        (timedelta(0), 0),
        (timedelta(microseconds=1), 1000),
        (timedelta(seconds=1.5), 1_500_000_000),
        (timedelta(minutes=1, seconds=30), 90 * SECOND),
        (timedelta(days=1), 24 * HOUR),
        (timedelta(days=2, hours=3, microseconds=7), 51 * HOUR + 7000),
        (timedelta(microseconds=-1), -1000),
        (timedelta(days=-1, seconds=1), -(24 * HOUR - SECOND)),
        (timedelta(seconds=-1.5), -1_500_000_000),
        (0, 0),
        (1.5, 1_500_000_000),
        (0.15, 150_000_000),
        (1e-9, 1),
        (-2.25, -2_250_000_000),
        (15, 15 * SECOND),
    ],
)
def test_to_ns(value: timedelta | float, ns: int) -> None:
    assert to_ns(value) == ns


@pytest.mark.parametrize(
    ("ns", "value"),
    [
        (0, timedelta(0)),
        (999, timedelta(0)),
        (1000, timedelta(microseconds=1)),
        (1999, timedelta(microseconds=1)),
        (1_500_000_000, timedelta(seconds=1.5)),
        (-999, timedelta(0)),
        (-1999, timedelta(microseconds=-1)),  # truncated toward zero, not floored
        (-1_500_000_001, timedelta(seconds=-1.5)),
        (MAX_NS, timedelta(microseconds=MAX_NS // 1000)),
        (MIN_NS, timedelta(microseconds=-(-MIN_NS // 1000))),
    ],
)
def test_ns_to_timedelta_truncates_toward_zero(ns: int, value: timedelta) -> None:
    assert ns_to_timedelta(ns) == value


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(minutes=1, seconds=30), "1m30s"),
        (timedelta(milliseconds=150), "150ms"),
        (timedelta(microseconds=1), "1µs"),
        (timedelta(hours=1), "1h0m0s"),
        (timedelta(seconds=-1.5), "-1.5s"),
        (timedelta(days=1, seconds=1), "24h0m1s"),
        (0.15, "150ms"),
        (90, "1m30s"),
        (0.0, "0s"),
    ],
)
def test_format_duration(value: timedelta | float, text: str) -> None:
    assert format_duration(value) == text


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("15s", timedelta(seconds=15)),
        ("1m30s", timedelta(seconds=90)),
        ("1.5h", timedelta(hours=1, minutes=30)),
        ("200ms", timedelta(milliseconds=200)),
        ("0", timedelta(0)),
        ("1500ns", timedelta(microseconds=1)),  # nanoseconds are truncated
        ("999ns", timedelta(0)),
        ("-1500ns", timedelta(microseconds=-1)),
        ("-1m", timedelta(minutes=-1)),
    ],
)
def test_parse_duration_gives_timedelta(text: str, value: timedelta) -> None:
    assert parse_duration(text) == value


def test_parse_duration_rejects_like_parse_duration_ns() -> None:
    with pytest.raises(InvalidDuration):
        parse_duration("10")


timedeltas = st.timedeltas(
    min_value=timedelta(microseconds=-(MAX_NS // 1000)),
    max_value=timedelta(microseconds=MAX_NS // 1000),
)


@settings(deadline=None)
@given(timedeltas)
def test_timedelta_ns_round_trip(value: timedelta) -> None:
    assert ns_to_timedelta(to_ns(value)) == value
    assert parse_duration(format_duration(value)) == value


@settings(deadline=None)
@given(st.integers(MIN_NS, MAX_NS))
def test_ns_to_timedelta_loses_only_sub_microseconds(ns: int) -> None:
    back = to_ns(ns_to_timedelta(ns))
    assert abs(back) <= abs(ns)
    assert abs(ns - back) < MICROSECOND
    assert back % MICROSECOND == 0
