"""The ingest fast paths give exactly what the reference paths give.

``beat_from_payload`` tries a fast path for well-formed beats and falls back to the
full decode and validation; ``known_valid_time`` vouches for ``generated_at`` in
known minutes; ``delivery_of`` and ``server_time`` read the reply subject without
building nats-py's metadata objects.  Each is checked against the slow original.
"""

from __future__ import annotations

import contextlib
import json
import random
from datetime import UTC, datetime
from typing import Any

import msgspec
import nats.errors
import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from nats.aio.msg import Msg

from heartbeat.engine import Job, Record
from heartbeat.errors import InvalidHeartbeat, InvalidSubject
from heartbeat.feed import delivery_of
from heartbeat.ingest import (
    NO_LIMITS,
    IngestLimits,
    _checked_beat,
    _fast_beat,
    beat_from_payload,
    server_time,
)
from heartbeat.schema import (
    decode,
    format_time,
    is_valid_subject,
    known_valid_time,
    learn_minute,
    max_subject_length,
    parse_time,
    validate_subject,
)
from heartbeat.store import _share_strings, encode_record, record_of
from heartbeat.text import ELLIPSIS, MAX_DESCRIPTION, MAX_HOST
from tests.unit.test_job_schema import JOB_KEYS, job_like
from tests.unit.test_schema import _time_like, heartbeat_like, json_values, subjects

# ----- server_time: the float nats-py's datetime would give ---------------------------------


def _reference_time(ns: int) -> float:
    return datetime.fromtimestamp(ns / 1_000_000_000.0, UTC).timestamp()


@given(st.integers(0, 4_102_444_800 * 10**9))  # up to 2100
@example(1_700_000_000_000_000_500)  # exactly half a microsecond
@example(1_700_000_000_000_001_500)
@example(1_700_000_000_999_999_500)  # rounds up into the next second
@example(1_795_919_688_083_813_807)  # a real one
def test_server_time_is_the_datetime_timestamp(ns: int) -> None:
    assert abs(server_time(ns) - _reference_time(ns)) <= 1e-6


def test_server_time_around_rounding_edges() -> None:
    rng = random.Random(7)
    for _ in range(20_000):
        second = rng.randrange(1_600_000_000, 2_000_000_000)
        for sub in (0, 499, 500, 501, 999_999_499, 999_999_500, 999_999_501):
            ns = second * 10**9 + rng.randrange(0, 10**6) * 1000 * (sub == 0) + sub
            assert abs(server_time(ns) - _reference_time(ns)) <= 1e-6, ns


# ----- delivery_of: sequence, pending and timestamp from the reply ---------------------------

V1 = "$JS.ACK.HB.consumer1.1.4321.17.1795919688083813807.5"
V2_11 = "$JS.ACK.dom.acchash.HB.consumer1.1.4321.17.1795919688083813807.5"
V2_12 = V2_11 + ".xyz123"


@pytest.mark.parametrize("reply", [V1, V2_11, V2_12])
def test_delivery_of_matches_nats_metadata(reply: str) -> None:
    msg = Msg(_client=None, subject="hb.a", reply=reply, data=b"")  # type: ignore[arg-type]
    seq, stamp_ns, drained = delivery_of(msg)
    meta = msg.metadata
    assert (seq, drained) == (meta.sequence.stream, meta.num_pending == 0)
    assert (seq, stamp_ns, drained) == (4321, 1795919688083813807, False)
    assert server_time(stamp_ns) == meta.timestamp.timestamp()


@pytest.mark.parametrize("reply", [V1, V2_11, V2_12])
def test_delivery_of_says_drained_when_nothing_is_pending(reply: str) -> None:
    last = reply.replace(".5", ".0", 1)
    msg = Msg(_client=None, subject="hb.a", reply=last, data=b"")  # type: ignore[arg-type]
    assert msg.metadata.num_pending == 0
    assert delivery_of(msg)[2] is True


@pytest.mark.parametrize("reply", ["", "_INBOX.abc", "$JS.ACK.HB.c.1.2", "$JS.NAK.a.b.c.d.e.f.g"])
def test_delivery_of_rejects_what_nats_py_rejects(reply: str) -> None:
    msg = Msg(_client=None, subject="hb.a", reply=reply, data=b"")  # type: ignore[arg-type]
    with pytest.raises(nats.errors.NotJSMessageError):
        _ = msg.metadata
    with pytest.raises(nats.errors.NotJSMessageError):
        delivery_of(msg)


