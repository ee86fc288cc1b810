"""Routes by NATS subject pattern: first match wins unless it continues."""

from __future__ import annotations

import pytest

from heartbeat.routing import Route, Routed, Router, matches, valid_pattern


@pytest.mark.parametrize(
    ("pattern", "subject", "hit"),
    [
        ("heartbeat.db.>", "heartbeat.db.main", True),
        ("heartbeat.db.>", "heartbeat.db.main.replica", True),
        ("heartbeat.db.>", "heartbeat.db", False),
        ("heartbeat.*.main", "heartbeat.db.main", True),
        ("heartbeat.*.main", "heartbeat.db.other", False),
        ("heartbeat.*", "heartbeat.db.main", False),
        (">", "anything.at.all", True),
        ("heartbeat.db.main", "heartbeat.db.main", True),
        ("heartbeat.db.main", "heartbeat.db.mainx", False),
        ("heartbeat.db", "heartbeat.db.main", False),
    ],
)
def test_matches(pattern: str, subject: str, hit: bool) -> None:
    assert matches(pattern, subject) is hit


@pytest.mark.parametrize(
    ("pattern", "bad"),
    [
        ("heartbeat.db.>", False),
        ("*.x", False),
        ("", True),
        ("a..b", True),
        ("a.>.b", True),
        ("a.b>", True),
        ("a.b*", True),
        (" a.b", True),
        ("a. b", True),
    ],
)
def test_valid_pattern(pattern: str, bad: bool) -> None:
    assert (valid_pattern(pattern) is not None) is bad


ROUTES = (
    Route(subjects=("heartbeat.db.>",), channels=("oncall",), repeat_every_s=1800.0),
    Route(subjects=("heartbeat.batch.>",), channels=("batch",), continue_=True),
    Route(subjects=("heartbeat.batch.nightly", "heartbeat.web.*"), channels=("slack", "batch")),
)


@pytest.mark.parametrize(
    ("subject", "routed"),
    [
        ("heartbeat.db.main", Routed(("oncall",), 1800.0)),
        ("heartbeat.batch.hourly", Routed(("batch",))),
        ("heartbeat.batch.nightly", Routed(("batch", "slack"))),  # continued, deduplicated
        ("heartbeat.web.api", Routed(("slack", "batch"))),
        ("heartbeat.other", Routed(())),  # no route: no channel
    ],
)
def test_first_match_wins_unless_it_continues(subject: str, routed: Routed) -> None:
    router = Router(["oncall", "batch", "slack"], ROUTES)
    assert router.route(subject) == routed
    assert router.route(subject) == routed  # cached the same
    assert router.route(subject).unrouted is (not routed.channels)


def test_without_routes_every_subject_reaches_every_channel() -> None:
    assert Router(["a", "b"]).route("heartbeat.x") == Routed(("a", "b"))


def test_subjects_routed_alike_share_one_answer() -> None:
    """One Routed per distinct answer, not per subject (100k subjects: ~25 MB)."""
    plain = Router(["a", "b"])
    assert plain.route("heartbeat.x") is plain.route("heartbeat.y")
    router = Router(["oncall", "batch", "slack"], ROUTES)
    first, second = router.route("heartbeat.db.one"), router.route("heartbeat.db.two")
    assert first is second and first == Routed(("oncall",), 1800.0)
    assert router.route("heartbeat.other") is router.route("heartbeat.another")
    assert router.route("heartbeat.other") is not first
