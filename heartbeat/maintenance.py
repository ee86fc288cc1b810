"""Maintenance windows (``[[maintenance]]`` in the config file) as a quiet source.

A window is a cron ``schedule`` read in a ``timezone`` and a ``duration`` of elapsed
time: each occurrence keeps its subjects quiet over ``[start, start + duration)``;
occurrences that overlap or touch merge into one quiet period.  Everything here is
pure (``now`` is a parameter), so a new leader computes the same from the config.

:func:`phase` answers, for one window at ``now``: is it active and until when, else
when its latest occurrence ended (the ``Hush.ended`` the engine floors deadlines
with).  The answer is the same until the next start or end, so :class:`Maintenance`
keeps one answer per window with the span it holds for, and the windows that match
each subject: asking per subject per evaluation is a dict lookup and a comparison.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from cronsim import CronSim, CronSimError

from heartbeat.durations import format_duration
from heartbeat.quiet import LOUD, Hush, Quiet, QuietKind, combine
from heartbeat.ratelog import RateLog
from heartbeat.routing import matches

log = logging.getLogger(__name__)

INF = float("inf")
# The longest window (grace or interval) a beat may declare (heartbeat.ingest's limits).
MAX_WINDOW_S = 31 * 24 * 3600.0
# Occurrences merged into one quiet period at most: a window that never leaves a gap
# (say every minute for two minutes) reports the end of this many, then looks again.
MAX_MERGED = 1000
_CACHE_MAX = 1 << 20


@dataclass(frozen=True)
class Window:
    """One ``[[maintenance]]`` entry: its subject patterns, a cron ``schedule`` (5
    fields, or 6 with seconds first) read in ``timezone`` (an IANA name), and how long
    each occurrence lasts (``duration_s``, elapsed time: across a DST change a 2h
    window lasts two real hours)."""

    name: str
    subjects: tuple[str, ...]
    schedule: str
    duration_s: float
    timezone: str = "UTC"

    def covers(self, subject: str) -> bool:
        return any(matches(p, subject) for p in self.subjects)


@dataclass(frozen=True, slots=True)
class Phase:
    """What a window says for every ``now`` in ``[start, stop)``: ``hush`` (its quiet
    with ``until``, or none and the end of its latest occurrence as ``ended``)."""

    hush: Hush
    start: float
    stop: float

    def holds(self, now: float) -> bool:
        return self.start <= now < self.stop


def check_zone(timezone: str) -> str | None:
    """Why ``timezone`` cannot be a window's, or None."""
    try:
        ZoneInfo(timezone)
    except (KeyError, ValueError, OSError, UnicodeError):  # ZoneInfoNotFoundError: a KeyError
        return f"{timezone[:80]!r} is not a known time zone (an IANA name like Europe/Berlin)"
    return None


def check_schedule(schedule: str, timezone: str) -> str | None:
    """Why ``schedule`` in ``timezone`` (a valid zone) cannot be a window's, or None."""
    zone = ZoneInfo(timezone)
    if not (schedule.isascii() and schedule.isprintable()) or len(schedule) > 200:
        return f"{schedule[:80]!r} is not a cron expression"
    try:
        for reverse in (False, True):  # both ways: phase() looks back for the last start
            next(iter(CronSim(schedule, datetime(2000, 1, 1, tzinfo=zone), reverse=reverse)))
    except (CronSimError, ValueError, LookupError, ArithmeticError, StopIteration):
        return (
            f"{schedule!r} is not a cron expression (5 fields: minute hour day month weekday, "
            "or 6 with seconds first)"
        )
    return None


def _zone(w: Window) -> ZoneInfo:
    return ZoneInfo(w.timezone)