# ----- known_valid_time: True only for what parse_time accepts -------------------------------


def _reference_format(text: str) -> str | None:
    try:
        return format_time(parse_time(text))
    except InvalidHeartbeat:
        return None


@settings(deadline=None)
@given(_time_like, st.booleans())
@example("2026-11-29T01:59:06.135898385Z", True)
@example("2026-11-29T01:59:06.000000001Z", True)
@example("2026-11-29T01:59:06.1000Z", True)
@example("2026-11-29T01:59:60Z", True)
@example("2026-11-29T01:59:6Z", True)
@example("2026-11-29T01:59:06.Z", True)
@example("2026-11-29T01:59:06.١Z", True)  # a non-ASCII digit
@example("0001-01-01T00:00:00Z", True)
def test_known_valid_time_vouches_only_for_valid_times(text: str, learn: bool) -> None:
    valid = _reference_format(text) is not None
    if learn and len(text) >= 16:
        minute = _reference_format(text[:16] + ":00Z")
        if minute is not None:
            learn_minute(parse_time(text[:16] + ":00Z"))
    got = known_valid_time(text)
    assert not got or valid
    if valid and learn and text.endswith("Z") and not text.startswith("0"):
        assert got  # a valid UTC time in a learnt minute takes the fast path


def test_go_zero_time_never_takes_the_fast_path() -> None:
    learn_minute(parse_time("0001-01-01T00:00:30Z"))
    assert not known_valid_time("0001-01-01T00:00:00Z")


# ----- is_valid_subject agrees with validate_subject --------------------------------------------


@given(st.one_of(subjects, st.text(alphabet="ab.*> \t/=-_Zé\n", max_size=12), st.text()))
def test_is_valid_subject_agrees_with_validate_subject(subject: str) -> None:
    try:
        validate_subject(subject)
        valid = True
    except InvalidSubject:
        valid = False
    assert is_valid_subject(subject) == valid


# ----- beat_from_payload: fast path or not, the reference result ------------------------------


def _outcome(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except InvalidHeartbeat as e:
        return ("rejected", e.reason, str(e))


@settings(deadline=None, max_examples=300)
@given(heartbeat_like, st.booleans(), st.booleans(), subjects)
def test_beat_from_payload_is_the_checked_beat(
    obj: dict[str, Any], own_subject: bool, learn: bool, other: str
) -> None:
    subject = obj.get("subject") if own_subject else other
    assume(isinstance(subject, str) and subject)
    stamp = obj.get("generated_at")
    if learn and isinstance(stamp, str) and _reference_format(stamp) is not None:
        learn_minute(parse_time(stamp))
    data = json.dumps(obj).encode()
    expected = _outcome(_checked_beat, subject, data, 1.5)
    assert _outcome(beat_from_payload, subject, data, 1.5) == expected
    assert _outcome(beat_from_payload, subject, data, 1.5) == expected  # minute now known


_go_times = st.builds(
    lambda dt, digits, n: dt.strftime("%Y-%m-%dT%H:%M:%S") + ("." + digits[:n] if n else "") + "Z",
    st.datetimes(min_value=datetime(1000, 1, 1), max_value=datetime(9999, 12, 31)),
    st.text(alphabet="0123456789", min_size=9, max_size=9),
    st.integers(0, 9),
)
_durations = st.one_of(
    st.integers(1, 2 * 10**12),
    st.sampled_from([1, 999, 1000, 1001, 10**9, 15 * 10**9, (1 << 63) - 1]),
)
valid_beats = st.fixed_dictionaries(
    {"subject": subjects, "generated_at": _go_times, "interval": _durations},
    optional={
        "grace_period": st.one_of(st.just(0), _durations),
        "host": st.text(max_size=8),
        "description": st.text(max_size=8),
    },
)


@settings(deadline=None, max_examples=300)
@given(valid_beats)
def test_valid_beats_take_the_fast_path_with_the_checked_result(obj: dict[str, Any]) -> None:
    data = json.dumps(obj).encode()
    expected = _checked_beat(obj["subject"], data, 3.25)  # also learns the minute
    for subject_valid in (False, True):
        fast = _fast_beat(obj["subject"], data, 3.25, subject_valid)
        assert fast is not None
        assert fast == expected


@pytest.mark.parametrize("subject", ["hb.a b", "hb.*", "hb..a", "hb.a#"])
def test_fast_path_checks_the_subject_unless_told_it_was_checked(subject: str) -> None:
    data = json.dumps(
        {"subject": subject, "generated_at": "2026-11-29T01:59:06Z", "interval": 1000}
    ).encode()
    _ = beat_from_payload("hb.ok", data.replace(subject.encode(), b"hb.ok"), 1.0)  # the minute
    assert _fast_beat(subject, data, 1.0, False) is None  # left to the checked path
    with pytest.raises(InvalidHeartbeat) as e:
        beat_from_payload(subject, data, 1.0)
    assert e.value.reason == "bad_subject"
    assert _fast_beat(subject, data, 1.0, True) is not None  # the caller vouched for it


def test_go_capture_takes_the_fast_path_with_the_same_beat() -> None:
    data = (
        b'{"subject":"heartbeat.smoke","generated_at":"2026-11-29T01:59:06.135898385Z",'
        b'"interval":1000000000,"host":"vm"}'
    )
    first = beat_from_payload("heartbeat.smoke", data, 2.0)  # learns the minute
    assert known_valid_time("2026-11-29T01:59:07.5Z")
    again = beat_from_payload("heartbeat.smoke", data, 2.0)
    assert first == again == _checked_beat("heartbeat.smoke", data, 2.0)
    assert again.generated_at == "2026-11-29T01:59:06.135898385Z"  # as sent, all nine digits
    assert again.interval_ns == 1_000_000_000 and again.grace_ns is None


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        pytest.param("2026-11-29T01:59:06.123456789Z", "2026-11-29T01:59:06.123456789Z", id="ns"),
        pytest.param(
            "2026-11-29T01:59:06.123456789-07:00",
            "2026-11-29T01:59:06.123456789-07:00",
            id="offset",
        ),
        pytest.param("2026-11-29T01:59:06.1234567891Z", "2026-11-29T01:59:06.123456Z", id="10"),
        pytest.param(
            "2026-11-29T01:59:06." + "7" * 5000 + "Z", "2026-11-29T01:59:06.777777Z", id="5k"
        ),
    ],
)
def test_generated_at_is_kept_as_sent_up_to_nanoseconds(sent: str, kept: str) -> None:
    data = json.dumps({"subject": "hb.a", "generated_at": sent, "interval": 1000}).encode()
    assert beat_from_payload("hb.a", data, 1.0).generated_at == kept
    assert beat_from_payload("hb.a", data, 1.0).generated_at == kept  # minute now known


