"""gone_subjects() as a table: which held subjects the stream listing shows are gone.

Pure: tracks are built by hand, the listing is a set, ``listed_at`` a number.
"""

from __future__ import annotations

import pytest

from heartbeat.engine import Beat, Record
from heartbeat.retire import gone_subjects
from heartbeat.subjects import Track

T0 = 1_700_000_000.0
HAIR = 1 / 1024
LISTED_AT = T0 + 100.0


def mkbeat(at: float) -> Beat:
    return Beat(
        last_seen=at,
        interval_ns=1_000_000_000,
        grace_ns=None,
        host="h",
        description="d",
        generated_at="2024-06-01T12:00:00Z",
    )


def mktrack(subject: str, *, record: float | None = None, beat: float | None = None) -> Track:
    """A track with a record last seen at ``record`` and/or a beat at ``beat``."""
    return Track(
        subject=subject,
        record=None if record is None else Record(subject=subject, last_seen=record),
        rev=0 if record is None else 1,
        beat=None if beat is None else mkbeat(beat),
    )


OLD = LISTED_AT - 50.0


@pytest.mark.parametrize(
    ("record", "beat", "present", "gone"),
    [
        pytest.param(OLD, OLD, False, True, id="absent-old-both"),
        pytest.param(OLD, None, False, True, id="absent-record-only"),
        pytest.param(None, OLD, False, True, id="absent-beat-only"),
        pytest.param(OLD, OLD, True, False, id="present"),
        pytest.param(OLD, None, True, False, id="present-record-only"),
        pytest.param(LISTED_AT - HAIR, None, False, True, id="record-just-before-listing"),
        pytest.param(LISTED_AT, None, False, False, id="record-at-listing"),
        pytest.param(LISTED_AT + 1, None, False, False, id="record-after-listing"),
        pytest.param(None, LISTED_AT - HAIR, False, True, id="beat-just-before-listing"),
        pytest.param(None, LISTED_AT, False, False, id="beat-at-listing"),
        pytest.param(None, LISTED_AT + 1, False, False, id="beat-after-listing"),
        pytest.param(OLD, LISTED_AT, False, False, id="newer-beat-wins"),
        pytest.param(LISTED_AT, OLD, False, False, id="newer-record-wins"),
        pytest.param(OLD, LISTED_AT - HAIR, False, True, id="both-before"),
        pytest.param(None, None, False, True, id="neither-counts-as-never-seen"),
    ],
)
def test_gone_one(record: float | None, beat: float | None, present: bool, gone: bool) -> None:
    subject = "heartbeat.svc.a"
    tracks = [mktrack(subject, record=record, beat=beat)]
    listing = {subject} if present else {"heartbeat.other"}
    assert gone_subjects(tracks, listing, LISTED_AT) == ([subject] if gone else [])


def test_gone_many_in_order() -> None:
    tracks = [
        mktrack("heartbeat.a", record=OLD, beat=OLD),  # gone
        mktrack("heartbeat.b", record=OLD),  # present
        mktrack("heartbeat.c", beat=OLD),  # gone
        mktrack("heartbeat.d", record=OLD, beat=LISTED_AT + 0.5),  # seen since
        mktrack("heartbeat.e", record=OLD),  # gone
    ]
    present = {"heartbeat.b", "heartbeat.unheld"}
    assert gone_subjects(tracks, present, LISTED_AT) == [
        "heartbeat.a",
        "heartbeat.c",
        "heartbeat.e",
    ]


def test_nothing_held_nothing_gone() -> None:
    assert gone_subjects([], {"heartbeat.a"}, LISTED_AT) == []


def test_empty_listing_everything_old_is_gone() -> None:
    tracks = [mktrack("heartbeat.a", record=OLD), mktrack("heartbeat.b", beat=OLD)]
    assert gone_subjects(iter(tracks), set(), LISTED_AT) == ["heartbeat.a", "heartbeat.b"]
