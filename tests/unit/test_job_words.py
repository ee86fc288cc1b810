"""Job notifications on every channel: wording, urgency, and how incident tools map them."""

from __future__ import annotations

from typing import Any

import pytest

from heartbeat.notification import EventKind, Notification, group_notice
from heartbeat.notify import words
from heartbeat.notify.ntfy import NtfyNotifier
from heartbeat.notify.opsgenie import OpsgenieNotifier
from heartbeat.notify.pagerduty import PagerDutyNotifier

SESSION: Any = None  # the notifiers only keep it; nothing is sent here
SECOND = 1_000_000_000


def job_note(kind: EventKind, **extra: Any) -> Notification:
    fields: dict[str, Any] = {
        "exit_code": 1,
        "duration_ns": 192 * SECOND,
        "output": "tail",
        "run_id": "r1",
        "max_runtime_ns": 60 * SECOND,
    }
    fields.update(extra)
    return Notification(
        event=kind,
        subject="heartbeat.backup",
        description="Nightly backup",
        host="db-1",
        last_seen=1.0,
        interval_ns=3600 * SECOND,
        window_ns=3660 * SECOND,
        missed_for_ns=0,
        miss_count=0,
        alert_id="a.job",
        notification_id="a.job-1",
        created_at=2.0,
        monitor="m",
        **fields,
    )


@pytest.mark.parametrize(
    ("kind", "urgent", "headline"),
    [
        (EventKind.FAILED, True, "FAILED: exit 1 after 3m12s (host db-1): tail"),
        (EventKind.RUNNING_LONG, True, "is RUNNING LONG: running for 3m12s, max runtime 1m"),
        (EventKind.RAN_LONG, False, "RAN LONG: took 3m12s, max runtime 1m (host db-1)"),
        (EventKind.RESOLVED, False, "is OK again: a run succeeded in 3m12s (host db-1)"),
    ],
)
def test_job_wording(kind: EventKind, urgent: bool, headline: str) -> None:
    n = job_note(kind)
    assert words.urgent(n) is urgent
    assert words.headline(n).startswith("heartbeat.backup (Nightly backup) ")
    assert headline in words.headline(n)
    assert words.details(n)["exit_code"] == 1


def test_a_group_counts_job_states() -> None:
    g = group_notice(
        [job_note(EventKind.FAILED), job_note(EventKind.RAN_LONG)],
        notification_id="g",
        created_at=2.0,
        monitor="m",
    )
    assert words.title(g) == "2 heartbeat notifications: 1 FAILED, 1 RAN LONG"
    assert words.urgent(g)


def test_details_carry_the_end_of_a_long_output() -> None:
    n = job_note(EventKind.FAILED, output="a" * 5000 + "\x1b[1mZ")
    out = words.details(n)["output"]
    assert isinstance(out, str) and out.endswith("aZ") and len(out) == words.OUTPUT_SHOWN


def test_pagerduty_triggers_job_alerts_and_sends_ran_long_as_info() -> None:
    pd = PagerDutyNotifier(SESSION, name="pd", routing_key="k")
    failed = pd.event(job_note(EventKind.FAILED))
    assert failed["event_action"] == "trigger" and failed["dedup_key"] == "a.job"
    assert failed["payload"]["severity"] == "critical"  # type: ignore[index]
    ran_long = pd.event(job_note(EventKind.RAN_LONG))
    assert ran_long["payload"]["severity"] == "info"  # type: ignore[index]
    assert pd.event(job_note(EventKind.RESOLVED))["event_action"] == "resolve"


def test_opsgenie_creates_job_alerts_and_ran_long_as_p5() -> None:
    og = OpsgenieNotifier(SESSION, name="og", api_key="k")
    path, body = og.request(job_note(EventKind.RUNNING_LONG))
    assert (
        path == "/v2/alerts" and body["alias"] == "a.job" and body["priority"] == "P2"
    )  # the default
    assert og.request(job_note(EventKind.RAN_LONG))[1]["priority"] == "P5"
    assert "/close" in og.request(job_note(EventKind.RESOLVED))[0]


def test_ntfy_has_a_tag_for_every_event_kind() -> None:
    from heartbeat.notify import ntfy

    assert set(ntfy._TAGS) >= set(EventKind) - {EventKind.GROUP}
    assert NtfyNotifier(SESSION, name="n", url="http://x/t") is not None