def test_beat_keeps_the_server_time_and_truncates_durations() -> None:
    data = b'{"subject":"hb.a","generated_at":"2026-11-29T01:59:06Z","interval":1500}'
    when = datetime(2026, 11, 29, 1, 59, 7, 250000, tzinfo=UTC)
    beat = beat_from_payload("hb.a", data, when.timestamp())
    assert beat.last_seen == when.timestamp()
    assert beat.interval_ns == 1000  # truncated to the microsecond, as decode() does


# ----- the store's watch shares strings, changes no value ---------------------------------------


def test_share_strings_keeps_values_and_shares_the_key() -> None:
    rec = Record(subject="hb.a", host="web-1", interval_ns=15 * 10**9, updated_by="m-1")
    key = "".join(["hb.", "a"])  # a distinct but equal string
    got = record_of(key, encode_record(rec), None)
    assert got is not None
    _share_strings(got, key)
    assert got == rec
    assert got.subject is key
    assert msgspec.json.decode(encode_record(got)) == msgspec.json.decode(encode_record(rec))


# ----- job beats: the checked path, with the job fields carried into the Beat -------------------


@settings(deadline=None, max_examples=300)
@given(job_like, st.booleans(), st.booleans(), subjects)
def test_job_beats_from_payload_are_the_checked_beat(
    obj: dict[str, Any], own_subject: bool, learn: bool, other: str
) -> None:
    subject = obj.get("subject") if own_subject else other
    assume(isinstance(subject, str) and subject)
    stamp = obj.get("generated_at")
    if learn and isinstance(stamp, str) and _reference_format(stamp) is not None:
        learn_minute(parse_time(stamp))
    data = json.dumps(obj).encode()
    expected = _outcome(_checked_beat, subject, data, 1.5)
    assert _outcome(beat_from_payload, subject, data, 1.5) == expected
    assert _outcome(beat_from_payload, subject, data, 1.5) == expected
    if any(k in obj for k in JOB_KEYS):
        assert _fast_beat(subject, data, 1.5, True) is None  # job beats are always checked
    if not isinstance(expected, tuple):
        job = expected.job
        assert (job is None) == all(obj.get(k) in (None, "beat", "") for k in JOB_KEYS)


