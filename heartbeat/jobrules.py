"""The job rules of the pure engine: what a job's start, success and fail beats mean.

A job's state (its last run, whether one is running, its active job alert) lives in
the subject's KV record as a :class:`JobState`, because the stream keeps only the
newest beat per subject.  :func:`fold` turns a job beat into that state,
:func:`step` decides the one job transition due now (``failed``, ``running_long``,
``ran_long`` or a ``resolved``), :func:`missing_after` says when a job counts as
missing.  Nothing here reads a clock: ``now`` is a parameter (docs/architecture.md,
"Job rules").
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import msgspec
from cronsim import CronSim

from heartbeat.durations import SECOND
from heartbeat.notification import EventKind

NEVER = float("inf")
START, SUCCESS, FAIL = "start", "success", "fail"
SKEW_MAX_S = 60.0  # a run seen up to this long before its scheduled time counts as that run


class Job(msgspec.Struct, kw_only=True, frozen=True, gc=False):
    """The job fields of a beat (wire rules: heartbeat.schema, docs "Job beats");
    durations in integer nanoseconds, truncated to microseconds as ``interval_ns``."""

    kind: str = "beat"
    run_id: str = ""
    exit_code: int | None = None
    duration_ns: int | None = None
    output: str = ""
    schedule: str = ""
    timezone: str = ""
    max_runtime_ns: int | None = None


class JobState(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True, gc=False):
    """What the job rules need of a subject's past, kept in its record.

    ``running_since``: server time of the start of the run under way (None: none);
    ``last_result``, ``exit_code``, ``duration_ns``, ``output``, ``finished_at``: the
    last finished run; ``alert``: the active job alert (``failed``, ``running_long``
    or empty), with its ``alert_id``, ``alert_since`` and ``notify_count``.
    """

    schedule: str = ""
    timezone: str = ""
    max_runtime_ns: int | None = None
    run_id: str = ""
    running_since: float | None = None
    last_result: str = ""
    exit_code: int | None = None
    duration_ns: int | None = None
    output: str = ""
    finished_at: float | None = None
    last_success: float | None = None
    alert: str = ""
    alert_id: str = ""
    alert_since: float | None = None
    notify_count: int = 0

    @property
    def running(self) -> bool:
        return self.running_since is not None


def fold(state: JobState | None, job: Job, at: float) -> JobState:
    """``state`` after a job beat seen at ``at`` (server time)."""
    base = msgspec.structs.replace(
        state if state is not None else JobState(),
        schedule=job.schedule,
        timezone=job.timezone,
        max_runtime_ns=job.max_runtime_ns,
    )
    if job.kind == START:
        return msgspec.structs.replace(base, running_since=at, run_id=job.run_id or base.run_id)
    if job.kind in (SUCCESS, FAIL):
        return msgspec.structs.replace(
            base,
            running_since=None,
            run_id=job.run_id or base.run_id,
            last_result=job.kind,
            exit_code=job.exit_code,
            duration_ns=job.duration_ns,
            output=job.output,
            finished_at=at,
            last_success=at if job.kind == SUCCESS else base.last_success,
        )
    return base


@functools.lru_cache(maxsize=8192)
def next_run(schedule: str, timezone: str, after: float) -> float | None:
    """The first time ``schedule`` (read in ``timezone``, UTC when empty) fires
    strictly after ``after`` (epoch seconds); None if it cannot be computed."""
    try:
        zone = ZoneInfo(timezone) if timezone else UTC
        start = datetime.fromtimestamp(after, zone)
        got = next(iter(CronSim(schedule, start)), None)
    except (ValueError, KeyError, OSError, OverflowError):  # a record written by hand
        return None
    return None if got is None else got.timestamp()


def _skew_s(interval_ns: int) -> float:
    return min(SKEW_MAX_S, interval_ns / SECOND / 2)


def next_scheduled(state: JobState, last_seen: float, interval_ns: int) -> float | None:
    """The scheduled run after the last beat (None without a schedule): the run
    that is due next.  A beat up to ``min(60 s, interval / 2)`` before a scheduled
    time counts as that run (the sender's clock may run a little fast)."""
    if not state.schedule or last_seen <= 0:
        return None
    return next_run(state.schedule, state.timezone, last_seen + _skew_s(interval_ns))


def missing_after(
    state: JobState, last_seen: float, interval_ns: int, window_ns: int
) -> float | None:
    """When a job counts as missing (None: the plain rule, last beat + window).

    A run under way with a ``max_runtime`` is bounded by that instead (NEVER here);
    with a schedule, the deadline is the next scheduled time after the last beat
    (a run's end, or its start while it runs) plus the grace, ``window - interval``.
    """
    if state.running and state.max_runtime_ns:
        return NEVER
    due = next_scheduled(state, last_seen, interval_ns)
    if due is None:
        return None
    return due + max(0, window_ns - interval_ns) / SECOND


def running_long_deadline(state: JobState, tolerance_s: float) -> float:
    """After this time the run under way is running long (NEVER: no bound, or its
    ``running_long`` alert is already raised)."""
    if state.running_since is None or not state.max_runtime_ns or state.alert == "running_long":
        return NEVER
    return state.running_since + state.max_runtime_ns / SECOND + tolerance_s


def ran_long(state: JobState) -> bool:
    """The last finished run took longer than ``max_runtime``."""
    limit, took = state.max_runtime_ns, state.duration_ns
    return bool(limit) and took is not None and took > (limit or 0)


def just_finished(prev: JobState | None, cur: JobState) -> bool:
    """``cur`` holds a finished run that the committed ``prev`` does not."""
    return cur.finished_at is not None and cur.finished_at != (prev.finished_at if prev else None)


def step(
    prev: JobState | None, cur: JobState, now: float, tolerance_s: float, new_alert_id: str
) -> tuple[JobState, EventKind | None]:
    """The job transition due now for ``cur`` (the committed ``prev`` with the newest
    beat folded in): the new state and the event to notify (None: nothing).

    - a failed run raises ``failed`` (one alert per failing streak);
    - a run under way past ``max_runtime`` raises ``running_long`` (once);
    - a successful run resolves either alert (a failure turns ``running_long``
      into ``failed``: the same alert id, the incident goes on);
    - a successful run that took longer than ``max_runtime``, with no alert to
      resolve, is ``ran_long``: a one-off report, nothing to resolve.
    """
    if not cur.running and cur.last_result == FAIL and cur.alert != "failed":
        return _raise(cur, EventKind.FAILED, now, new_alert_id), EventKind.FAILED
    if now > running_long_deadline(cur, tolerance_s):
        return _raise(cur, EventKind.RUNNING_LONG, now, new_alert_id), EventKind.RUNNING_LONG
    if cur.alert and not cur.running and cur.last_result == SUCCESS:
        resolved = msgspec.structs.replace(
            cur, alert="", alert_since=None, notify_count=cur.notify_count + 1
        )
        return resolved, EventKind.RESOLVED
    if just_finished(prev, cur) and cur.last_result == SUCCESS and ran_long(cur):
        return cur, EventKind.RAN_LONG
    return cur, None


def _raise(cur: JobState, kind: EventKind, now: float, new_alert_id: str) -> JobState:
    if cur.alert:  # running_long -> failed, or failed -> running_long: the same incident
        return msgspec.structs.replace(cur, alert=str(kind), notify_count=cur.notify_count + 1)
    return msgspec.structs.replace(
        cur, alert=str(kind), alert_id=f"{new_alert_id}.job", alert_since=now, notify_count=1
    )


def next_due(state: JobState, tolerance_s: float) -> float:
    """When :func:`step` could next decide something without a new beat."""
    return running_long_deadline(state, tolerance_s)
