"""render(Snapshot) as Prometheus text, parsed back: every family, label and value."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from heartbeat.engine import Health
from heartbeat.metrics import Snapshot, TickTimer, render
from heartbeat.quiet import QuietKind

P = "nats_heartbeat_"
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def timer(*observations: float) -> TickTimer:
    t = TickTimer()
    for seconds in observations:
        t.observe(seconds)
    return t


def mksnapshot(**changes: Any) -> Snapshot:
    t = timer(0.0003, 0.001, 0.004, 0.004, 3.0)
    base = Snapshot(
        heartbeats=1234,
        rejected={"schema": 3, "subject": 1},
        subjects={Health.OK: 7, Health.ALERT: 2},
        deliveries={
            ("webhook", "alert", "ok"): 4,
            ("log", "alert", "ok"): 5,
            ("webhook", "resolved", "retry"): 2,
        },
        retries={"webhook": 6, "log": 0},
        leader=True,
        lease_changes=3,
        consumer_lag=17,
        ready=True,
        kv_writes=99,
        conflicts=2,
        write_errors=5,
        ignored_records=1,
        refused_subjects=0,
        held_alerts=0,
        unrouted=2,
        pending={"webhook": 3},
        tick_buckets=tuple(t.buckets()),
        tick_total_s=t.total_s,
    )
    return replace(base, **changes)


def families(snapshot: Snapshot) -> dict[str, tuple[str, Samples]]:
    """family name -> (type, {(sample name, sorted labels): value})."""
    out = {}
    for fam in text_string_to_metric_families(render(snapshot).decode()):
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for s in fam.samples}
        out[fam.name] = (fam.type, samples)
    return out


def only(snapshot: Snapshot, name: str) -> tuple[str, Samples]:
    return families(snapshot)[P + name]


def test_every_family_is_there() -> None:
    assert sorted(families(mksnapshot())) == sorted(
        P + n
        for n in (
            "heartbeats_received",
            "invalid_heartbeats",
            "subjects",
            "tracked_subjects",
            "tapped_subjects",
            "notifications",
            "notification_retries",
            "leader",
            "lease_changes",
            "consumer_lag",
            "ready",
            "kv_writes",
            "cas_conflicts",
            "state_write_errors",
            "ignored_records",
            "unrouted_subjects",
            "quiet_subjects",
            "pending_notifications",
            "held_alerts",
            "refused_subjects",
            "history_events",
            "history_errors",
            "evaluation_seconds",
        )
    )


def test_tapped_subjects_counts_what_the_tap_admitted() -> None:
    typ, samples = only(mksnapshot(tapped=3), "tapped_subjects")
    assert typ == "counter" and samples == {(P + "tapped_subjects_total", ()): 3.0}


def test_tracked_subjects_is_the_count_known_now() -> None:
    typ, samples = only(mksnapshot(tracked=12), "tracked_subjects")
    assert typ == "gauge" and samples == {(P + "tracked_subjects", ()): 12.0}


def test_history_counters() -> None:
    snap = mksnapshot(history_events={"alert": 2, "delivery": 5}, history_errors=1)
    typ, samples = only(snap, "history_events")
    assert typ == "counter"
    assert samples == {
        (P + "history_events_total", (("kind", "alert"),)): 2.0,
        (P + "history_events_total", (("kind", "delivery"),)): 5.0,
    }
    assert only(snap, "history_errors")[1] == {(P + "history_errors_total", ()): 1.0}


@pytest.mark.parametrize(
    ("name", "field", "value", "kind"),
    [
        pytest.param("heartbeats_received", "heartbeats", 1234, "counter", id="heartbeats"),
        pytest.param("lease_changes", "lease_changes", 3, "counter", id="lease-changes"),
        pytest.param("kv_writes", "kv_writes", 99, "counter", id="kv-writes"),
        pytest.param("cas_conflicts", "conflicts", 2, "counter", id="cas-conflicts"),
        pytest.param("state_write_errors", "write_errors", 5, "counter", id="write-errors"),
        pytest.param("ignored_records", "ignored_records", 1, "counter", id="ignored-records"),
        pytest.param("history_errors", "history_errors", 3, "counter", id="history-errors"),
        pytest.param("heartbeats_received", "heartbeats", 0, "counter", id="heartbeats-zero"),
    ],
)
def test_plain_counters(name: str, field: str, value: int, kind: str) -> None:
    typ, samples = only(mksnapshot(**{field: value}), name)
    assert typ == kind
    assert samples == {(P + name + "_total", ()): float(value)}


@pytest.mark.parametrize(
    ("name", "field", "value", "shown"),
    [
        pytest.param("leader", "leader", True, 1.0, id="leader"),
        pytest.param("leader", "leader", False, 0.0, id="follower"),
        pytest.param("ready", "ready", True, 1.0, id="ready"),
        pytest.param("ready", "ready", False, 0.0, id="not-ready"),
        pytest.param("consumer_lag", "consumer_lag", 17, 17.0, id="lag"),
        pytest.param("consumer_lag", "consumer_lag", 0, 0.0, id="lag-zero"),
    ],
)
def test_gauges(name: str, field: str, value: object, shown: float) -> None:
    typ, samples = only(mksnapshot(**{field: value}), name)
    assert typ == "gauge"
    assert samples == {(P + name, ()): shown}


def test_consumer_lag_unknown_is_nan() -> None:
    _, samples = only(mksnapshot(consumer_lag=None), "consumer_lag")
    assert list(samples) == [(P + "consumer_lag", ())]
    assert math.isnan(samples[(P + "consumer_lag", ())])


@pytest.mark.parametrize(
    ("rejected", "expected"),
    [
        pytest.param({"schema": 3, "subject": 1}, {"schema": 3.0, "subject": 1.0}, id="two"),
        pytest.param({}, {}, id="none"),
    ],
)
def test_invalid_heartbeats_by_reason(rejected: dict[str, int], expected: dict[str, float]) -> None:
    typ, samples = only(mksnapshot(rejected=rejected), "invalid_heartbeats")
    assert typ == "counter"
    assert samples == {
        (P + "invalid_heartbeats_total", (("reason", r),)): v for r, v in expected.items()
    }


@pytest.mark.parametrize(
    ("subjects", "expected"),
    [
        pytest.param({Health.OK: 7, Health.ALERT: 2}, (7.0, 0.0, 2.0), id="late-missing-is-0"),
        pytest.param({}, (0.0, 0.0, 0.0), id="all-zero"),
        pytest.param({Health.OK: 1, Health.LATE: 2, Health.ALERT: 3}, (1.0, 2.0, 3.0), id="all"),
    ],
)
def test_subjects_by_state(
    subjects: dict[Health, int], expected: tuple[float, float, float]
) -> None:
    typ, samples = only(mksnapshot(subjects=subjects), "subjects")
    assert typ == "gauge"
    assert samples == {
        (P + "subjects", (("state", "ok"),)): expected[0],
        (P + "subjects", (("state", "late"),)): expected[1],
        (P + "subjects", (("state", "alert"),)): expected[2],
    }


def test_notifications_by_channel_kind_result() -> None:
    typ, samples = only(mksnapshot(), "notifications")
    assert typ == "counter"
    name = P + "notifications_total"

    def key(channel: str, kind: str, result: str) -> tuple[str, tuple[tuple[str, str], ...]]:
        return (name, (("channel", channel), ("kind", kind), ("result", result)))

    assert samples == {
        key("webhook", "alert", "ok"): 4.0,
        key("log", "alert", "ok"): 5.0,
        key("webhook", "resolved", "retry"): 2.0,
    }


def test_notification_retries_by_channel() -> None:
    typ, samples = only(mksnapshot(), "notification_retries")
    assert typ == "counter"
    name = P + "notification_retries_total"
    assert samples == {(name, (("channel", "webhook"),)): 6.0, (name, (("channel", "log"),)): 0.0}


# ----- the evaluation histogram ------------------------------------------------------------


@pytest.mark.parametrize(
    ("observations", "cumulative"),
    [
        pytest.param((), [0] * 13, id="empty"),
        pytest.param((0.0005,), [1] * 13, id="on-the-first-bound"),
        pytest.param((0.0006,), [0] + [1] * 12, id="just-past-the-first-bound"),
        pytest.param((2.5,), [0] * 11 + [1, 1], id="on-the-last-bound"),
        pytest.param((3.0,), [0] * 12 + [1], id="past-the-last-bound"),
        pytest.param(
            (0.0003, 0.001, 0.004, 0.004, 3.0),
            [1, 2, 2, 4, 4, 4, 4, 4, 4, 4, 4, 4, 5],
            id="mixed",
        ),
    ],
)
def test_evaluation_seconds(observations: tuple[float, ...], cumulative: list[int]) -> None:
    t = timer(*observations)
    typ, samples = only(
        mksnapshot(tick_buckets=tuple(t.buckets()), tick_total_s=t.total_s), "evaluation_seconds"
    )
    assert typ == "histogram"
    name = P + "evaluation_seconds"
    les = [*(repr(b) for b in TickTimer.BOUNDS), "+Inf"]
    buckets = {k[1][0][1]: v for k, v in samples.items() if k[0] == name + "_bucket"}
    assert list(buckets) == les
    assert [buckets[le] for le in les] == [float(c) for c in cumulative]
    assert samples[(name + "_count", ())] == float(len(observations))
    assert samples[(name + "_sum", ())] == pytest.approx(sum(observations))


def test_tick_timer_buckets() -> None:
    t = timer(0.0001, 0.01, 0.01, 100.0)
    assert t.buckets() == [
        ("0.0005", 1.0),
        ("0.001", 1.0),
        ("0.002", 1.0),
        ("0.005", 1.0),
        ("0.01", 3.0),
        ("0.025", 3.0),
        ("0.05", 3.0),
        ("0.1", 3.0),
        ("0.25", 3.0),
        ("0.5", 3.0),
        ("1.0", 3.0),
        ("2.5", 3.0),
        ("+Inf", 4.0),
    ]
    assert t.total_s == pytest.approx(100.0201)


def test_quiet_subjects_by_kind_every_kind_shown() -> None:
    typ, samples = only(
        mksnapshot(quiet={QuietKind.MAINT: 40, QuietKind.SILENCED: 2}), "quiet_subjects"
    )
    assert typ == "gauge"
    assert samples == {
        (P + "quiet_subjects", (("kind", "paused"),)): 0.0,
        (P + "quiet_subjects", (("kind", "silenced"),)): 2.0,
        (P + "quiet_subjects", (("kind", "maint"),)): 40.0,
        (P + "quiet_subjects", (("kind", "suppressed"),)): 0.0,
    }