def last_start(w: Window, now: float) -> float | None:
    """The latest start at or before ``now`` (None if there is none)."""
    # Starts fall on whole seconds: "before floor(now) + 1" is "at or before now".
    after = datetime.fromtimestamp(int(now // 1) + 1, _zone(w))
    got = next(iter(CronSim(w.schedule, after, reverse=True)), None)
    return None if got is None else got.timestamp()


def next_start(w: Window, now: float) -> float | None:
    """The first start after ``now`` (None if there is none)."""
    got = next(iter(_starts_after(w, now)), None)
    return None if got is None else got.timestamp()


def _starts_after(w: Window, t: float) -> CronSim:
    return CronSim(w.schedule, datetime.fromtimestamp(t, _zone(w)))


def phase(w: Window, now: float, lookback_s: float = MAX_WINDOW_S) -> Phase:
    """The window at ``now``.

    Active (some occurrence has ``start <= now < start + duration``): quiet until the
    end of the merged run of occurrences holding ``now``.  Otherwise loud, with
    ``ended`` the end of the latest occurrence, if that came within ``lookback_s``:
    an end older than the longest window plus the tolerance moves no deadline (the
    floor ``ended + window + tolerance`` is then in the past), so it is dropped, and
    each answer holds at most until the next start or until its end falls out of
    the lookback.  Only one occurrence is looked back for: the latest start before
    ``now`` has the latest end, as every occurrence lasts the same.
    """
    d = w.duration_s
    start = last_start(w, now)
    if start is not None and now < start + d:
        end, merged = start + d, 1
        for later in _starts_after(w, start):
            t = later.timestamp()
            if t > end or merged >= MAX_MERGED:
                break
            end, merged = t + d, merged + 1
        return Phase(Hush(Quiet(QuietKind.MAINT, end, w.name)), now, end)
    nxt = next_start(w, now)
    stop = INF if nxt is None else nxt
    if start is None or start + d + lookback_s <= now:
        return Phase(LOUD, now, stop)  # no end that matters, until the next start
    return Phase(Hush(None, start + d), start + d, min(stop, start + d + lookback_s))


class _Patterns:
    """NATS patterns of many windows as a token tree: which windows match a subject
    costs a walk down its tokens, not a match per pattern (100k subjects x windows)."""

    __slots__ = ("children", "here", "rest")

    def __init__(self) -> None:
        self.children: dict[str, _Patterns] = {}  # a literal token, or "*"
        self.here: set[int] = set()  # patterns that end at this node
        self.rest: set[int] = set()  # patterns whose ">" stands for the rest here

    def add(self, pattern: str, i: int) -> None:
        node = self
        for tok in pattern.split("."):
            if tok == ">":
                node.rest.add(i)
                return
            node = node.children.setdefault(tok, _Patterns())
        node.here.add(i)

    def match(self, tokens: Sequence[str], at: int = 0) -> set[int]:
        if at == len(tokens):
            return self.here
        found = set(self.rest)  # ">" needs at least one more token: there is one
        for key in (tokens[at], "*"):
            child = self.children.get(key)
            if child is not None:
                found |= child.match(tokens, at + 1)
        return found


class Maintenance:
    """Every ``[[maintenance]]`` window, as one :class:`~heartbeat.quiet.HushSource`.

    Nothing needs waking: a window's end is its ``Quiet.until``, which the engine
    schedules, and its start needs none either (a subject due inside the window is
    evaluated at its own deadline and is quiet then; an alert decided before the start
    stands, and its repeats wait for the end).
    """

    def __init__(self, windows: Sequence[Window], *, lookback_s: float = MAX_WINDOW_S) -> None:
        self.windows = tuple(windows)
        self.lookback_s = lookback_s
        self._phases: list[Phase | None] = [None] * len(self.windows)
        self._patterns = _Patterns()
        for i, w in enumerate(self.windows):
            for pattern in w.subjects:
                self._patterns.add(pattern, i)
        self._by_subject: dict[str, tuple[int, ...]] = {}
        self._shared: dict[tuple[int, ...], tuple[int, ...]] = {}  # one tuple per set
        self.computed = 0  # phases computed (a figure for tests and benchmarks)
        self._errors = RateLog(log, what="maintenance window errors")

    def matching(self, subject: str) -> tuple[int, ...]:
        """Indexes of the windows that cover ``subject`` (cached per subject)."""
        got = self._by_subject.get(subject)
        if got is None:
            found = tuple(sorted(self._patterns.match(subject.split("."))))
            got = self._shared.setdefault(found, found)
            if len(self._by_subject) >= _CACHE_MAX:
                self._by_subject.clear()
            self._by_subject[subject] = got
        return got

    def phase_of(self, i: int, now: float) -> Phase:
        p = self._phases[i]
        if p is None or not p.holds(now):
            try:
                p = phase(self.windows[i], now, self.lookback_s)
            except (CronSimError, ValueError, LookupError, ArithmeticError) as e:
                # Checked at start-up, so not expected; never let it stop an evaluation.
                self._errors.log(
                    self.windows[i].name,
                    logging.WARNING,
                    "maintenance window %s: cannot compute it at %.0f, ignoring it for a "
                    "minute: %s",
                    self.windows[i].name,
                    now,
                    e,
                )
                p = Phase(LOUD, now, now + 60.0)
            self._phases[i] = p
            self.computed += 1
        return p

    @property
    def idle(self) -> bool:
        return not self.windows

    def hush(self, subject: str, now: float) -> Hush:
        found = self._by_subject.get(subject)
        if found is None:
            found = self.matching(subject)
        if not found:
            return LOUD
        if len(found) == 1:  # the common case, inlined: asked per subject per scrape
            p = self._phases[found[0]]
            if p is None or not p.start <= now < p.stop:
                p = self.phase_of(found[0], now)
            return p.hush
        return combine(self.phase_of(i, now).hush for i in found)


def describe(w: Window) -> str:
    """``nightly: 0 2 * * SUN for 2h0m0s (Europe/Berlin)``, for logs."""
    took = format_duration(timedelta(seconds=w.duration_s))
    return f"{w.name}: {w.schedule!r} for {took} ({w.timezone})"