_JOB_BEAT = {
    "subject": "hb.job",
    "generated_at": "2026-12-01T03:00:05Z",
    "interval": 86_400 * 10**9,
    "kind": "fail",
    "run_id": "r1",
    "exit_code": 3,
    "duration": 1_500_000_999,
    "output": "no space left\n",
    "schedule": "0 3 * * *",
    "timezone": "Europe/Berlin",
    "max_runtime": 60 * 10**9,
}


@pytest.mark.parametrize(
    "field", [k for k in _JOB_BEAT if k not in ("subject", "generated_at", "interval")]
)
def test_any_job_field_leaves_the_fast_path(field: str) -> None:
    obj = {k: _JOB_BEAT[k] for k in ("subject", "generated_at", "interval")}
    obj[field] = _JOB_BEAT[field]
    if field in ("exit_code", "duration", "output"):
        obj["kind"] = "fail"
    if field == "timezone":
        obj["schedule"] = "0 3 * * *"
    data = json.dumps(obj).encode()
    plain = json.dumps({k: obj[k] for k in ("subject", "generated_at", "interval")}).encode()
    beat_from_payload("hb.job", plain, 1.0)  # learns the minute
    assert _fast_beat("hb.job", plain, 1.0, True) is not None
    assert _fast_beat("hb.job", data, 1.0, True) is None
    beat = beat_from_payload("hb.job", data, 1.0)
    assert beat == _checked_beat("hb.job", data, 1.0)
    assert beat.job is not None


def test_job_fields_reach_the_beat() -> None:
    beat = beat_from_payload("hb.job", json.dumps(_JOB_BEAT).encode(), 2.0)
    assert beat.job == Job(
        kind="fail",
        run_id="r1",
        exit_code=3,
        duration_ns=1_500_000_000,  # truncated to the microsecond, as interval
        output="no space left\n",
        schedule="0 3 * * *",
        timezone="Europe/Berlin",
        max_runtime_ns=60 * 10**9,
    )
    assert beat.interval_ns == 86_400 * 10**9 and beat.grace_ns is None


def test_an_explicit_plain_beat_has_no_job() -> None:
    plain = {k: _JOB_BEAT[k] for k in ("subject", "generated_at", "interval")}
    marked = json.dumps({**plain, "kind": "beat", "run_id": None}).encode()
    beat = beat_from_payload("hb.job", marked, 1.0)
    assert beat.job is None
    assert beat == beat_from_payload("hb.job", json.dumps(plain).encode(), 1.0)


@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"kind": "finished"}, "bad_kind"),
        ({"kind": "start"}, "bad_exit_code"),
        ({"schedule": "0 25 * * *"}, "bad_schedule"),
        ({"timezone": "Europe/Atlantis"}, "bad_timezone"),
        ({"duration": -1}, "bad_duration"),
    ],
)
def test_job_nonsense_is_rejected_with_its_reason(changes: dict[str, Any], reason: str) -> None:
    data = json.dumps({**_JOB_BEAT, **changes}).encode()
    with pytest.raises(InvalidHeartbeat) as e:
        beat_from_payload("hb.job", data, 1.0)
    assert e.value.reason == reason


# ----- limits beyond Go's rules: the same on both paths, checked before decoding -------------

MS_NS = 1_000_000
DAY_NS = 86_400 * 10**9
_limits = st.builds(
    IngestLimits,
    max_payload=st.integers(1, 400),
    max_subject=st.integers(1, 40),
    min_interval_ns=st.integers(1, 10**10),
    max_interval_ns=st.integers(10**10, 10**13),
    max_grace_ns=st.integers(10**10, 10**13),
)


@settings(deadline=None, max_examples=400)
@given(st.one_of(heartbeat_like, valid_beats), _limits, st.booleans(), st.booleans())
def test_beat_from_payload_with_limits_is_the_checked_beat(
    obj: dict[str, Any], limits: IngestLimits, learn: bool, subject_valid: bool
) -> None:
    subject = obj.get("subject")
    assume(isinstance(subject, str) and subject)
    assume(subject_valid is False or is_valid_subject(subject))
    stamp = obj.get("generated_at")
    if learn and isinstance(stamp, str) and _reference_format(stamp) is not None:
        learn_minute(parse_time(stamp))
    data = json.dumps(obj).encode()
    expected = _outcome(_checked_beat, subject, data, 1.5, limits)

    def fast_or_checked() -> Any:
        return beat_from_payload(subject, data, 1.5, subject_valid=subject_valid, limits=limits)

    assert _outcome(fast_or_checked) == expected
    assert _outcome(fast_or_checked) == expected  # minute now known


