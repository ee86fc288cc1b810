"""What a person reads: the one wording of every notification, on every channel.

Every heartbeat-supplied string (subject, description, host, monitor name) goes
through :func:`heartbeat.text.neutral` here, so no channel shows escapes, forged
line breaks or invisible characters.  A channel may add markup around these
strings but never rewords them.
"""

from __future__ import annotations

from collections import Counter

from heartbeat.durations import SECOND, format_duration_ns
from heartbeat.notification import EventKind, Notification
from heartbeat.text import ELLIPSIS, MAX_DESCRIPTION, MAX_HOST, neutral

OUTPUT_SHOWN = 300  # characters of a run's output tail a message shows (its end)
GROUP_SHOWN = 5  # members listed by name in a group message; the rest are counted
_SUBJECT_MAX = 256
_UNITS = (("d", 86400), ("h", 3600), ("m", 60), ("s", 1))

URGENT = frozenset(
    {
        EventKind.ALERT,
        EventKind.REPEAT,
        EventKind.BLIND,
        EventKind.OVER_CAPACITY,
        EventKind.FAILED,
        EventKind.RUNNING_LONG,
    }
)
_STATE = {
    EventKind.ALERT: "DOWN",
    EventKind.REPEAT: "still DOWN",
    EventKind.RESOLVED: "UP",
    EventKind.BLIND: "BLIND",
    EventKind.SIGHT_RESTORED: "seeing again",
    EventKind.FAILED: "FAILED",
    EventKind.RUNNING_LONG: "RUNNING LONG",
    EventKind.RAN_LONG: "RAN LONG",
    EventKind.OVER_CAPACITY: "over capacity",
    EventKind.TEST: "test",
}


_JOB = frozenset({EventKind.FAILED, EventKind.RUNNING_LONG, EventKind.RAN_LONG})


def urgent(n: Notification) -> bool:
    """Something is (still) wrong: an alert, a repeat, a blind monitor, or a group
    holding one of these."""
    if n.event is EventKind.GROUP:
        return any(m.event in URGENT for m in n.members)
    return n.event in URGENT


