"""The heartbeat wire format, byte for byte as Go's encoding/json handles the Go struct.

The Go struct (field order = JSON key order)::

    type Message struct {
        Subject     string         `json:"subject"`
        GeneratedAt time.Time      `json:"generated_at"`
        Interval    time.Duration  `json:"interval"`
        GracePeriod *time.Duration `json:"grace_period,omitempty"`
        Host        string         `json:"host,omitempty"`
        Description string         `json:"description,omitempty"`
    }

``json.Marshal`` writes times as RFC 3339 with nanoseconds, trailing zeros
stripped, ``Z`` for UTC, and escapes ``<``, ``>``, ``&``, U+2028 and U+2029.
The fixtures below are written out by hand in that form.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from heartbeat.errors import InvalidHeartbeat, InvalidSubject
from heartbeat.schema import (
    Message,
    decode,
    encode,
    format_time,
    parse_time,
    validate,
    validate_subject,
)

MAX_NS = (1 << 63) - 1
GO_ZERO = datetime(1, 1, 1, tzinfo=UTC)
IST = timezone(timedelta(hours=5, minutes=30))
MST = timezone(timedelta(hours=-7))

# ---------------------------------------------------------------------------
# Go fixtures: exact json.Marshal output, and the Message each one stands for
# ---------------------------------------------------------------------------

# The real capture from the Go agent (DESIGN 2): 111 bytes, nanosecond time.
CAPTURE = (
    b'{"subject":"heartbeat.smoke","generated_at":"2026-11-29T01:59:06.135898385Z",'
    b'"interval":1000000000,"host":"vm"}'
)
CAPTURE_MSG = Message(
    subject="heartbeat.smoke",
    generated_at=datetime(2026, 11, 29, 1, 59, 6, 135898, tzinfo=UTC),  # ns truncated
    interval=timedelta(seconds=1),
    host="vm",
)

# Fixtures whose times have at most microsecond precision: encode() gives these
# exact bytes back.
GO_EXACT: list[tuple[str, bytes, Message]] = [
    (
        "full",
        b'{"subject":"heartbeat.service.api","generated_at":"2024-06-01T12:00:00.123456Z",'
        b'"interval":15000000000,"grace_period":45000000000,"host":"api-1",'
        b'"description":"API \\u003csvc\\u003e \\u0026 co"}',
        Message(
            subject="heartbeat.service.api",
            generated_at=datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=UTC),
            interval=timedelta(seconds=15),
            grace_period=timedelta(seconds=45),
            host="api-1",
            description="API <svc> & co",
        ),
    ),
    (
        "minimal",
        b'{"subject":"a","generated_at":"2024-06-01T12:00:00Z","interval":1000}',
        Message(
            subject="a",
            generated_at=datetime(2024, 6, 1, 12, tzinfo=UTC),
            interval=timedelta(microseconds=1),
        ),
    ),
    (
        "grace_zero_is_emitted",  # a non-nil pointer to 0 is not empty for omitempty
        b'{"subject":"heartbeat.db","generated_at":"2024-06-01T12:00:00.5Z",'
        b'"interval":60000000000,"grace_period":0,"host":"db-1"}',
        Message(
            subject="heartbeat.db",
            generated_at=datetime(2024, 6, 1, 12, 0, 0, 500000, tzinfo=UTC),
            interval=timedelta(minutes=1),
            grace_period=timedelta(0),
            host="db-1",
        ),
    ),
    (
        "offset_plus_0530",  # Go prints the time in its own zone, not in UTC
        b'{"subject":"heartbeat.in","generated_at":"2024-06-01T17:30:00.25+05:30",'
        b'"interval":300000000000,"host":"mumbai-1"}',
        Message(
            subject="heartbeat.in",
            generated_at=datetime(2024, 6, 1, 17, 30, 0, 250000, tzinfo=IST),
            interval=timedelta(minutes=5),
            host="mumbai-1",
        ),
    ),
    (
        "offset_minus_0700_description_only",
        b'{"subject":"heartbeat.us.nightly","generated_at":"2024-06-01T05:00:00.000001-07:00",'
        b'"interval":86400000000000,"grace_period":3600000000000,"description":"nightly job"}',
        Message(
            subject="heartbeat.us.nightly",
            generated_at=datetime(2024, 6, 1, 5, 0, 0, 1, tzinfo=MST),
            interval=timedelta(days=1),
            grace_period=timedelta(hours=1),
            description="nightly job",
        ),
    ),
    (
        "string_escapes",  # raw UTF-8, Go's short escapes, \u00XX for other controls
        (
            r'{"subject":"heartbeat.x","generated_at":"2024-06-01T12:00:00Z","interval":1000000000,'
            r'"host":"hôte-😀","description":"say \"hi\" \\ a\nb\tc\r\u0001\u001f'
            + "\x7f"  # Go leaves DEL alone
            + r' \u2028\u2029 \u003c\u003e\u0026 é"}'
        ).encode(),
        Message(
            subject="heartbeat.x",
            generated_at=datetime(2024, 6, 1, 12, tzinfo=UTC),
            interval=timedelta(seconds=1),
            host="hôte-\U0001f600",
            description='say "hi" \\ a\nb\tc\r\x01\x1f\x7f \u2028\u2029 <>& é',
        ),
    ),
    (
        "year_before_1000",  # Go pads the year to four digits
        b'{"subject":"a.b","generated_at":"0005-03-04T05:06:07Z","interval":1000000000}',
        Message(
            subject="a.b",
            generated_at=datetime(5, 3, 4, 5, 6, 7, tzinfo=UTC),
            interval=timedelta(seconds=1),
        ),
    ),
    (
        "largest_interval",
        b'{"subject":"a","generated_at":"9999-12-31T23:59:59.999999Z",'
        b'"interval":9223372036854775000,"grace_period":9223372036854775000}',
        Message(
            subject="a",
            generated_at=datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            interval=timedelta(microseconds=MAX_NS // 1000),
            grace_period=timedelta(microseconds=MAX_NS // 1000),
        ),
    ),
]

# Go output that is not byte-exact after a round trip (nanoseconds), or not
# what Go would write (other key order, whitespace, unknown fields, nulls).
GO_DECODE_ONLY: list[tuple[str, bytes | str, Message]] = [
    ("capture", CAPTURE, CAPTURE_MSG),
    (
        "design_example_nanoseconds",
        b'{"subject":"heartbeat.service.api","generated_at":"2024-06-01T12:00:00.123456789Z",'
        b'"interval":15000000000,"grace_period":45000000000,"host":"api-1",'
        b'"description":"API service"}',
        Message(
            subject="heartbeat.service.api",
            generated_at=datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=UTC),
            interval=timedelta(seconds=15),
            grace_period=timedelta(seconds=45),
            host="api-1",
            description="API service",
        ),
    ),
    (
        "more_than_nine_fraction_digits",  # Go's parser reads and truncates them
        b'{"subject":"a","generated_at":"2024-06-01T12:00:00.1234567891234Z","interval":1}',
        Message(
            subject="a",
            generated_at=datetime(2024, 6, 1, 12, 0, 0, 123456, tzinfo=UTC),
            interval=timedelta(microseconds=1),
        ),
    ),
    (
        "unknown_fields_ignored",
        b'{"version":2,"subject":"a","labels":{"team":["x",{"y":null}]},'
        b'"generated_at":"2024-06-01T12:00:00Z","interval":1000000000,"extra":null,'
        b'"Interval_ms":5,"tags":[],"weight":1.5e300,"ok":true}',
        Message(
            subject="a",
            generated_at=datetime(2024, 6, 1, 12, tzinfo=UTC),
            interval=timedelta(seconds=1),
        ),
    ),
    (
        "nulls_are_absent",
        b'{"subject":"a","generated_at":"2024-06-01T12:00:00Z","interval":1000000000,'
        b'"grace_period":null,"host":null,"description":null}',
        Message(
            subject="a",
            generated_at=datetime(2024, 6, 1, 12, tzinfo=UTC),
            interval=timedelta(seconds=1),
        ),
    ),
    (
        "pretty_printed_other_order",
        b'\n {\n  "host" : "h",\n  "interval" : 2000000000 ,\n'
        b'  "generated_at" : "2024-06-01T12:00:00-00:00",\r\n\t"subject" : "a.b"\n}\n',
        Message(
            subject="a.b",
            generated_at=datetime(2024, 6, 1, 12, tzinfo=UTC),
            interval=timedelta(seconds=2),
            host="h",
        ),
    ),
    (
        "duplicate_keys_last_wins",  # as in Go
        b'{"subject":"first","subject":"second","generated_at":"2024-06-01T12:00:00Z",'
        b'"interval":0,"interval":1000000000}',
        Message(
            subject="second",
            generated_at=datetime(2024, 6, 1, 12, tzinfo=UTC),
            interval=timedelta(seconds=1),
        ),
    ),
    (
        "escaped_strings_and_str_input",
        '{"subject":"heartbeat.\\u0061pi","generated_at":"2024-06-01T12:00:00Z",'
        '"interval":1000000000,"description":"\\u003cb\\u003e \\ud83d\\ude00 \\u0026"}',
        Message(
            subject="heartbeat.api",
            generated_at=datetime(2024, 6, 1, 12, tzinfo=UTC),
            interval=timedelta(seconds=1),
            description="<b> \U0001f600 &",
        ),
    ),
    (
        "old_go_control_escapes",  # Go < 1.22 wrote \b and \f as \u0008 and \u000c
        b'{"subject":"a","generated_at":"2024-06-01T12:00:00Z","interval":1000000000,'
        b'"host":"\\u0008\\u000c\\b\\f"}',
        Message(
            subject="a",
            generated_at=datetime(2024, 6, 1, 12, tzinfo=UTC),
            interval=timedelta(seconds=1),
            host="\b\f\b\f",
        ),
    ),
    (
        "sub_microsecond_durations_stay_positive",  # valid in Go; kept as 1µs
        b'{"subject":"a","generated_at":"2024-06-01T12:00:00Z","interval":1,"grace_period":999}',
        Message(
            subject="a",
            generated_at=datetime(2024, 6, 1, 12, tzinfo=UTC),
            interval=timedelta(microseconds=1),
            grace_period=timedelta(microseconds=1),
        ),
    ),
    (
        "nanosecond_durations_truncated",
        b'{"subject":"a","generated_at":"2024-06-01T12:00:00Z","interval":1999,'
        b'"grace_period":45000000999}',
        Message(
            subject="a",
            generated_at=datetime(2024, 6, 1, 12, tzinfo=UTC),
            interval=timedelta(microseconds=1),
            grace_period=timedelta(seconds=45),
        ),
    ),
    (
        "largest_go_duration",
        b'{"subject":"a","generated_at":"2024-06-01T12:00:00Z","interval":9223372036854775807}',
        Message(
            subject="a",
            generated_at=datetime(2024, 6, 1, 12, tzinfo=UTC),
            interval=timedelta(microseconds=MAX_NS // 1000),
        ),
    ),
    (
        "just_after_go_zero_time",
        b'{"subject":"a","generated_at":"0001-01-01T00:00:00.000001Z","interval":1}',
        Message(
            subject="a",
            generated_at=datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC),
            interval=timedelta(microseconds=1),
        ),
    ),
]


def _same(got: Message, want: Message) -> None:
    """Equal, and the offsets are the same too (aware datetimes compare as instants)."""
    assert got == want
    assert got.generated_at is not None and want.generated_at is not None
    assert got.generated_at.utcoffset() == want.generated_at.utcoffset()
    assert got.generated_at.replace(tzinfo=None) == want.generated_at.replace(tzinfo=None)


def test_capture_is_111_bytes() -> None:
    assert len(CAPTURE) == 111


@pytest.mark.parametrize(("name", "data", "msg"), GO_EXACT, ids=[c[0] for c in GO_EXACT])
def test_decode_go_bytes(name: str, data: bytes, msg: Message) -> None:
    _same(decode(data), msg)


@pytest.mark.parametrize(("name", "data", "msg"), GO_EXACT, ids=[c[0] for c in GO_EXACT])
def test_encode_is_byte_exact_go(name: str, data: bytes, msg: Message) -> None:
    assert encode(msg) == data


@pytest.mark.parametrize(
    ("name", "data", "msg"), GO_DECODE_ONLY, ids=[c[0] for c in GO_DECODE_ONLY]
)
def test_decode_go_variants(name: str, data: bytes | str, msg: Message) -> None:
    _same(decode(data), msg)


def test_decode_accepts_str() -> None:
    _same(decode(CAPTURE.decode()), CAPTURE_MSG)


def test_capture_re_encodes_truncated_to_microseconds() -> None:
    assert encode(decode(CAPTURE)) == CAPTURE.replace(b".135898385Z", b".135898Z")


def test_decode_keeps_offsets() -> None:
    plus = decode(
        b'{"subject":"a","generated_at":"2024-06-01T17:30:00+05:30","interval":1000000000}'
    )
    minus = decode(
        b'{"subject":"a","generated_at":"2024-06-01T05:00:00-07:00","interval":1000000000}'
    )
    assert plus.generated_at is not None and minus.generated_at is not None
    assert plus.generated_at.utcoffset() == timedelta(hours=5, minutes=30)
    assert (plus.generated_at.hour, plus.generated_at.minute) == (17, 30)
    assert minus.generated_at.utcoffset() == timedelta(hours=-7)
    assert minus.generated_at.hour == 5
    assert plus.generated_at == datetime(2024, 6, 1, 12, tzinfo=UTC)
    assert minus.generated_at == datetime(2024, 6, 1, 12, tzinfo=UTC)


def test_decode_z_is_utc() -> None:
    msg = decode(CAPTURE)
    assert msg.generated_at is not None
    assert msg.generated_at.tzinfo is UTC


# ---------------------------------------------------------------------------
# encode details
# ---------------------------------------------------------------------------

BASE = Message(
    subject="heartbeat.a",
    generated_at=datetime(2024, 6, 1, 12, tzinfo=UTC),
    interval=timedelta(seconds=15),
)


def _with(**changes: Any) -> Message:
    return msgspec.structs.replace(BASE, **changes)


def test_encode_omits_empty_optional_fields() -> None:
    assert encode(BASE) == (
        b'{"subject":"heartbeat.a","generated_at":"2024-06-01T12:00:00Z","interval":15000000000}'
    )


def test_encode_field_order_is_go_struct_order() -> None:
    data = encode(
        _with(grace_period=timedelta(seconds=45), host="h", description="d"),
    )
    assert list(json.loads(data)) == [
        "subject",
        "generated_at",
        "interval",
        "grace_period",
        "host",
        "description",
    ]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2024, 6, 1, 12, tzinfo=UTC), "2024-06-01T12:00:00Z"),
        (datetime(2024, 6, 1, 12, tzinfo=timezone(timedelta(0))), "2024-06-01T12:00:00Z"),
        (datetime(2024, 6, 1, 12, 0, 0, 100000, tzinfo=UTC), "2024-06-01T12:00:00.1Z"),
        (datetime(2024, 6, 1, 12, 0, 0, 120, tzinfo=UTC), "2024-06-01T12:00:00.00012Z"),
        (datetime(2024, 6, 1, 12, 0, 0, 999999, tzinfo=UTC), "2024-06-01T12:00:00.999999Z"),
        (datetime(2024, 6, 1, 17, 30, tzinfo=IST), "2024-06-01T17:30:00+05:30"),
        (datetime(2024, 6, 1, 5, tzinfo=MST), "2024-06-01T05:00:00-07:00"),
        (
            datetime(2024, 6, 1, 3, 15, tzinfo=timezone(-timedelta(hours=9, minutes=30))),
            "2024-06-01T03:15:00-09:30",
        ),
        (
            datetime(2024, 6, 1, tzinfo=timezone(timedelta(hours=23, minutes=59))),
            "2024-06-01T00:00:00+23:59",
        ),
        (datetime(1, 1, 1, 0, 0, 0, 1, tzinfo=UTC), "0001-01-01T00:00:00.000001Z"),
        (datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC), "0999-12-31T23:59:59Z"),
        # Go converts the offset to minutes truncating toward zero
        (
            datetime(2024, 6, 1, tzinfo=timezone(timedelta(seconds=-30))),
            "2024-06-01T00:00:00+00:00",
        ),
        (
            datetime(1880, 1, 1, tzinfo=timezone(-timedelta(hours=4, minutes=56, seconds=2))),
            "1880-01-01T00:00:00-04:56",
        ),
        (
            datetime(1880, 1, 1, tzinfo=timezone(timedelta(minutes=19, seconds=32))),
            "1880-01-01T00:00:00+00:19",
        ),
    ],
)
def test_format_time_is_go_rfc3339nano(value: datetime, text: str) -> None:
    assert format_time(value) == text


def test_format_time_rejects_naive() -> None:
    with pytest.raises(InvalidHeartbeat) as e:
        format_time(datetime(2024, 6, 1))
    assert e.value.reason == "bad_time"


def test_encode_time_before_year_1_in_utc_does_not_crash() -> None:
    # 0000-12-31T23:30:00Z: Go encodes it (json.Marshal allows years 0..9999).
    msg = _with(generated_at=datetime(1, 1, 1, 0, 30, tzinfo=timezone(timedelta(hours=1))))
    data = encode(msg)
    assert b'"generated_at":"0001-01-01T00:30:00+01:00"' in data
    # A documented limitation: Python cannot hold that instant in UTC, so decode refuses it.
    with pytest.raises(InvalidHeartbeat) as e:
        decode(data)
    assert e.value.reason == "bad_time"


def test_encode_escapes_control_chars_like_go_1_22() -> None:
    # Go >= 1.22 writes \b and \f; older Go wrote \u0008 and \u000c (both decode the same).
    assert b'"host":"\\b\\f\\u000b\\u0000"' in encode(_with(host="\b\f\v\x00"))


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"subject": ""}, "missing_subject"),
        ({"generated_at": None}, "missing_generated_at"),
        ({"generated_at": GO_ZERO}, "missing_generated_at"),
        (
            {"generated_at": datetime(1, 1, 1, 1, tzinfo=timezone(timedelta(hours=1)))},
            "missing_generated_at",
        ),
        ({"generated_at": datetime(2024, 6, 1, 12)}, "bad_time"),
        ({"generated_at": datetime(1, 1, 1)}, "bad_time"),
        ({"interval": timedelta(0)}, "bad_interval"),
        ({"interval": timedelta(microseconds=-1)}, "bad_interval"),
        ({"interval": timedelta(days=-1)}, "bad_interval"),
        ({"interval": timedelta(microseconds=MAX_NS // 1000 + 1)}, "bad_interval"),
        ({"interval": timedelta(days=999_999)}, "bad_interval"),
        ({"grace_period": timedelta(microseconds=-1)}, "bad_grace"),
        ({"grace_period": timedelta(microseconds=MAX_NS // 1000 + 1)}, "bad_grace"),
    ],
)
def test_encode_and_validate_reject_invalid_messages(changes: dict[str, Any], reason: str) -> None:
    msg = _with(**changes)
    with pytest.raises(InvalidHeartbeat) as e:
        encode(msg)
    assert e.value.reason == reason
    with pytest.raises(InvalidHeartbeat) as e:
        validate(msg)
    assert e.value.reason == reason


def test_validate_returns_the_message() -> None:
    assert validate(BASE) is BASE


@pytest.mark.parametrize(
    ("grace", "window"),
    [
        (None, timedelta(seconds=15)),
        (timedelta(0), timedelta(seconds=15)),
        (timedelta(seconds=45), timedelta(seconds=45)),
        (timedelta(seconds=5), timedelta(seconds=5)),
    ],
)
def test_window(grace: timedelta | None, window: timedelta) -> None:
    assert _with(grace_period=grace).window == window


# ---------------------------------------------------------------------------
# decode errors
# ---------------------------------------------------------------------------

VALID: dict[str, Any] = {
    "subject": "heartbeat.a",
    "generated_at": "2024-06-01T12:00:00Z",
    "interval": 15000000000,
}


def _payload(**changes: Any) -> bytes:
    """VALID with fields replaced; a value of ``...`` removes the field."""
    obj = {**VALID, **changes}
    return json.dumps({k: v for k, v in obj.items() if v is not ...}).encode()


def test_valid_payload_is_valid() -> None:
    assert decode(_payload()).subject == "heartbeat.a"


BAD_TIMES = [
    "",
    "2024-06-01",
    "2024-06-01T12:00:00",  # no zone
    "2024-06-01 12:00:00Z",
    "2024-06-01t12:00:00Z",
    "2024-06-01T12:00:00z",
    "2024-06-01T12:00Z",
    "2024-06-01T12:00:00.Z",
    "2024-06-01T12:00:00+0530",
    "2024-06-01T12:00:00+05",
    "2024-06-01T12:00:00 +05:30",
    "2024-06-01T12:00:00Z ",
    " 2024-06-01T12:00:00Z",
    "24-06-01T12:00:00Z",
    "+2024-06-01T12:00:00Z",
    "12024-06-01T12:00:00Z",
    "2024-6-01T12:00:00Z",
    "2024-13-01T00:00:00Z",
    "2024-00-01T00:00:00Z",
    "2024-06-00T00:00:00Z",
    "2023-02-29T00:00:00Z",
    "2024-02-30T00:00:00Z",
    "2024-06-31T00:00:00Z",
    "2024-06-01T24:00:00Z",
    "2024-06-01T12:60:00Z",
    "2024-06-01T12:00:60Z",  # Go rejects leap seconds too
    "２０２４-06-01T12:00:00Z",  # fullwidth digits
    "٢٠٢٤-06-01T12:00:00Z",  # arabic-indic digits
    "2024-06-01T12:00:00.١Z",
    "2024-06-01T12:00:00\u2028Z",
    "now",
    "1717243200",
]

# Go's json.Unmarshal accepts these (its RFC 3339 parser is loose, golang.org/issue/54580:
# one-digit hour, comma before the fraction, offset hour 24 and minute 60); this
# implementation is deliberately stricter.
STRICTER_THAN_GO = [
    "2024-06-01T1:00:00Z",
    "2024-06-01T12:00:00,5Z",
    "2024-06-01T12:00:00+24:00",
    "2024-06-01T12:00:00+05:60",
    "0000-06-01T12:00:00Z",  # year 0: Python's datetime starts at year 1
    "0001-01-01T00:30:00+01:00",  # before year 1 in UTC
    "9999-12-31T23:30:00-01:00",  # after year 9999 in UTC
]

DECODE_ERRORS: list[tuple[str, bytes | str, str]] = [
    ("empty", b"", "malformed"),
    ("whitespace", b"  \n", "malformed"),
    ("truncated", b'{"subject":"a"', "malformed"),
    ("not_json", b"heartbeat", "malformed"),
    ("trailing_data", _payload() + b" {}", "malformed"),
    ("two_objects", _payload() + _payload(), "malformed"),
    ("single_quotes", b"{'subject':'a'}", "malformed"),
    ("trailing_comma", b'{"subject":"a",}', "malformed"),
    ("nan", _payload().replace(b"15000000000", b"NaN"), "malformed"),
    ("bom", b"\xef\xbb\xbf" + _payload(), "malformed"),
    ("invalid_utf8", _payload(host="\udcff").replace(b"\\udcff", b"\xff"), "malformed"),
    ("lone_surrogate_escape", _payload(host="\udcff"), "malformed"),
    ("raw_control_char", _payload(host="\n").replace(b"\\n", b"\n"), "malformed"),
    ("array", b"[]", "malformed"),
    ("array_of_object", b"[" + _payload() + b"]", "malformed"),
    ("null", b"null", "malformed"),
    ("string", b'"heartbeat"', "malformed"),
    ("number", b"42", "malformed"),
    ("true", b"true", "malformed"),
    ("subject_missing", _payload(subject=...), "missing_subject"),
    ("subject_empty", _payload(subject=""), "missing_subject"),
    ("subject_null", _payload(subject=None), "missing_subject"),
    ("subject_number", _payload(subject=42), "malformed"),
    ("subject_list", _payload(subject=["a"]), "malformed"),
    ("generated_at_missing", _payload(generated_at=...), "missing_generated_at"),
    ("generated_at_null", _payload(generated_at=None), "missing_generated_at"),
    ("go_zero_time", _payload(generated_at="0001-01-01T00:00:00Z"), "missing_generated_at"),
    (
        "go_zero_time_frac",
        _payload(generated_at="0001-01-01T00:00:00.000Z"),
        "missing_generated_at",
    ),
    (
        "go_zero_in_offset",
        _payload(generated_at="0001-01-01T02:00:00+02:00"),
        "missing_generated_at",
    ),
    ("generated_at_number", _payload(generated_at=1717243200), "malformed"),
    ("generated_at_object", _payload(generated_at={}), "malformed"),
    ("interval_missing", _payload(interval=...), "bad_interval"),
    ("interval_null", _payload(interval=None), "bad_interval"),
    ("interval_zero", _payload(interval=0), "bad_interval"),
    ("interval_negative", _payload(interval=-1), "bad_interval"),
    ("interval_min_int64", _payload(interval=-(1 << 63)), "bad_interval"),
    ("interval_overflow", _payload(interval=1 << 63), "bad_interval"),
    ("interval_huge", _payload(interval=10**40), "bad_interval"),
    ("interval_huge_negative", _payload(interval=-(10**40)), "bad_interval"),
    ("interval_string", _payload(interval="15s"), "malformed"),
    ("interval_numeric_string", _payload(interval="15000000000"), "malformed"),
    ("interval_float", _payload(interval=1.5), "malformed"),
    ("interval_integral_float", _payload(interval=15000000000.0), "malformed"),
    ("interval_exponent", _payload().replace(b"15000000000", b"1.5e10"), "malformed"),
    ("interval_bool", _payload(interval=True), "malformed"),
    ("interval_list", _payload(interval=[1]), "malformed"),
    ("grace_negative", _payload(grace_period=-1), "bad_grace"),
    ("grace_min_int64", _payload(grace_period=-(1 << 63)), "bad_grace"),
    ("grace_overflow", _payload(grace_period=1 << 63), "bad_grace"),
    ("grace_string", _payload(grace_period="45s"), "malformed"),
    ("grace_float", _payload(grace_period=0.5), "malformed"),
    ("host_number", _payload(host=1), "malformed"),
    ("host_bool", _payload(host=False), "malformed"),
    ("description_list", _payload(description=["x"]), "malformed"),
    ("description_object", _payload(description={"a": 1}), "malformed"),
    *[(f"bad_time_{i}", _payload(generated_at=t), "bad_time") for i, t in enumerate(BAD_TIMES)],
    *[
        (f"stricter_than_go_{i}", _payload(generated_at=t), "bad_time")
        for i, t in enumerate(STRICTER_THAN_GO)
    ],
]


@pytest.mark.parametrize(
    ("name", "data", "reason"), DECODE_ERRORS, ids=[c[0] for c in DECODE_ERRORS]
)
def test_decode_rejects(name: str, data: bytes | str, reason: str) -> None:
    with pytest.raises(InvalidHeartbeat) as e:
        decode(data)
    assert e.value.reason == reason
    assert str(e.value)


def test_invalid_heartbeat_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        decode(b"{}")


@pytest.mark.parametrize("text", BAD_TIMES + STRICTER_THAN_GO)
def test_parse_time_rejects(text: str) -> None:
    with pytest.raises(InvalidHeartbeat) as e:
        parse_time(text)
    assert e.value.reason == "bad_time"


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("2024-06-01T12:00:00Z", datetime(2024, 6, 1, 12, tzinfo=UTC)),
        ("2024-06-01T12:00:00.1Z", datetime(2024, 6, 1, 12, 0, 0, 100000, tzinfo=UTC)),
        ("2024-06-01T12:00:00.0000009Z", datetime(2024, 6, 1, 12, tzinfo=UTC)),
        ("2024-06-01T12:00:00.999999999Z", datetime(2024, 6, 1, 12, 0, 0, 999999, tzinfo=UTC)),
        ("2024-02-29T23:59:59+23:59", datetime(2024, 2, 29, 0, 0, 59, tzinfo=UTC)),
        ("2024-06-01T12:00:00-23:59", datetime(2024, 6, 2, 11, 59, tzinfo=UTC)),
        ("2024-06-01T12:00:00+00:00", datetime(2024, 6, 1, 12, tzinfo=UTC)),
        ("0001-01-01T00:00:00Z", GO_ZERO),  # parses; validate() rejects it
        ("9999-12-31T23:59:59.999999999Z", datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC)),
    ],
)
def test_parse_time(text: str, value: datetime) -> None:
    assert parse_time(text) == value


# ---------------------------------------------------------------------------
# validate_subject
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "subject",
    [
        "heartbeat.service.api",
        "a",
        "heartbeat.a-b_c",
        "heartbeat.ns/api=1",
        "HeartBeat.API.42",
        "a.b.c.d.e.f.g",
    ],
)
def test_validate_subject_accepts(subject: str) -> None:
    assert validate_subject(subject) == subject


@pytest.mark.parametrize(
    "subject",
    [
        "",
        "a..b",
        ".a",
        "a.",
        ".",
        "a.*",
        "a.>",
        "*",
        ">",
        "a.b*",
        "a.>b",
        "a b",
        "a.b c",
        " a",
        "a\t",
        "a\n.b",
        "a\u00a0b",
        "a.b:c",
        "a.b$c",
        "a.é",
        "a.b\x00",
    ],
)
def test_validate_subject_rejects(subject: str) -> None:
    with pytest.raises(InvalidSubject):
        validate_subject(subject)


# ---------------------------------------------------------------------------
# properties
# ---------------------------------------------------------------------------

_TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-/="
subjects = st.lists(
    st.text(alphabet=_TOKEN_ALPHABET, min_size=1, max_size=12), min_size=1, max_size=5
).map(".".join)

offsets = st.one_of(
    st.just(UTC),
    st.integers(-(23 * 60 + 59), 23 * 60 + 59).map(lambda m: timezone(timedelta(minutes=m))),
)


def _in_utc_range(value: datetime) -> bool:
    try:
        value.astimezone(UTC)
    except (OverflowError, ValueError):
        return False
    return value != GO_ZERO


aware_datetimes = st.datetimes(
    min_value=datetime(1, 1, 1),
    max_value=datetime(9999, 12, 31, 23, 59, 59, 999999),
    timezones=offsets,
).filter(_in_utc_range)

_MAX_US = MAX_NS // 1000
positive_durations = st.one_of(
    st.integers(1, _MAX_US),
    st.integers(1, 10**9),
    st.sampled_from([1, 999, 1000, 1_000_000, _MAX_US]),
).map(lambda us: timedelta(microseconds=us))
graces = st.one_of(
    st.none(),
    st.just(timedelta(0)),
    st.integers(0, _MAX_US).map(lambda us: timedelta(microseconds=us)),
)
texts = st.one_of(
    st.text(),
    st.text(alphabet="<>&\"\\/\u2028\u2029\x00\x1f\x7f\b\f\n\t é€\U0001f600'"),
    st.sampled_from(["", "API <svc> & co", "</script>", "\u2028", "ünïcødé", "\U0001f600"]),
)

messages = st.builds(
    Message,
    subject=subjects,
    generated_at=aware_datetimes,
    interval=positive_durations,
    grace_period=graces,
    host=texts,
    description=texts,
)


@settings(deadline=None)
@given(messages)
def test_round_trip(msg: Message) -> None:
    data = encode(msg)
    _same(decode(data), msg)
    # what Go's encoding/json would produce: compact, escaped, Go key order
    for raw in (b"<", b">", b"&", "\u2028".encode(), "\u2029".encode()):
        assert raw not in data
    obj = json.loads(data)
    assert obj["subject"] == msg.subject
    assert obj["interval"] == msg.interval // timedelta(microseconds=1) * 1000
    assert ("grace_period" in obj) == (msg.grace_period is not None)
    assert obj.get("host", "") == msg.host
    assert obj.get("description", "") == msg.description
    keys = ["subject", "generated_at", "interval", "grace_period", "host", "description"]
    assert list(obj) == [k for k in keys if k in obj]
    assert msg.generated_at is not None
    assert obj["generated_at"] == format_time(msg.generated_at)
    # Python's json.dumps escapes strings exactly like Go >= 1.22 (\b \f \n \r \t, other
    # controls as lowercase \u00XX, DEL and non-ASCII raw) except for Go's HTML-safe set.
    expected = json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()
    for raw, escaped in _HTML_SAFE:
        expected = expected.replace(raw, escaped)
    assert data == expected


_HTML_SAFE = [
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
]


def _check_decoded(data: bytes | str) -> None:
    """decode() either raises InvalidHeartbeat or returns a valid, re-encodable Message."""
    try:
        msg = decode(data)
    except InvalidHeartbeat as e:
        assert isinstance(e.reason, str) and e.reason
        return
    assert validate(msg) is msg
    assert msg.subject
    assert msg.interval > timedelta(0)
    assert msg.grace_period is None or msg.grace_period >= timedelta(0)
    _same(decode(encode(msg)), msg)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(deadline=None)
@given(st.binary())
def test_decode_arbitrary_bytes(data: bytes) -> None:
    _check_decoded(data)


@settings(deadline=None)
@given(json_values, st.booleans())
def test_decode_arbitrary_json(value: Any, ascii_only: bool) -> None:
    _check_decoded(json.dumps(value, ensure_ascii=ascii_only))


_time_like = st.one_of(
    aware_datetimes.map(format_time),
    st.from_regex(
        r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]{0,12})?(Z|[+-][0-9]{2}:[0-9]{2})?",
        fullmatch=True,
    ),
    st.sampled_from(
        ["0001-01-01T00:00:00Z", "0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"]
    ),
)
_int_like = st.one_of(
    st.integers(),
    st.integers(-(1 << 64), 1 << 64),
    st.sampled_from([0, 1, 999, 1000, -1, MAX_NS, MAX_NS + 1, -(1 << 63), -(1 << 63) - 1]),
)
_field_values = {
    "subject": st.one_of(subjects, st.text(), json_values),
    "generated_at": st.one_of(_time_like, st.text(), json_values),
    "interval": st.one_of(_int_like, json_values),
    "grace_period": st.one_of(_int_like, json_values),
    "host": st.one_of(texts, json_values),
    "description": st.one_of(texts, json_values),
}
heartbeat_like = st.fixed_dictionaries(
    {},
    optional={**_field_values, "extra": json_values},
)


@settings(deadline=None)
@given(heartbeat_like, st.booleans())
def test_decode_heartbeat_like_objects(obj: dict[str, Any], ascii_only: bool) -> None:
    _check_decoded(json.dumps(obj, ensure_ascii=ascii_only))


@settings(deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "subject": subjects,
            "generated_at": _time_like,
            "interval": st.integers(1, MAX_NS),
        },
        optional={"grace_period": st.integers(0, MAX_NS), "host": texts, "description": texts},
    )
)
def test_decode_valid_go_objects(obj: dict[str, Any]) -> None:
    data = json.dumps(obj)
    try:
        msg = decode(data)
    except InvalidHeartbeat as e:
        # only the times Python cannot hold, or Go's zero time, are refused
        assert e.reason in ("bad_time", "missing_generated_at")
        return
    assert msg.interval == timedelta(microseconds=max(obj["interval"] // 1000, 1))
    _check_decoded(data)