@settings(deadline=None, max_examples=300)
@given(valid_beats)
def test_beats_within_the_default_limits_take_the_fast_path(obj: dict[str, Any]) -> None:
    limits = IngestLimits()
    obj["interval"] = min(max(obj["interval"], limits.min_interval_ns), limits.max_interval_ns)
    if obj.get("grace_period"):
        obj["grace_period"] = min(
            max(obj["grace_period"], limits.min_interval_ns), limits.max_grace_ns
        )
    data = json.dumps(obj).encode()
    expected = _checked_beat(obj["subject"], data, 3.25, limits)
    assert _fast_beat(obj["subject"], data, 3.25, False, limits) == expected
    assert beat_from_payload(obj["subject"], data, 3.25, limits=limits) == expected


def _beat_json(subject: str = "hb.a", **fields: Any) -> bytes:
    obj: dict[str, Any] = {
        "subject": subject,
        "generated_at": "2026-11-29T01:59:06Z",
        "interval": 15 * 10**9,
    }
    obj.update(fields)
    return json.dumps(obj).encode()


_DEFAULT = IngestLimits()
_EDGE = "hb." + "s" * (_DEFAULT.max_subject - 3)


@pytest.mark.parametrize(
    ("subject", "data", "reason"),
    [
        pytest.param("hb.a", _beat_json(host="h" * 9000), "payload_too_large", id="9k-payload"),
        pytest.param("hb.a", b"[" * 10_000_000, "payload_too_large", id="10M-junk"),
        pytest.param(_EDGE + "x", _beat_json(_EDGE + "x"), "subject_too_long", id="subject+1"),
        pytest.param("hb.a", b'{"x":' + b"[" * 8000, "too_deep", id="8k-brackets"),
        pytest.param(
            "hb.a", b'{"subject":"hb.a","x":' + b"{}" * 3000 + b"}", "malformed", id="flat-objs"
        ),
        pytest.param(
            "hb.a",
            _beat_json()[:-1] + b',"x":' + b"[" * 2000 + b"]" * 2000 + b"}",
            "too_deep",
            id="deep-unknown-field",
        ),
        pytest.param("hb.a", _beat_json(interval=50 * MS_NS), "interval_out_of_range", id="50ms"),
        pytest.param("hb.a", _beat_json(interval=32 * DAY_NS), "interval_out_of_range", id="32d"),
        pytest.param("hb.a", _beat_json(grace_period=1), "grace_out_of_range", id="grace-1ns"),
        pytest.param(
            "hb.a", _beat_json(grace_period=40 * DAY_NS), "grace_out_of_range", id="grace-40d"
        ),
        pytest.param("hb.a", _beat_json(interval=1e400), "malformed", id="inf-interval"),
        pytest.param("hb.a", _beat_json(interval=1.5), "malformed", id="float-interval"),
        pytest.param("hb.a", _beat_json(interval=10**30), "bad_interval", id="10e30-interval"),
        pytest.param(
            "hb.a", _beat_json().replace(b"15000000000", b"NaN"), "malformed", id="nan-interval"
        ),
        pytest.param("hb.a", rb'{"subject":"hb.\ud800"}', "malformed", id="lone-surrogate"),
        pytest.param("hb.a", b'{"subject":"hb.\xff"}', "malformed", id="invalid-utf8"),
        pytest.param("hb.a", b"\x00\xff\xfe", "malformed", id="binary"),
    ],
)
def test_hostile_payloads_are_rejected_with_a_reason(
    subject: str, data: bytes, reason: str
) -> None:
    with pytest.raises(InvalidHeartbeat) as e:
        beat_from_payload(subject, data, 1.0, limits=_DEFAULT)
    assert e.value.reason == reason, str(e.value)
    with pytest.raises(InvalidHeartbeat):
        _checked_beat(subject, data, 1.0, _DEFAULT)


