"""The election's pure decisions: next_step() and lease_view(), as tables."""

from __future__ import annotations

import logging

import pytest

from heartbeat.election import LeaseView, Step, lease_view, next_step

ME = "replica-a"
OTHER = "replica-b"
LEASE = b'{"holder":"replica-b","acquired_at":1700000000.0,"renewed_at":1700000005.5}'
MY_LEASE = b'{"holder":"replica-a","acquired_at":1700000000.0,"renewed_at":1700000000.0}'


@pytest.mark.parametrize(
    ("eligible", "holding", "holder", "step"),
    [
        pytest.param(True, True, None, Step.RENEW, id="holding-lease-seen-free"),
        pytest.param(True, True, ME, Step.RENEW, id="holding-mine"),
        pytest.param(True, True, OTHER, Step.CAMPAIGN, id="holding-but-taken"),
        pytest.param(True, False, None, Step.CAMPAIGN, id="free"),
        pytest.param(True, False, ME, Step.CAMPAIGN, id="not-holding-names-me"),
        pytest.param(True, False, OTHER, Step.CAMPAIGN, id="other-leads"),
        pytest.param(False, True, None, Step.STAND_ASIDE, id="blind-holding-free"),
        pytest.param(False, True, ME, Step.STAND_ASIDE, id="blind-holding-mine"),
        pytest.param(False, True, OTHER, Step.STAND_ASIDE, id="blind-holding-taken"),
        pytest.param(False, False, None, Step.STAND_ASIDE, id="blind-free"),
        pytest.param(False, False, ME, Step.STAND_ASIDE, id="blind-names-me"),
        pytest.param(False, False, OTHER, Step.STAND_ASIDE, id="blind-other-leads"),
    ],
)
def test_next_step(eligible: bool, holding: bool, holder: str | None, step: Step) -> None:
    assert next_step(eligible=eligible, holding=holding, holder=holder, me=ME) is step


@pytest.mark.parametrize(
    ("data", "headers", "holder", "warns"),
    [
        pytest.param(b"", {"KV-Operation": "DEL"}, None, False, id="del-tombstone"),
        pytest.param(b"", {"KV-Operation": "PURGE"}, None, False, id="purge-tombstone"),
        pytest.param(LEASE, {"KV-Operation": "DEL"}, None, False, id="del-header-wins-over-data"),
        pytest.param(b"", {"Nats-Marker-Reason": "MaxAge"}, None, False, id="ttl-expiry-marker"),
        pytest.param(b"", {"Nats-Marker-Reason": "Remove"}, None, False, id="remove-marker"),
        pytest.param(
            LEASE, {"Nats-Marker-Reason": "MaxAge"}, None, False, id="marker-wins-over-data"
        ),
        pytest.param(b"", None, None, False, id="empty-data-no-headers"),
        pytest.param(b"", {}, None, False, id="empty-data-empty-headers"),
        pytest.param(LEASE, None, OTHER, False, id="lease"),
        pytest.param(LEASE, {"Nats-TTL": "10s"}, OTHER, False, id="lease-with-ttl-header"),
        pytest.param(MY_LEASE, {}, ME, False, id="my-lease"),
        pytest.param(b"not json", None, None, True, id="garbage"),
        pytest.param(b"\xff\xfe", None, None, True, id="binary-garbage"),
        pytest.param(b'{"holder":"replica-b"}', None, None, True, id="lease-missing-fields"),
        pytest.param(
            b'{"holder":7,"acquired_at":1.0,"renewed_at":1.0}',
            None,
            None,
            True,
            id="holder-not-string",
        ),
        pytest.param(b"null", None, None, True, id="json-null"),
        pytest.param(b"[]", None, None, True, id="json-array"),
    ],
)
def test_lease_view(
    data: bytes,
    headers: dict[str, str] | None,
    holder: str | None,
    warns: bool,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Tombstones are free quietly; something that is not a lease is free with a warning."""
    with caplog.at_level(logging.WARNING, logger="heartbeat.election"):
        assert lease_view(data, headers, 42) == LeaseView(holder, 42)
    assert bool(caplog.records) is warns


@pytest.mark.parametrize("revision", [0, 1, 10**9])
def test_lease_view_keeps_the_revision(revision: int) -> None:
    assert lease_view(LEASE, None, revision).revision == revision
    assert lease_view(b"", {"KV-Operation": "DEL"}, revision).revision == revision
    assert lease_view(b"junk", None, revision).revision == revision