def human_duration(ns: int) -> str:
    """``3m12s``, ``1m``, ``2h5s``, ``1d3h``: whole seconds, zero units left out
    (under a second: Go's form, ``250ms``)."""
    if ns < SECOND:
        return format_duration_ns(max(0, ns))
    left = round(ns / SECOND)
    parts = []
    for unit, size in _UNITS:
        count, left = divmod(left, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def label(n: Notification) -> str:
    """``subject (description)``, or the subject alone when the description adds nothing."""
    subject = neutral(n.subject, _SUBJECT_MAX)
    description = neutral(n.description, MAX_DESCRIPTION).strip()
    if not subject:
        return description or "(no subject)"
    return f"{subject} ({description})" if description and description != subject else subject


def monitor_label(n: Notification) -> str:
    return f"monitor {neutral(n.monitor, _SUBJECT_MAX) or '(unnamed)'}"


def title(n: Notification) -> str:
    """The short line: who and what state (a subject line, a card header)."""
    if n.event is EventKind.GROUP:
        counts = Counter(_STATE.get(m.event, str(m.event)) for m in n.members)
        detail = ", ".join(f"{count} {state}" for state, count in counts.items())
        return f"{len(n.members)} heartbeat notifications: {detail}"
    if n.event is EventKind.ALERT:
        return f"{label(n)} is DOWN"
    if n.event is EventKind.REPEAT:
        return f"{label(n)} is still DOWN"
    if n.event is EventKind.RESOLVED:
        return f"{label(n)} is UP again"
    if n.event is EventKind.BLIND:
        return f"{monitor_label(n)} is BLIND"
    if n.event is EventKind.FAILED:
        return f"{label(n)} FAILED"
    if n.event is EventKind.RUNNING_LONG:
        return f"{label(n)} is RUNNING LONG"
    if n.event is EventKind.RAN_LONG:
        return f"{label(n)} RAN LONG"
    if n.event is EventKind.OVER_CAPACITY:
        return f"{monitor_label(n)} is over capacity"
    if n.event is EventKind.TEST:
        return f"Test notification from nats-heartbeat ({neutral(n.monitor, _SUBJECT_MAX)})"
    return f"{monitor_label(n)} sees heartbeats again"


def output_tail(n: Notification, limit: int = OUTPUT_SHOWN) -> str:
    """The end of the run's output, neutralised (one line), at most ``limit``
    characters, starting with an ellipsis when cut."""
    text = neutral(n.output).strip()
    return text if len(text) <= limit else ELLIPSIS + text[-(limit - 1) :]


def _host(n: Notification) -> str:
    return f" (host {neutral(n.host, MAX_HOST)})" if n.host.strip() else ""


def _job_headline(n: Notification) -> str:
    took = human_duration(n.duration_ns or 0)
    limit = human_duration(n.max_runtime_ns or 0)
    if n.event is EventKind.FAILED:
        tail = output_tail(n)
        return f"{title(n)}: exit {n.exit_code} after {took}{_host(n)}" + (
            f": {tail}" if tail else ""
        )
    if n.event is EventKind.RUNNING_LONG:
        return f"{title(n)}: running for {took}, max runtime {limit}{_host(n)}"
    if n.event is EventKind.RAN_LONG:
        return f"{title(n)}: took {took}, max runtime {limit}{_host(n)}"
    return f"{label(n)} is OK again: a run succeeded in {took}{_host(n)}"


def dependents_text(n: Notification) -> str:
    """``; 49 dependents are also silent: a, b, c, d, e and 44 more`` for a parent's
    alert or repeat (heartbeat.depends), or nothing."""
    count = n.dependents_missing
    if not count:
        return ""
    named = [neutral(s, _SUBJECT_MAX) for s in n.dependents[:count]]
    noun = "dependent is" if count == 1 else "dependents are"
    text = f"; {count} {noun} also silent"
    if named:
        text += ": " + ", ".join(named)
        if count > len(named):
            text += f" and {count - len(named)} more"
    return text


def headline(n: Notification) -> str:
    """One sentence: what happened and since when."""
    if n.event in (EventKind.ALERT, EventKind.REPEAT):
        facts = [f"host {neutral(n.host, MAX_HOST)}"] if n.host.strip() else []
        facts.append(f"window {human_duration(n.window_ns)}")
        return (
            f"{title(n)}: no heartbeat for {human_duration(n.missed_for_ns)} ({', '.join(facts)})"
            + dependents_text(n)
        )
    if n.event in _JOB or (n.event is EventKind.RESOLVED and n.exit_code is not None):
        return _job_headline(n)
    if n.event is EventKind.RESOLVED:
        return f"{title(n)} after {human_duration(n.missed_for_ns)} down"
    if n.event is EventKind.BLIND:
        return (
            f"{title(n)}: it has not seen NATS for {human_duration(n.missed_for_ns)}, "
            "missing heartbeats are not being detected"
        )
    if n.event is EventKind.SIGHT_RESTORED:
        return f"{title(n)} after {human_duration(n.missed_for_ns)} blind"
    if n.event is EventKind.OVER_CAPACITY:
        return f"{title(n)}: it {neutral(n.description, MAX_DESCRIPTION)}"
    if n.event is EventKind.TEST:
        return f"{title(n)}: {neutral(n.description, MAX_DESCRIPTION)}"
    return title(n)


def lines(n: Notification, shown: int = GROUP_SHOWN) -> list[str]:
    """The message as lines: the headline, and for a group the first ``shown``
    members' headlines and ``and N more``."""
    if n.event is not EventKind.GROUP:
        return [headline(n)]
    out = [headline(n)]
    out.extend(f"- {headline(m)}" for m in n.members[:shown])
    if len(n.members) > shown:
        out.append(f"and {len(n.members) - shown} more")
    return out


def message(n: Notification) -> str:
    """The message body of a human channel (one line, or several for a group)."""
    return "\n".join(lines(n))


def one_line(n: Notification) -> str:
    """The message on one line (a log line)."""
    return "; ".join(lines(n))


def footer(n: Notification) -> str:
    """The small print: event, monitor and notification id."""
    return f"{n.event} · {monitor_label(n)} · id {neutral(n.notification_id, _SUBJECT_MAX)}"


def details(n: Notification) -> dict[str, object]:
    """The webhook body of one (non-group) notification with its strings neutralised,
    for the "details" a person reads in an incident tool."""
    body = n.body()
    out = {k: neutral(v, MAX_DESCRIPTION) if isinstance(v, str) else v for k, v in body.items()}
    if n.dependents:  # one line a person reads (email facts, incident details)
        out["dependents"] = ", ".join(neutral(s, _SUBJECT_MAX) for s in n.dependents)
    if n.output:
        out["output"] = output_tail(n)  # its end, where the error is
    return out


def summary(n: Notification) -> tuple[str, str]:
    """(title, message) for channels with both."""
    return title(n), message(n)