def test_go_rules_alone_still_accept_what_go_accepts() -> None:
    """The limits are the Ingestor's; with none, a 1 ns interval and a long subject pass."""
    subject = "hb." + "s" * 5000
    data = _beat_json(subject, interval=1, description="d" * 300)
    beat = beat_from_payload(subject, data, 1.0)
    assert beat.interval_ns == 1000
    with pytest.raises(InvalidHeartbeat) as e:
        beat_from_payload(subject, data, 1.0, limits=_DEFAULT)
    assert e.value.reason == "subject_too_long"


def test_subject_at_the_limit_is_accepted() -> None:
    beat = beat_from_payload(_EDGE, _beat_json(_EDGE), 1.0, limits=_DEFAULT)
    assert beat.interval_ns == 15 * 10**9


@pytest.mark.parametrize("fast", [False, True], ids=["checked", "fast"])
def test_description_and_host_are_cut_in_the_beat(fast: bool) -> None:
    data = _beat_json(description="é" * 1000, host="h" * 1000)
    if fast:
        _ = beat_from_payload("hb.a", data, 1.0)  # learns the minute
        got = _fast_beat("hb.a", data, 1.0, False)
        assert got is not None
    else:
        got = _checked_beat("hb.a", data, 1.0)
    assert got.description == "é" * (MAX_DESCRIPTION - 1) + ELLIPSIS
    assert got.host == "h" * (MAX_HOST - 1) + ELLIPSIS
    raw = "line\n\x1b[31mred"  # kept raw apart from length: neutralised where shown
    assert beat_from_payload("hb.a", _beat_json(description=raw), 1.0).description == raw


def test_default_limits_are_the_documented_ones() -> None:
    assert _DEFAULT.max_payload == 8192
    assert _DEFAULT.min_interval_ns == 100 * MS_NS
    assert _DEFAULT.max_interval_ns == _DEFAULT.max_grace_ns == 31 * DAY_NS
    assert _DEFAULT.max_subject == max_subject_length("B" * 64)
    assert IngestLimits.for_bucket("HEARTBEAT_STATE").max_subject == 3861
    assert IngestLimits.for_bucket("HEARTBEAT_STATE", max_payload=100).max_payload == 100
    with pytest.raises(ValueError):
        IngestLimits(min_interval_ns=0)
    assert NO_LIMITS.max_payload > 2**60


def test_max_subject_length_leaves_room_for_the_longest_kv_operation() -> None:
    bucket = "HEARTBEAT_STATE"
    n = max_subject_length(bucket)
    key = "k" * n
    reply = "r" * 128
    size = str(10**19)  # 20 digits: any size
    put = f"HPUB $KV.{bucket}.{key} {reply} {size} {size}\r\n"
    get = f"PUB $JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}.{key} {reply} {size}\r\n"
    assert len(put) < len(get) <= 4096
    assert len(get) + len(" " + size) == 4096  # the margin: one more size field, no more
    assert max_subject_length(bucket + "X") == n - 2


# ----- no input raises anything but InvalidHeartbeat -------------------------------------------

_fields = st.sampled_from(
    ["subject", "generated_at", "interval", "grace_period", "host", "description", "x"]
)
_deep = st.integers(1, 3000).map(lambda n: "[" * n + "]" * n)  # msgspec stops near 1000


def _never_raises_otherwise(subject: str, data: bytes) -> None:
    for limits in (NO_LIMITS, _DEFAULT):
        with contextlib.suppress(InvalidHeartbeat):
            decode(data)
        for subject_valid in (False, True):
            with contextlib.suppress(InvalidHeartbeat):
                beat_from_payload(subject, data, 1.0, subject_valid=subject_valid, limits=limits)


@settings(deadline=None, max_examples=500)
@given(st.binary(max_size=2000))
def test_arbitrary_bytes_never_raise_anything_else(data: bytes) -> None:
    _never_raises_otherwise("hb.a", data)


@settings(deadline=None, max_examples=500)
@given(
    st.dictionaries(
        _fields,
        st.one_of(
            json_values,
            st.floats(),
            st.integers(-(1 << 200), 1 << 200),
        ),
    ),
    st.one_of(subjects, st.text(max_size=20)),
    _deep,
)
def test_json_like_objects_never_raise_anything_else(
    obj: dict[str, Any], subject: str, deep: str
) -> None:
    assume(subject)
    data = json.dumps(obj, allow_nan=True).encode()
    _never_raises_otherwise(
        subject, data[:-1] + (b"," if obj else b"") + b'"x":' + deep.encode() + b"}"
    )
    _never_raises_otherwise(subject, data)
    _never_raises_otherwise(subject, data.replace(b"\\u", b"\\ud800\\u"))
